//go:build unix

package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
)

// TestGRPCReadsOnReady: gRPC's transport reads podstamp's server connections
// through capConn.ReadOnReady, from the socket (a gRPC upgrade that stops
// asking for the method gives every connection a read buffer of its own
// for its whole life again), and requests larger than a read cross intact.
func TestGRPCReadsOnReady(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets())
	body, _ := payload(t, enrich.Traces, 2000)
	if len(body) < 2*grpcBufferSize {
		t.Fatalf("payload of %d bytes, want more than two reads of %d", len(body), grpcBufferSize)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		if _, err := tp.exportGRPC(ctx, enrich.Traces, body); err != nil {
			t.Fatal(err)
		}
		if got := up.next(t); !bytes.Equal(got.body, body) {
			t.Fatalf("upstream got %d bytes, not the %d sent", len(got.body), len(body))
		}
	}
	l := tp.lim
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.grpcConns) != 1 {
		t.Fatalf("%d gRPC connections, want 1", len(l.grpcConns))
	}
	for c := range l.grpcConns {
		if !c.rd.started || c.rd.raw == nil {
			t.Errorf("gRPC did not read the connection through ReadOnReady from the socket (started %v, raw %v)", c.rd.started, c.rd.raw != nil)
		}
	}
}

// countingPool hands out buffers and counts those not given back.
type countingPool struct {
	mu  sync.Mutex
	out int
}

func (p *countingPool) Get(n int) *[]byte {
	p.mu.Lock()
	p.out++
	p.mu.Unlock()
	b := make([]byte, n)
	return &b
}

func (p *countingPool) Put(*[]byte) {
	p.mu.Lock()
	p.out--
	p.mu.Unlock()
}

func (p *countingPool) outstanding() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out
}

// TestReadOnReady: a read returns what arrived in a buffer of the pool, at
// most the size asked for per read, gives every other buffer back, and
// ends with io.EOF when the peer closes; the same holds for a connection
// that is not a socket.
func TestReadOnReady(t *testing.T) {
	for _, tc := range []struct {
		name string
		pair func(t *testing.T) (net.Conn, net.Conn)
	}{
		{"tcp", tcpPair},
		{"pipe", func(*testing.T) (net.Conn, net.Conn) { return net.Pipe() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tc.pair(t)
			defer a.Close()
			c := &capConn{Conn: a}
			sent := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
			go func() {
				b.Write(sent)
				b.Close()
			}()
			pool := &countingPool{}
			var got []byte
			for {
				buf, n, err := c.ReadOnReady(4096, pool)
				if err != nil {
					if err != io.EOF {
						t.Fatal(err)
					}
					if buf != nil || n != 0 {
						t.Errorf("EOF with a buffer of %d bytes", n)
					}
					break
				}
				if n <= 0 || n > 4096 || len(*buf) < n {
					t.Fatalf("read %d bytes into a buffer of %d", n, len(*buf))
				}
				if pool.outstanding() != 1 {
					t.Fatalf("%d buffers out after a read, want 1", pool.outstanding())
				}
				got = append(got, (*buf)[:n]...)
				pool.Put(buf)
			}
			if !bytes.Equal(got, sent) {
				t.Errorf("read %d bytes, not the %d sent", len(got), len(sent))
			}
			if n := pool.outstanding(); n != 0 {
				t.Errorf("%d buffers not given back", n)
			}
		})
	}
}

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	return a, b
}
