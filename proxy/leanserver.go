package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// leanServer serves OTLP/gRPC on an HTTP/2 of its own (golang.org/x/net/http2's
// framer) instead of grpc-go's server. grpc-go's server hands every call from
// the connection's reader goroutine to a handler and its answer from the
// handler to the connection's writer goroutine; here the handler writes its
// answer itself, so a call costs one hand-off instead of two (with the lean
// upstream transport, one in all: bench/cmd/runner/tried.md).
//
// What grpc-go's server bounds, it bounds the same way, through the same
// limits (limits.go): connections at accept (capListener), concurrent streams
// per connection (SETTINGS_MAX_CONCURRENT_STREAMS; more are refused with
// REFUSED_STREAM), a reservation of the in-flight budget and a request slot
// of the peer taken when a stream's headers arrive and before any of its
// message is read, the message size before and after decompression, the
// read timeout of a message, the header list size, ping floods (the keepalive
// enforcement policy's rule), idle connections, and a write deadline on
// answers to a client that stops reading. A connection's frames are read by
// one goroutine, which never blocks on a call.
type leanServer struct {
	p                         *Proxy
	writeTimeout, idleTimeout time.Duration
	work                      chan *lsCall
	quit                      chan struct{}
	workers                   sync.WaitGroup

	mu      sync.Mutex
	ln      net.Listener
	conns   map[*lsConn]struct{}
	closing bool           // GracefulStop or Stop was called
	wg      sync.WaitGroup // connection readers and calls outside the workers
}

const (
	lsMaxHeaderList  = 64 << 10 // as the HTTP ingress's MaxHeaderBytes
	lsMaxFrame       = 16 << 10 // SETTINGS_MAX_FRAME_SIZE's default, which the server keeps
	lsReadSize       = grpcBufferSize
	lsWriteTimeout   = 10 * time.Second // default: a client that reads no answer for this long is cut off
	lsIdleTimeout    = 5 * time.Minute  // default: grpc-go server's MaxConnectionIdle as podstamp sets it
	lsPingMinTime    = 10 * time.Second // the keepalive enforcement policy's MinTime
	lsMaxPingStrikes = 2                // as grpc-go's
)

func newLeanServer(p *Proxy) *leanServer {
	s := &leanServer{p: p, work: make(chan *lsCall), quit: make(chan struct{}), conns: map[*lsConn]struct{}{},
		writeTimeout: p.cfg.leanWriteTimeout, idleTimeout: p.cfg.leanIdleTimeout}
	setDefault(&s.writeTimeout, lsWriteTimeout)
	setDefault(&s.idleTimeout, lsIdleTimeout)
	n := grpcWorkersPerProc * runtime.GOMAXPROCS(0)
	s.workers.Add(n)
	for range n {
		go func() {
			defer s.workers.Done()
			for {
				select {
				case k := <-s.work:
					s.handle(k)
				case <-s.quit:
					return
				}
			}
		}()
	}
	return s
}

// errLeanServerStopped is what Serve returns once the server was stopped.
var errLeanServerStopped = errors.New("lean gRPC server stopped")

// Serve accepts connections on ln until GracefulStop or Stop; it returns
// nil then, or the listener's error.
func (s *leanServer) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return errLeanServerStopped
	}
	s.ln = ln
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			stopping := s.closing
			s.mu.Unlock()
			if stopping {
				return nil
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() { // e.g. out of file descriptors
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.p.log.Warn("accepting a gRPC connection failed; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := newLSConn(s, nc)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// GracefulStop stops accepting, sends every connection GOAWAY, and waits
// until the calls they carry are answered and they are closed.
func (s *leanServer) GracefulStop() {
	s.shut(func(c *lsConn) { c.goAway(http2.ErrCodeNo, false) })
}

// Stop closes every connection, cancelling the calls they carry, and waits
// for those calls to return.
func (s *leanServer) Stop() {
	s.shut(func(c *lsConn) { c.close() })
}

// shut stops accepting, ends every connection with end, and waits for the
// connections and the calls they carry.
func (s *leanServer) shut(end func(*lsConn)) {
	s.mu.Lock()
	s.closing = true
	if s.ln != nil {
		s.ln.Close()
	}
	conns := make([]*lsConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		end(c)
	}
	s.wg.Wait()
	s.stopWorkers()
}

func (s *leanServer) stopWorkers() {
	s.mu.Lock()
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	s.mu.Unlock()
	s.workers.Wait()
}

// dispatch runs a call on an idle worker, or on a goroutine of its own when
// all are busy.
func (s *leanServer) dispatch(k *lsCall) {
	select {
	case s.work <- k:
	default:
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(k)
		}()
	}
}

// lsConn is one client connection.
type lsConn struct {
	s      *leanServer
	nc     net.Conn
	cap    *capConn // nil unless accepted through a capListener
	peer   enrich.Peer
	rd     lsReader
	fr     *http2.Framer
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once

	wmu       sync.Mutex // the writing side: wbuf, fr's writes, henc
	wbuf      []byte
	hbuf      bytes.Buffer
	henc      *hpack.Encoder
	tableSize bool // the client set SETTINGS_HEADER_TABLE_SIZE: every block goes through henc

	mu          sync.Mutex
	window      sync.Cond // on mu: send windows grew, or the connection closed
	streams     map[uint32]*lsStream
	lastID      uint32 // the highest stream id the client opened
	goingAway   bool   // GOAWAY sent: no new streams
	closed      bool
	sendWin     int64 // what we may still send on the connection
	initWin     int64 // the client's initial stream window
	maxFrame    int   // the client's largest frame
	recvWin     int64 // what the client may still send on the connection
	recvUnacked int64 // received since our last connection WINDOW_UPDATE
	pingStrikes int
	lastPing    time.Time
}

// lsStream is one call: its message while it arrives, then its answer.
type lsStream struct {
	id     uint32
	sig    enrich.Signal
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the stream ends before a worker took it
	hdr    []string      // allow-listed headers
	gzip   bool          // grpc-encoding: gzip

	prefix  [5]byte
	nPrefix int
	buf     *[]byte // the message, from bufPool
	want    int
	got     int

	recvWin      int64 // what the client may still send on the stream
	unacked      int64 // received since our last stream WINDOW_UPDATE
	sendWin      int64
	remoteClosed bool // END_STREAM received
	handling     bool // a call has it
}

// dropLocked gives back what a stream no call took holds: its message
// buffer, and (closing done) its reservation, which capConn.sweepLocked
// then returns. The connection's mu is held.
func (st *lsStream) dropLocked() {
	close(st.done)
	if st.buf != nil {
		bufPool.Put(st.buf)
		st.buf = nil
	}
}

// lsCall is a stream whose message is in, on its way to a worker.
type lsCall struct {
	c    *lsConn
	st   *lsStream
	body mem.Buffer
}

func newLSConn(s *leanServer, nc net.Conn) *lsConn {
	c := &lsConn{s: s, nc: nc, streams: map[uint32]*lsStream{},
		sendWin: 65535, initWin: 65535, maxFrame: 16384, recvWin: 65535}
	c.window.L = &c.mu
	c.cap, _ = nc.(*capConn)
	c.rd = lsReader{cap: c.cap, nc: nc}
	c.peer = enrich.Peer{Addr: addrOfConn(nc), Accepted: time.Now()}
	c.fr = http2.NewFramer((*lsWriter)(c), &c.rd)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = lsMaxHeaderList
	// SETTINGS_MAX_FRAME_SIZE stays at its default: a larger frame is a
	// connection error, and the framer's read buffer never outgrows it.
	c.fr.SetMaxReadFrameSize(lsMaxFrame)
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// lsWriter is the framer's writer: frames gather in wbuf until flushed.
type lsWriter lsConn

func (w *lsWriter) Write(p []byte) (int, error) {
	w.wbuf = append(w.wbuf, p...)
	return len(p), nil
}

// flushLocked writes the gathered frames; wmu is held.
func (c *lsConn) flushLocked() error {
	if len(c.wbuf) == 0 {
		return nil
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.writeTimeout))
	_, err := c.nc.Write(c.wbuf)
	if cap(c.wbuf) > 64<<10 {
		c.wbuf = nil // a large answer's buffer is not kept
	} else {
		c.wbuf = c.wbuf[:0]
	}
	if err != nil {
		go c.close() // it may wait for wmu
	}
	return err
}

// lsReader reads the connection into a pooled buffer taken only once bytes
// have arrived (capConn.ReadOnReady) and given back as soon as it is read:
// an idle connection holds none.
type lsReader struct {
	cap *capConn
	nc  net.Conn
	buf *[]byte
	b   []byte
}

func (r *lsReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		var (
			n   int
			err error
		)
		if r.cap != nil {
			r.buf, n, err = r.cap.ReadOnReady(lsReadSize, bufPool)
		} else {
			r.buf = bufPool.Get(lsReadSize)
			n, err = r.nc.Read(*r.buf)
			if n == 0 {
				bufPool.Put(r.buf)
				r.buf = nil
			}
		}
		if n == 0 {
			if err == nil {
				err = io.ErrNoProgress
			}
			return 0, err
		}
		r.b = (*r.buf)[:n]
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	if len(r.b) == 0 {
		r.release()
	}
	return n, nil
}

// readFull fills p from the connection.
func (r *lsReader) readFull(p []byte) error {
	for len(p) > 0 {
		n, err := r.Read(p)
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// discard reads and drops the next n bytes of the connection.
func (r *lsReader) discard(n int) error {
	for n > 0 {
		if len(r.b) == 0 {
			var one [1]byte
			if _, err := r.Read(one[:]); err != nil { // fills the buffer
				return err
			}
			n--
			continue
		}
		k := min(n, len(r.b))
		r.b = r.b[k:]
		n -= k
		if len(r.b) == 0 {
			r.release()
		}
	}
	return nil
}

func (r *lsReader) release() {
	if r.buf != nil {
		bufPool.Put(r.buf)
		r.buf, r.b = nil, nil
	}
}

func addrOfConn(nc net.Conn) netip.Addr {
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// connError ends the connection with GOAWAY and code.
type connError struct {
	code http2.ErrCode
	msg  string
}

func (e connError) Error() string { return fmt.Sprintf("%v: %s", e.code, e.msg) }

// serve reads the connection's frames until it ends.
func (c *lsConn) serve() {
	defer c.s.wg.Done()
	defer c.rd.release()
	defer c.close()
	p := c.s.p
	// The server's preface (SETTINGS) goes out at once, as grpc-go's does;
	// the client's must arrive within ReadHeaderTimeout.
	_ = c.nc.SetReadDeadline(time.Now().Add(p.cfg.ReadHeaderTimeout))
	c.wmu.Lock()
	err := c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: uint32(p.cfg.MaxStreamsPerConnection)},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: grpcStreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: lsMaxHeaderList})
	if err == nil {
		err = c.fr.WriteWindowUpdate(0, grpcConnWindow-65535)
	}
	if err == nil {
		err = c.flushLocked()
	}
	c.wmu.Unlock()
	if err != nil {
		return
	}
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(&c.rd, preface[:]); err != nil || string(preface[:]) != http2.ClientPreface {
		return
	}
	c.mu.Lock()
	c.recvWin = grpcConnWindow
	c.mu.Unlock()
	first := true
	for {
		fh, err := c.fr.ReadFrameHeader()
		var f http2.Frame
		if err == nil {
			if fh.Type == http2.FrameData && !first && !fh.Flags.Has(http2.FlagDataPadded) && fh.StreamID != 0 {
				// The payload goes straight into its stream's message.
				if err := c.onData(fh.StreamID, int64(fh.Length), fh.Flags.Has(http2.FlagDataEndStream), nil, true); err != nil {
					c.connFailed(err)
					return
				}
				continue
			}
			f, err = c.fr.ReadFrameForHeader(fh)
		}
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) { // the frame was read; only its stream fails
				c.failStream(se.StreamID, se.Code)
				continue
			}
			var ce http2.ConnectionError
			switch {
			case errors.As(err, &ce):
				c.goAway(http2.ErrCode(ce), true)
			case errors.Is(err, http2.ErrFrameTooLarge):
				c.goAway(http2.ErrCodeFrameSize, true)
			case errors.Is(err, os.ErrDeadlineExceeded) && !first:
				c.goAway(http2.ErrCodeNo, true) // idle for idleTimeout
			}
			return
		}
		if first {
			// The client's preface ends with SETTINGS (not an ACK of
			// ours: it cannot have been read before); after it, the
			// connection waits idle (no stream) for lsIdleTimeout.
			if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
				c.goAway(http2.ErrCodeProtocol, true)
				return
			}
			first = false
			c.mu.Lock()
			c.idleLocked()
			c.mu.Unlock()
		}
		if err := c.frame(f); err != nil {
			c.connFailed(err)
			return
		}
	}
}

// connFailed ends the connection after a frame's error: with GOAWAY and
// its code when it is a connection error, at once otherwise (the
// connection's own read or write failed, or it ended).
func (c *lsConn) connFailed(err error) {
	var ce connError
	if errors.As(err, &ce) {
		c.s.p.log.Debug("lean gRPC connection error", "peer", c.peer.Addr.String(), "err", err)
		c.goAway(ce.code, true)
	}
}

// idleLocked sets the read deadline for the connection's state: without
// streams it may idle for lsIdleTimeout; with streams the read timeout of
// their messages applies (capConn.checkSlow).
func (c *lsConn) idleLocked() {
	if len(c.streams) == 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.s.idleTimeout))
	} else {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
}

func (c *lsConn) frame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f.StreamID, int64(f.Length), f.StreamEnded(), f.Data(), false)
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		st := c.streams[f.StreamID]
		if st == nil && f.StreamID > c.lastID {
			c.mu.Unlock()
			return connError{http2.ErrCodeProtocol, "RST_STREAM on an idle stream"}
		}
		c.mu.Unlock()
		if st != nil {
			c.endStream(st)
		}
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		return c.onSettings(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		c.mu.Lock()
		now := time.Now()
		if now.Sub(c.lastPing) < lsPingMinTime {
			c.pingStrikes++
		}
		c.lastPing = now
		strikes := c.pingStrikes
		c.mu.Unlock()
		if strikes > lsMaxPingStrikes {
			return connError{http2.ErrCodeEnhanceYourCalm, "too_many_pings"}
		}
		c.wmu.Lock()
		err := c.fr.WritePing(true, f.Data)
		if err == nil {
			err = c.flushLocked()
		}
		c.wmu.Unlock()
		return err
	case *http2.WindowUpdateFrame:
		c.mu.Lock()
		inc := int64(f.Increment)
		var over *lsStream
		switch st := c.streams[f.StreamID]; {
		case f.StreamID == 0:
			if c.sendWin += inc; c.sendWin > 1<<31-1 {
				c.mu.Unlock()
				return connError{http2.ErrCodeFlowControl, "connection window over 2^31-1"}
			}
		case st != nil:
			if st.sendWin += inc; st.sendWin > 1<<31-1 {
				over = st
			}
		case f.StreamID > c.lastID:
			c.mu.Unlock()
			return connError{http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream"}
		}
		c.window.Broadcast()
		c.mu.Unlock()
		if over != nil {
			c.resetStream(over.id, http2.ErrCodeFlowControl)
			c.endStream(over)
		}
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			c.failStream(f.StreamID, http2.ErrCodeProtocol)
		}
	case *http2.GoAwayFrame:
		// The client opens no more streams; those it has are answered.
		c.mu.Lock()
		c.goingAway = true
		n := len(c.streams)
		c.mu.Unlock()
		if n == 0 {
			return io.EOF
		}
	case *http2.PushPromiseFrame:
		return connError{http2.ErrCodeProtocol, "PUSH_PROMISE from a client"}
	}
	return nil // other PRIORITY frames and unknown frames are ignored
}

// failStream ends stream id with a stream error: RST_STREAM with code, and
// the stream forgotten if it was open. An idle id counts as used.
func (c *lsConn) failStream(id uint32, code http2.ErrCode) {
	c.resetStream(id, code)
	c.mu.Lock()
	st := c.streams[id]
	if id > c.lastID {
		c.lastID = id // the client may not reuse it
	}
	c.mu.Unlock()
	if st != nil {
		c.endStream(st)
	}
}

func (c *lsConn) onSettings(f *http2.SettingsFrame) error {
	c.mu.Lock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return connError{http2.ErrCodeProtocol, err.Error()}
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			d := int64(s.Val) - c.initWin
			c.initWin = int64(s.Val)
			for _, st := range c.streams {
				if st.sendWin += d; st.sendWin > 1<<31-1 {
					return connError{http2.ErrCodeFlowControl, "a stream window over 2^31-1"}
				}
			}
			c.window.Broadcast()
		case http2.SettingMaxFrameSize:
			c.maxFrame = int(s.Val)
		}
		return nil
	})
	c.mu.Unlock()
	if err != nil {
		var ce connError
		if !errors.As(err, &ce) {
			ce = connError{http2.ErrCodeProtocol, err.Error()}
		}
		return ce
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = f.ForeachSetting(func(s http2.Setting) error {
		if s.ID == http2.SettingHeaderTableSize {
			c.henc.SetMaxDynamicTableSizeLimit(s.Val)
			c.tableSize = true
		}
		return nil
	})
	if err := c.fr.WriteSettingsAck(); err != nil {
		return err
	}
	return c.flushLocked()
}

// onHeaders opens a stream: it checks the call, admits the sender, and
// takes the stream's reservation before any of its message is read.
func (c *lsConn) onHeaders(f *http2.MetaHeadersFrame) error {
	p := c.s.p
	id := f.StreamID
	c.mu.Lock()
	if st := c.streams[id]; st != nil { // trailers: a gRPC client sends none
		c.mu.Unlock()
		if !f.StreamEnded() {
			return connError{http2.ErrCodeProtocol, "second HEADERS without END_STREAM"}
		}
		c.answerEarly(st.id, st, status.New(codes.Internal, "unexpected trailers from the client"), 0, true)
		return nil
	}
	if id%2 == 0 || id <= c.lastID {
		c.mu.Unlock()
		return connError{http2.ErrCodeProtocol, "HEADERS on a stream id not above the last"}
	}
	c.lastID = id
	refuse := c.goingAway || len(c.streams) >= p.cfg.MaxStreamsPerConnection
	c.mu.Unlock()
	if refuse {
		c.resetStream(id, http2.ErrCodeRefusedStream)
		return nil
	}
	ended := f.StreamEnded()
	if f.Truncated {
		c.answerEarly(id, nil, status.Newf(codes.ResourceExhausted, "header list over %d bytes", lsMaxHeaderList), 431, ended)
		return nil
	}

	if f.HasPriority() && f.Priority.StreamDep == id {
		c.failStream(id, http2.ErrCodeProtocol) // depends on itself
		return nil
	}
	var method, scheme, path, ctype, enc, timeout string
	malformed := false
	var hdr []string
	for _, hf := range f.Fields {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":path":
			path = hf.Value
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			malformed = true // connection-specific: not in HTTP/2
		case "te":
			malformed = malformed || hf.Value != "trailers"
		case "content-type":
			ctype = hf.Value
		case "grpc-encoding":
			enc = hf.Value
		case "grpc-timeout":
			timeout = hf.Value
		default:
			for _, k := range p.allowList {
				if hf.Name == k {
					v := hf.Value
					if strings.HasSuffix(k, "-bin") {
						raw, err := decodeBinHeader(v)
						if err != nil {
							c.answerEarly(id, nil, status.Newf(codes.Internal, "malformed binary metadata %q", k), 0, ended)
							return nil
						}
						v = string(raw)
					}
					hdr = append(hdr, k, v)
				}
			}
		}
	}
	if malformed || method == "" || scheme == "" || path == "" {
		// A malformed HTTP/2 request (RFC 9113 8.1.1): a stream error,
		// as Go's HTTP/2 server answers it.
		c.failStream(id, http2.ErrCodeProtocol)
		return nil
	}
	if method != "POST" {
		c.answerEarly(id, nil, status.Newf(codes.Internal, "gRPC requires POST, not %q", method), 405, ended)
		return nil
	}
	if ctype != "application/grpc" && !strings.HasPrefix(ctype, "application/grpc+") && !strings.HasPrefix(ctype, "application/grpc;") {
		c.answerEarly(id, nil, status.Newf(codes.Internal, "invalid gRPC request content-type %q", ctype), 415, ended)
		return nil
	}
	sig, ok := signalByMethod(path)
	if !ok {
		c.answerEarly(id, nil, status.Newf(codes.Unimplemented, "unknown method %q: podstamp serves the OTLP Export methods", path), 0, ended)
		return nil
	}
	gz := false
	switch enc {
	case "", "identity":
	case "gzip":
		gz = true
	default:
		c.answerEarly(id, nil, status.Newf(codes.Unimplemented, "grpc: Decompressor is not installed for grpc-encoding %q", enc), 0, ended)
		return nil
	}
	var deadline time.Time
	if timeout != "" {
		d, err := parseGRPCTimeout(timeout)
		if err != nil {
			c.answerEarly(id, nil, status.Newf(codes.Internal, "malformed grpc-timeout %q", timeout), 0, ended)
			return nil
		}
		deadline = time.Now().Add(d)
	}
	if err := p.refusal(c.peer.Addr); err != nil {
		p.count(sig, protoGRPC, outcomeForbidden, 0)
		c.answerEarly(id, nil, status.New(codes.PermissionDenied, err.Error()), 0, ended)
		return nil
	}
	if ended {
		p.count(sig, protoGRPC, outcomeBadRequest, 0)
		c.answerEarly(id, nil, status.New(codes.Internal, "grpc: the client sent no request message"), 0, true)
		return nil
	}
	st := &lsStream{id: id, sig: sig, hdr: hdr, gzip: gz, done: make(chan struct{}), recvWin: grpcStreamWindow}
	if c.cap != nil {
		if why, ok := c.cap.reserve(st.done); !ok {
			if why < 0 {
				c.answerEarly(id, nil, status.New(codes.Unavailable, "connection closing: retry"), 0, false)
			} else {
				c.answerEarly(id, nil, p.reject(sig, protoGRPC, why), 0, false)
			}
			return nil
		}
	}
	if deadline.IsZero() {
		st.ctx, st.cancel = context.WithCancel(c.ctx)
	} else {
		st.ctx, st.cancel = context.WithDeadline(c.ctx, deadline)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		st.cancel()
		close(st.done)
		return io.EOF
	}
	st.sendWin = c.initWin
	c.streams[id] = st
	if len(c.streams) == 1 {
		c.idleLocked()
	}
	c.mu.Unlock()
	return nil
}

// onData takes a DATA frame of stream id with n payload bytes (padding
// included, as the windows count it) into its stream's message. The payload
// is data or, when direct, the next n bytes of the connection, read
// straight into the message (readData) instead of through the framer's
// frame buffer: one copy of every request byte fewer.
func (c *lsConn) onData(id uint32, n int64, end bool, data []byte, direct bool) error {
	p := c.s.p
	c.mu.Lock()
	if c.recvWin -= n; c.recvWin < 0 {
		c.mu.Unlock()
		return connError{http2.ErrCodeFlowControl, "DATA over the connection window"}
	}
	c.recvUnacked += n
	var giveBack int64
	if c.recvUnacked >= grpcConnWindow/4 {
		giveBack, c.recvUnacked = c.recvUnacked, 0
		c.recvWin += giveBack
	}
	st := c.streams[id]
	if st == nil && id > c.lastID {
		c.mu.Unlock()
		return connError{http2.ErrCodeProtocol, "DATA on an idle stream"}
	}
	var code http2.ErrCode
	take := false
	if st != nil {
		switch {
		case st.remoteClosed:
			code = http2.ErrCodeStreamClosed
		case st.recvWin-n < 0:
			code = http2.ErrCodeFlowControl
		default:
			st.recvWin -= n
			take = true
		}
	}
	var bad *status.Status
	if take && !direct {
		bad = c.takeData(st, data)
	}
	c.mu.Unlock()
	switch {
	case take && direct:
		var err error
		if bad, err = c.readData(st, int(n)); err != nil {
			return err
		}
	case direct: // a stream that ended or fails: its bytes are dropped
		if err := c.rd.discard(int(n)); err != nil {
			return err
		}
	}
	var streamBack int64
	if take && bad == nil && !end {
		c.mu.Lock()
		if st.unacked += n; st.unacked >= grpcStreamWindow/4 {
			streamBack, st.unacked = st.unacked, 0
			st.recvWin += streamBack
		}
		c.mu.Unlock()
	}
	if giveBack > 0 || streamBack > 0 {
		c.wmu.Lock()
		if giveBack > 0 {
			_ = c.fr.WriteWindowUpdate(0, uint32(giveBack))
		}
		if streamBack > 0 {
			_ = c.fr.WriteWindowUpdate(st.id, uint32(streamBack))
		}
		err := c.flushLocked()
		c.wmu.Unlock()
		if err != nil {
			return err
		}
	}
	if st == nil {
		return nil // a stream that ended: its bytes are dropped
	}
	switch {
	case code != 0:
		c.resetStream(st.id, code)
		c.endStream(st)
		return nil
	case bad != nil:
		c.answerEarly(st.id, st, bad, 0, end)
		return nil
	case !end:
		return nil
	}
	// The message is the call's from here: taken under the lock that close
	// frees the buffers of streams no call has under.
	c.mu.Lock()
	st.remoteClosed = true
	complete := st.nPrefix == 5 && st.got == st.want
	closed := c.closed
	k := &lsCall{c: c, st: st, body: mem.SliceBuffer(nil)}
	if complete && !closed {
		st.handling = true
		if st.buf != nil { // grown to st.want exactly
			k.body = mem.NewBuffer(st.buf, bufPool)
			st.buf = nil
		}
	}
	c.mu.Unlock()
	switch {
	case closed:
		return io.EOF
	case !complete:
		p.count(st.sig, protoGRPC, outcomeBadRequest, 0)
		c.answerEarly(st.id, st, status.New(codes.Internal, "grpc: the request message ended early"), 0, true)
		return nil
	}
	c.s.dispatch(k)
	return nil
}

// readData reads the next n bytes of the connection, a DATA payload of st:
// its first bytes complete the length prefix (takeData checks it), the rest
// go straight into the message buffer. While they are read the buffer is
// the reader's alone (st.buf is nil), so a close meanwhile cannot give it
// back to the pool under the read; the reader gives it back if the stream
// is gone when the read ends. A status that fails the stream comes back
// with the rest of the payload consumed.
func (c *lsConn) readData(st *lsStream, n int) (*status.Status, error) {
	p := c.s.p
	if k := min(5-st.nPrefix, n); k > 0 { // only this goroutine moves nPrefix
		var b [5]byte
		if err := c.rd.readFull(b[:k]); err != nil {
			return nil, err
		}
		n -= k
		c.mu.Lock()
		bad := c.takeData(st, b[:k])
		c.mu.Unlock()
		if bad != nil {
			return bad, c.rd.discard(n)
		}
	}
	if n == 0 {
		return nil, nil
	}
	c.mu.Lock()
	if st.buf == nil || st.got+n > st.want { // nil: the stream was dropped, or the message is empty
		gone := c.closed || c.streams[st.id] != st
		c.mu.Unlock()
		if gone {
			return nil, c.rd.discard(n)
		}
		p.count(st.sig, protoGRPC, outcomeBadRequest, 0)
		return status.New(codes.Internal, "grpc: more than one request message on a unary call"), c.rd.discard(n)
	}
	st.growLocked(n)
	buf, got := st.buf, st.got
	st.buf = nil
	c.mu.Unlock()
	err := c.rd.readFull((*buf)[got : got+n])
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil || c.closed || c.streams[st.id] != st {
		bufPool.Put(buf)
		return nil, err
	}
	st.buf, st.got = buf, got+n
	return nil, nil
}

// takeData adds b to st's message, or returns the status that fails the
// stream. c.mu is held.
func (c *lsConn) takeData(st *lsStream, b []byte) *status.Status {
	p := c.s.p
	if st.nPrefix < 5 {
		k := copy(st.prefix[st.nPrefix:], b)
		st.nPrefix += k
		b = b[k:]
		if st.nPrefix < 5 {
			return nil
		}
		if st.prefix[0] > 1 || st.prefix[0] == 1 && !st.gzip {
			p.count(st.sig, protoGRPC, outcomeBadRequest, 0)
			return status.Newf(codes.Internal, "grpc: compressed flag %d with grpc-encoding gzip=%v", st.prefix[0], st.gzip)
		}
		st.want = int(binary.BigEndian.Uint32(st.prefix[1:]))
		if int64(st.want) > p.cfg.MaxGRPCRequestBytes {
			p.count(st.sig, protoGRPC, outcomeTooLarge, 0)
			return status.Newf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", st.want, p.cfg.MaxGRPCRequestBytes)
		}
		// The buffer starts small and grows as bytes arrive, as an HTTP
		// body's does (readKnown): a sender that announces 4 MiB and
		// sends nothing holds a charge, not 4 MiB.
		if st.want > 0 {
			st.buf = bufPool.Get(min(st.want, firstChunk))
		}
	}
	if len(b) == 0 {
		return nil
	}
	if st.got+len(b) > st.want {
		p.count(st.sig, protoGRPC, outcomeBadRequest, 0)
		return status.New(codes.Internal, "grpc: more than one request message on a unary call")
	}
	st.growLocked(len(b))
	st.got += copy((*st.buf)[st.got:], b)
	return nil
}

// growLocked makes room in st's message buffer for n more bytes: it grows
// as bytes arrive, by knownGrowth at a time, up to the message's size.
func (st *lsStream) growLocked(n int) {
	if need := st.got + n; need > len(*st.buf) {
		nb := bufPool.Get(min(st.want, max(knownGrowth*len(*st.buf), need)))
		copy(*nb, (*st.buf)[:st.got])
		bufPool.Put(st.buf)
		st.buf = nb
	}
}

// endStream forgets st: its message buffer, its reservation if no call took
// it, its context.
func (c *lsConn) endStream(st *lsStream) {
	closeNow := c.release(st)
	st.cancel()
	if closeNow {
		c.close()
	}
}

// release takes st out of the connection's streams, and gives back its
// message buffer and (through its done channel) its reservation if no call
// took them. It reports whether the connection should close now: GOAWAY was
// sent and st was its last stream. Answers call it before flushing their
// last frame: a client may open its next stream as soon as it reads that
// frame, and must find the slot free.
func (c *lsConn) release(st *lsStream) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.streams[st.id] != st {
		return false
	}
	delete(c.streams, st.id)
	if !st.handling {
		st.dropLocked()
	}
	last := len(c.streams) == 0
	if last && !c.closed {
		c.idleLocked()
	}
	return last && c.goingAway
}

// resetStream sends RST_STREAM.
func (c *lsConn) resetStream(id uint32, code http2.ErrCode) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.fr.WriteRSTStream(id, code) == nil {
		_ = c.flushLocked()
	}
}

// answerEarly answers stream id with stat before its call ran: trailers
// only, and RST_STREAM when the client may still be sending. st is the
// stream when it was opened (it is ended), nil when it never was.
func (c *lsConn) answerEarly(id uint32, st *lsStream, stat *status.Status, httpStatus int, clientDone bool) {
	c.wmu.Lock()
	err := c.writeTrailersLocked(id, stat, httpStatus, true)
	if err == nil && !clientDone {
		err = c.fr.WriteRSTStream(id, http2.ErrCodeNo)
	}
	closeNow := false
	if st != nil {
		closeNow = c.release(st)
	}
	if err == nil {
		_ = c.flushLocked()
	}
	c.wmu.Unlock()
	if st != nil {
		st.cancel()
	}
	if closeNow {
		c.close()
	}
}

// writeTrailersLocked writes the status as trailers, or as the whole answer
// when only is set (with httpStatus, 200 when 0). wmu is held.
func (c *lsConn) writeTrailersLocked(id uint32, st *status.Status, httpStatus int, only bool) error {
	c.hbuf.Reset()
	field := func(k, v string) { _ = c.henc.WriteField(hpack.HeaderField{Name: k, Value: v}) }
	if only {
		if httpStatus == 0 {
			httpStatus = 200
		}
		field(":status", strconv.Itoa(httpStatus))
		field("content-type", "application/grpc")
	}
	field("grpc-status", strconv.Itoa(int(st.Code())))
	if m := st.Message(); m != "" {
		field("grpc-message", encodeGRPCMessage(m))
	}
	if st.Code() != codes.OK {
		if pb := st.Proto(); len(pb.GetDetails()) > 0 {
			if b, err := proto.Marshal(pb); err == nil {
				field("grpc-status-details-bin", base64.RawStdEncoding.EncodeToString(b))
			}
		}
	}
	return c.writeHeaderBlockLocked(id, c.hbuf.Bytes(), true)
}

// The header blocks of every successful answer, encoded without the
// dynamic table (static indexes, literals never indexed), so that they are
// valid whatever the connection's HPACK state is; a connection whose client
// changed its table size encodes them with henc instead, which signals the
// change.
var lsOKHeaders, lsOKTrailers = func() ([]byte, []byte) {
	var b bytes.Buffer
	e := hpack.NewEncoder(&b)
	block := func(kv ...string) []byte {
		b.Reset()
		for i := 0; i < len(kv); i += 2 {
			_ = e.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1], Sensitive: true})
		}
		return bytes.Clone(b.Bytes())
	}
	return block(":status", "200", "content-type", "application/grpc"), block("grpc-status", "0")
}()

// writeHeaderBlockLocked writes block as HEADERS and, past the client's
// frame size, CONTINUATION frames.
func (c *lsConn) writeHeaderBlockLocked(id uint32, block []byte, end bool) error {
	c.mu.Lock()
	max := c.maxFrame
	c.mu.Unlock()
	first := true
	for first || len(block) > 0 {
		n := min(len(block), max)
		frag := block[:n]
		block = block[n:]
		var err error
		if first {
			err = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0})
			first = false
		} else {
			err = c.fr.WriteContinuation(id, len(block) == 0, frag)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// handle runs a call on a worker: decompress, charge, forward, answer.
func (s *leanServer) handle(k *lsCall) {
	c, st, p := k.c, k.st, s.p
	sig := st.sig
	ch := charge{l: p.lim}
	if c.cap != nil {
		// The reservation the stream took at its headers is the call's now.
		ch.peer = c.cap.peer
		if c.cap.take(st.done) {
			ch.n = p.lim.grpcReserve
			defer c.cap.peer.leave()
		}
	}
	defer ch.done()
	body := k.body
	if st.prefix[0] == 1 {
		zr, err := newGzipReader(bytes.NewReader(body.ReadOnlyData()))
		var out mem.Buffer
		if err == nil {
			// The reservation holds the decompressed message too.
			out, err = readAllPooled(zr, 2*body.Len(), p.cfg.MaxGRPCRequestBytes, bufPool, &charge{})
			zr.Close()
		}
		body.Free()
		if err != nil {
			st := status.Newf(codes.Internal, "grpc: failed to decompress the received message: %v", err)
			o := outcomeBadRequest
			if errors.Is(err, errTooLarge) {
				o = outcomeTooLarge
				st = status.Newf(codes.ResourceExhausted, "grpc: received message after decompression larger than max %d", p.cfg.MaxGRPCRequestBytes)
			}
			p.count(sig, protoGRPC, o, 0)
			c.answer(k.st, nil, st.Err())
			return
		}
		body = out
	}
	// True up to what the message needs from here on.
	if !ch.set(httpCost(int64(body.Len()))) {
		body.Free()
		c.answer(st, nil, p.reject(sig, protoGRPC, ch.why).Err())
		return
	}
	p.m.inflight.Inc()
	resp, err := p.forward(st.ctx, sig, protoGRPC, c.peer, body, st.hdr)
	p.m.inflight.Dec()
	c.answer(st, resp, err)
}

// answer writes a call's answer: the response message, or err's status. A
// response goes in one write when the client's windows allow it.
func (c *lsConn) answer(st *lsStream, resp mem.BufferSlice, err error) {
	defer resp.Free()
	c.mu.Lock()
	c.pingStrikes = 0 // as grpc-go: pings between answers are not abuse
	c.mu.Unlock()
	closeNow := false
	defer func() {
		st.cancel()
		if closeNow {
			c.close()
		}
	}()
	if err != nil {
		c.wmu.Lock()
		werr := c.writeTrailersLocked(st.id, status.Convert(err), 0, true)
		closeNow = c.release(st)
		if werr == nil {
			_ = c.flushLocked()
		}
		c.wmu.Unlock()
		return
	}
	n := resp.Len() + 5
	var prefix [5]byte
	parts := messageParts(&prefix, false, resp)
	c.wmu.Lock()
	block := lsOKHeaders
	if c.tableSize {
		c.hbuf.Reset()
		_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		_ = c.henc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
		block = c.hbuf.Bytes()
	}
	werr := c.writeHeaderBlockLocked(st.id, block, false)
	for n > 0 && werr == nil {
		// Take what the windows allow; wait for more without holding wmu.
		c.mu.Lock()
		w := min(int64(n), c.sendWin, st.sendWin, int64(c.maxFrame))
		if w <= 0 {
			c.mu.Unlock()
			if werr = c.flushLocked(); werr != nil {
				break
			}
			c.wmu.Unlock()
			werr = c.waitWindow(st)
			c.wmu.Lock()
			continue
		}
		c.sendWin -= w
		st.sendWin -= w
		c.mu.Unlock()
		c.writeDataLocked(st.id, &parts, int(w))
		n -= int(w)
	}
	if werr == nil {
		if c.tableSize {
			werr = c.writeTrailersLocked(st.id, status.New(codes.OK, ""), 0, false)
		} else {
			werr = c.writeHeaderBlockLocked(st.id, lsOKTrailers, true)
		}
	}
	closeNow = c.release(st)
	if werr == nil {
		_ = c.flushLocked()
	}
	c.wmu.Unlock()
}

// waitWindow waits until st may send, bounded by the call's context and
// lsWriteTimeout.
func (c *lsConn) waitWindow(st *lsStream) error {
	t := time.AfterFunc(c.s.writeTimeout, func() { c.close() })
	defer t.Stop()
	stop := context.AfterFunc(st.ctx, func() {
		c.mu.Lock()
		c.window.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for (c.sendWin <= 0 || st.sendWin <= 0) && !c.closed && st.ctx.Err() == nil {
		c.window.Wait()
	}
	switch {
	case c.closed:
		return net.ErrClosed
	case st.ctx.Err() != nil:
		return st.ctx.Err()
	}
	return nil
}

// writeDataLocked writes n bytes of parts as one DATA frame, straight from
// the parts.
func (c *lsConn) writeDataLocked(id uint32, parts *[][]byte, n int) {
	var h [9]byte
	h[0], h[1], h[2] = byte(n>>16), byte(n>>8), byte(n)
	h[3] = byte(http2.FrameData)
	binary.BigEndian.PutUint32(h[5:], id)
	c.wbuf = append(c.wbuf, h[:]...)
	for n > 0 {
		b := (*parts)[0]
		k := min(n, len(b))
		c.wbuf = append(c.wbuf, b[:k]...)
		n -= k
		if k == len(b) {
			*parts = (*parts)[1:]
		} else {
			(*parts)[0] = b[k:]
		}
	}
}

// goAway sends GOAWAY: the client opens no more streams. With now, or when
// no stream is open, the connection closes; else it closes after the last
// stream is answered.
//
// The GOAWAY is written before any RST_STREAM REFUSED_STREAM that going
// away causes (wmu is held from the flag to the write): a client that read
// a refusal first would retry the call on this connection, to be refused
// again, and a gRPC client retries an unprocessed call only once.
func (c *lsConn) goAway(code http2.ErrCode, now bool) {
	c.wmu.Lock()
	c.mu.Lock()
	c.goingAway = true
	last := c.lastID
	idle := len(c.streams) == 0
	c.mu.Unlock()
	if c.fr.WriteGoAway(last, code, nil) == nil {
		_ = c.flushLocked()
	}
	c.wmu.Unlock()
	if now || idle {
		c.close()
	}
}

// close closes the connection and cancels its calls.
func (c *lsConn) close() {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		for id, st := range c.streams {
			if !st.handling {
				st.dropLocked()
				delete(c.streams, id)
			}
			st.cancel()
		}
		c.window.Broadcast()
		c.mu.Unlock()
		c.cancel()
		_ = c.nc.Close()
		s := c.s
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	})
}

// parseGRPCTimeout parses a grpc-timeout value: up to 8 digits and a unit.
func parseGRPCTimeout(v string) (time.Duration, error) {
	if len(v) < 2 || len(v) > 9 {
		return 0, errors.New("malformed")
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("malformed")
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, errors.New("malformed")
	}
	if n > int64(1<<63-1)/int64(unit) {
		return 1<<63 - 1, nil
	}
	return time.Duration(n) * unit, nil
}

// encodeGRPCMessage percent-encodes a grpc-message value as gRPC does:
// bytes outside printable ASCII, and '%'.
func encodeGRPCMessage(m string) string {
	need := false
	for i := 0; i < len(m); i++ {
		if c := m[i]; c < 0x20 || c > 0x7e || c == '%' {
			need = true
			break
		}
	}
	if !need {
		return m
	}
	var b strings.Builder
	for i := 0; i < len(m); i++ {
		if c := m[i]; c < 0x20 || c > 0x7e || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
