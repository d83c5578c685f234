//go:build unix

package proxy

import (
	"io"
	"syscall"

	"google.golang.org/grpc/mem"
)

// readyReader is what capConn needs to read for gRPC's transport: the
// socket's RawConn and the state of one read, kept here so that a read
// allocates nothing.
type readyReader struct {
	started bool
	raw     syscall.RawConn // nil if the connection is not a socket
	read    func(fd uintptr) bool

	size int
	pool mem.BufferPool
	buf  *[]byte
	n    int
	err  error
}

// ReadOnReady is how gRPC's transport reads podstamp's server connections:
// gRPC asks each connection for this method, and reads a bare *net.TCPConn
// this way by itself, but not a wrapped one like capConn. It waits until
// bytes have arrived and only then takes a buffer of size bytes from pool
// and reads into it, once. So an idle connection holds no read buffer, where
// without the method gRPC gives each connection a bufio.Reader of its own
// (64 KiB) for its whole life. The buffer is returned with n > 0 bytes, or
// nil with io.EOF or the read's error.
//
// Only gRPC's reading goroutine of the connection calls it.
func (c *capConn) ReadOnReady(size int, pool mem.BufferPool) (*[]byte, int, error) {
	r := &c.rd
	if !r.started {
		r.started = true
		if sc, ok := c.Conn.(syscall.Conn); ok {
			if raw, err := sc.SyscallConn(); err == nil {
				r.raw, r.read = raw, r.readFD
			}
		}
	}
	if r.raw == nil {
		buf := pool.Get(size)
		n, err := c.Conn.Read(*buf)
		if n > 0 {
			return buf, n, nil // an error comes again with the next read
		}
		pool.Put(buf)
		if err == nil {
			err = io.ErrNoProgress
		}
		return nil, 0, err
	}
	r.size, r.pool = size, pool
	err := r.raw.Read(r.read)
	buf, n, rerr := r.buf, r.n, r.err
	r.pool, r.buf, r.err = nil, nil, nil
	if err == nil {
		err = rerr
	}
	if err != nil {
		if buf != nil {
			pool.Put(buf)
		}
		return nil, 0, err
	}
	if n == 0 { // the peer closed the connection
		pool.Put(buf)
		return nil, 0, io.EOF
	}
	return buf, n, nil
}

// readFD reads once from the socket, which the runtime found readable; it
// returns false (wait, then call again) when there was nothing to read
// after all.
func (r *readyReader) readFD(fd uintptr) bool {
	r.buf = r.pool.Get(r.size)
	for {
		r.n, r.err = syscall.Read(int(fd), *r.buf)
		if r.err != syscall.EINTR {
			break
		}
	}
	if r.err != nil {
		r.pool.Put(r.buf)
		r.buf = nil
	}
	return r.err != syscall.EAGAIN
}
