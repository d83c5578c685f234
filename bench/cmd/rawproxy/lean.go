package main

import (
	"bufio"
	"bytes"
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"encoding/binary"
	"errors"
	"fmt"
	"github.com/podstamp/podstamp/bench/internal/otlpwire"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// leanProxy is a measuring instrument, not a product: it forwards unary
// OTLP/gRPC calls unchanged over an HTTP/2 of its own, written on
// golang.org/x/net/http2's framer, to show what grpc-go's transport costs a
// forwarder. One goroutine per client connection does everything for it: it
// reads a call's frames, dials an upstream connection of its own (one per
// client connection), writes the call there, reads the answer and writes it
// back. No frame changes goroutine, nothing is queued. It handles one call at
// a time per connection (a client's concurrent calls on one connection wait
// for each other), plain gRPC only, no TLS, no keepalive, no limits: every
// error closes the connection.
type leanProxy struct {
	lis      net.Listener
	upstream string
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	done     chan struct{}
	// forward, when set, forwards a call (its gRPC length prefix included)
	// instead of a leanUp of the connection's own.
	forward    func(path string, body []byte) ([]byte, string, string, error)
	closeExtra func()
}

const (
	leanWindow    = 4 << 20  // stream window offered to clients, as podstamp's
	leanConnWin   = 16 << 20 // connection window offered
	leanMaxHeader = 16 << 10
	leanMaxBody   = 64 << 20
)

func startLean(listen, upstream string) (*leanProxy, error) {
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &leanProxy{lis: lis, upstream: upstream, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns[c] = struct{}{}
			p.mu.Unlock()
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				_ = p.serve(c)
				p.mu.Lock()
				delete(p.conns, c)
				p.mu.Unlock()
				_ = c.Close()
			}()
		}
	}()
	return p, nil
}

func (p *leanProxy) stop() {
	_ = p.lis.Close()
	<-p.done
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	if p.closeExtra != nil {
		p.closeExtra()
	}
}

type leanStream struct {
	path string
	body []byte
	recv int // bytes received since the last stream WINDOW_UPDATE
}

func (p *leanProxy) serve(c net.Conn) error {
	br := bufio.NewReaderSize(c, 64<<10)
	bw := bufio.NewWriterSize(c, 16<<10)
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(br, preface); err != nil || string(preface) != http2.ClientPreface {
		return errors.New("lean: no HTTP/2 client preface")
	}
	fr := http2.NewFramer(bw, br)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = leanMaxHeader
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: leanWindow},
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100}); err != nil {
		return err
	}
	if err := fr.WriteWindowUpdate(0, leanConnWin-65535); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	var up *leanUp
	defer func() {
		if up != nil {
			_ = up.c.Close()
		}
	}()
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	streams := map[uint32]*leanStream{}
	connRecv := 0
	var spare []byte
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					return err
				}
				if err := bw.Flush(); err != nil {
					return err
				}
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				if err := fr.WritePing(true, f.Data); err != nil {
					return err
				}
				if err := bw.Flush(); err != nil {
					return err
				}
			}
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				return errors.New("lean: a call without a body")
			}
			streams[f.StreamID] = &leanStream{path: f.PseudoValue("path")}
		case *http2.DataFrame:
			s := streams[f.StreamID]
			if s == nil {
				return fmt.Errorf("lean: data on unknown stream %d", f.StreamID)
			}
			if len(s.body)+len(f.Data()) > leanMaxBody {
				return errors.New("lean: call too large")
			}
			if s.body == nil {
				// One buffer per connection, sized from the gRPC length
				// prefix when the first frame carries it.
				s.body = spare[:0]
				if d := f.Data(); len(d) >= 5 {
					if want := 5 + int(binary.BigEndian.Uint32(d[1:5])); want <= leanMaxBody && cap(s.body) < want {
						s.body = make([]byte, 0, want)
					}
				}
			}
			s.body = append(s.body, f.Data()...)
			n := int(f.Length)
			connRecv += n
			s.recv += n
			if connRecv >= leanConnWin/4 {
				if err := fr.WriteWindowUpdate(0, uint32(connRecv)); err != nil {
					return err
				}
				connRecv = 0
			}
			if !f.StreamEnded() {
				if s.recv >= leanWindow/4 {
					if err := fr.WriteWindowUpdate(f.StreamID, uint32(s.recv)); err != nil {
						return err
					}
					s.recv = 0
				}
				continue
			}
			delete(streams, f.StreamID)
			spare = s.body[:0]
			var (
				answer      []byte
				status, msg string
			)
			if p.forward != nil {
				answer, status, msg, err = p.forward(s.path, s.body)
			} else {
				if up == nil {
					if up, err = dialLean(p.upstream); err != nil {
						return err
					}
				}
				answer, status, msg, err = up.call(s.path, s.body)
			}
			if err != nil {
				return err
			}
			hbuf.Reset()
			_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
			_ = enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hbuf.Bytes(), EndHeaders: true}); err != nil {
				return err
			}
			if len(answer) > 0 {
				if err := fr.WriteData(f.StreamID, false, answer); err != nil {
					return err
				}
			}
			hbuf.Reset()
			_ = enc.WriteField(hpack.HeaderField{Name: "grpc-status", Value: status})
			if msg != "" {
				_ = enc.WriteField(hpack.HeaderField{Name: "grpc-message", Value: msg})
			}
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hbuf.Bytes(), EndHeaders: true, EndStream: true}); err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
		case *http2.RSTStreamFrame:
			delete(streams, f.StreamID)
		case *http2.GoAwayFrame:
			return nil
		}
	}
}

// leanUp is one upstream HTTP/2 connection, used by one goroutine.
type leanUp struct {
	c         net.Conn
	bw        *bufio.Writer
	fr        *http2.Framer
	enc       *hpack.Encoder
	hbuf      bytes.Buffer
	authority string
	nextID    uint32
	connWin   int64 // what we may still send on the connection
	initWin   int64 // the peer's initial stream window
	maxFrame  int
	recv      int // answer bytes since our last connection WINDOW_UPDATE
}

func dialLean(addr string) (*leanUp, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	u := &leanUp{c: c, bw: bufio.NewWriterSize(c, 64<<10), authority: addr, nextID: 1, connWin: 65535, initWin: 65535, maxFrame: 16384}
	u.fr = http2.NewFramer(u.bw, bufio.NewReaderSize(c, 16<<10))
	u.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	u.fr.MaxHeaderListSize = leanMaxHeader
	u.enc = hpack.NewEncoder(&u.hbuf)
	if _, err := u.bw.WriteString(http2.ClientPreface); err != nil {
		_ = c.Close()
		return nil, err
	}
	if err := u.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: leanWindow}); err != nil {
		_ = c.Close()
		return nil, err
	}
	return u, nil
}

// call sends one unary call and returns the answer's DATA (its gRPC
// length prefix included), grpc-status and grpc-message.
func (u *leanUp) call(path string, parts ...[]byte) ([]byte, string, string, error) {
	id := u.nextID
	u.nextID += 2
	u.hbuf.Reset()
	for _, kv := range [...][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", path},
		{":authority", u.authority}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = u.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	if err := u.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: u.hbuf.Bytes(), EndHeaders: true}); err != nil {
		return nil, "", "", err
	}
	streamWin := u.initWin
	var answer []byte
	status, msg := "", ""
	ended := false
	for len(parts) > 0 && len(parts[len(parts)-1]) == 0 {
		parts = parts[:len(parts)-1]
	}
	if len(parts) == 0 {
		if err := u.fr.WriteData(id, true, nil); err != nil {
			return nil, "", "", err
		}
	}
	for !ended {
		// Send what the windows allow, then read a frame.
		for len(parts) > 0 {
			n := min(len(parts[0]), u.maxFrame, int(min(u.connWin, streamWin)))
			if n <= 0 {
				break
			}
			last := n == len(parts[0]) && len(parts) == 1
			if err := u.fr.WriteData(id, last, parts[0][:n]); err != nil {
				return nil, "", "", err
			}
			u.connWin -= int64(n)
			streamWin -= int64(n)
			if parts[0] = parts[0][n:]; len(parts[0]) == 0 {
				parts = parts[1:]
			}
		}
		if err := u.bw.Flush(); err != nil {
			return nil, "", "", err
		}
		f, err := u.fr.ReadFrame()
		if err != nil {
			return nil, "", "", err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
				streamWin += int64(v) - u.initWin
				u.initWin = int64(v)
			}
			if v, ok := f.Value(http2.SettingMaxFrameSize); ok {
				u.maxFrame = int(v)
			}
			if err := u.fr.WriteSettingsAck(); err != nil {
				return nil, "", "", err
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				u.connWin += int64(f.Increment)
			} else if f.StreamID == id {
				streamWin += int64(f.Increment)
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				if err := u.fr.WritePing(true, f.Data); err != nil {
					return nil, "", "", err
				}
			}
		case *http2.DataFrame:
			if f.StreamID == id {
				answer = append(answer, f.Data()...)
			}
			u.recv += int(f.Length)
			if u.recv >= 32<<10 {
				if err := u.fr.WriteWindowUpdate(0, uint32(u.recv)); err != nil {
					return nil, "", "", err
				}
				u.recv = 0
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID != id {
				continue
			}
			if s := f.Fields; len(s) > 0 {
				for _, hf := range s {
					switch hf.Name {
					case "grpc-status":
						status = hf.Value
					case "grpc-message":
						msg = hf.Value
					}
				}
			}
			ended = f.StreamEnded()
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return nil, "", "", fmt.Errorf("lean: upstream reset the call: %v", f.ErrCode)
			}
		case *http2.GoAwayFrame:
			return nil, "", "", fmt.Errorf("lean: upstream going away: %v", f.ErrCode)
		}
	}
	if status == "" {
		status = strconv.Itoa(13) // INTERNAL: no grpc-status
	}
	return answer, status, msg, nil
}

// leanPool hands out leanUp connections, one call at a time each, so the
// calling goroutine writes its call and reads the answer itself.
type leanPool struct {
	upstream string
	mu       sync.Mutex
	idle     []*leanUp
	closed   bool
}

// call forwards one message (without its gRPC length prefix) and returns the
// answer's message, or the upstream's status as an error.
func (lp *leanPool) call(method string, msg []byte) ([]byte, error) {
	lp.mu.Lock()
	var u *leanUp
	if n := len(lp.idle); n > 0 {
		u, lp.idle = lp.idle[n-1], lp.idle[:n-1]
	}
	lp.mu.Unlock()
	if u == nil {
		var err error
		if u, err = dialLean(lp.upstream); err != nil {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
	}
	var prefix [5]byte
	binary.BigEndian.PutUint32(prefix[1:], uint32(len(msg)))
	answer, st, text, err := u.call(method, prefix[:], msg)
	if err != nil {
		_ = u.c.Close()
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	lp.mu.Lock()
	if lp.closed {
		_ = u.c.Close()
	} else {
		lp.idle = append(lp.idle, u)
	}
	lp.mu.Unlock()
	if st != "0" {
		c, _ := strconv.Atoi(st)
		return nil, status.Error(codes.Code(c), text)
	}
	if len(answer) < 5 {
		return nil, nil
	}
	return answer[5:], nil
}

func (lp *leanPool) close() {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	lp.closed = true
	for _, u := range lp.idle {
		_ = u.c.Close()
	}
	lp.idle = nil
}

// startLeanClient serves with grpc-go, set up as podstamp's, and forwards
// each call through a leanPool from the handler's goroutine.
func startLeanClient(listen, upstream string) (*proxy, error) {
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	pool := &leanPool{upstream: upstream}
	// podstamp's server settings: static windows, 64 KiB buffers, workers.
	srv := grpc.NewServer(grpc.ForceServerCodecV2(otlpwire.Codec{}),
		grpc.InitialWindowSize(leanWindow), grpc.InitialConnWindowSize(8<<20),
		grpc.ReadBufferSize(64<<10), grpc.WriteBufferSize(64<<10),
		grpc.NumStreamWorkers(uint32(8*runtime.GOMAXPROCS(0))))
	p := &proxy{lis: lis, srv: srv, done: make(chan struct{})}
	registerExports(p.srv, func(_ context.Context, method string, in *otlpwire.Frame) (*otlpwire.Frame, error) {
		answer, err := pool.call(method, in.Bytes)
		if err != nil {
			return nil, err
		}
		return &otlpwire.Frame{Bytes: answer}, nil
	})
	go func() {
		defer close(p.done)
		_ = p.srv.Serve(lis)
		pool.close()
	}()
	return p, nil
}

// podstampClient is a grpc-go client of upstream set up as podstamp's:
// static windows, 64 KiB buffers, the raw codec.
func podstampClient(upstream string) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+upstream,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithReadBufferSize(64<<10), grpc.WithWriteBufferSize(64<<10),
		grpc.WithInitialWindowSize(leanWindow), grpc.WithInitialConnWindowSize(8<<20),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(otlpwire.Codec{})))
}

// startLeanServer serves with startLean's HTTP/2 and forwards each call with
// a grpc-go client set up as podstamp's (static windows, 64 KiB buffers),
// from the connection's goroutine.
func startLeanServer(listen, upstream string) (*leanProxy, error) {
	cc, err := podstampClient(upstream)
	if err != nil {
		return nil, err
	}
	p, err := startLean(listen, upstream)
	if err != nil {
		_ = cc.Close()
		return nil, err
	}
	p.forward = func(path string, body []byte) ([]byte, string, string, error) {
		if len(body) < 5 {
			return nil, strconv.Itoa(int(codes.InvalidArgument)), "no gRPC message", nil
		}
		in, out := otlpwire.Frame{Bytes: body[5:]}, otlpwire.Frame{}
		if err := cc.Invoke(context.Background(), path, &in, &out); err != nil {
			st := status.Convert(err)
			return nil, strconv.Itoa(int(st.Code())), st.Message(), nil
		}
		answer := make([]byte, 5+len(out.Bytes))
		binary.BigEndian.PutUint32(answer[1:5], uint32(len(out.Bytes)))
		copy(answer[5:], out.Bytes)
		return answer, "0", "", nil
	}
	p.closeExtra = func() { _ = cc.Close() }
	return p, nil
}

// startHTTPToGRPC serves OTLP/HTTP protobuf and forwards each body as the
// signal's gRPC Export call to upstream, from the handler's goroutine: through
// a leanPool when lean, else with a grpc-go client set up as podstamp's.
func startHTTPToGRPC(listen, upstream string, lean bool) (*httpProxy, error) {
	var (
		call    func(method string, msg []byte) ([]byte, error)
		release func()
	)
	if lean {
		pool := &leanPool{upstream: upstream}
		call, release = pool.call, pool.close
	} else {
		cc, err := podstampClient(upstream)
		if err != nil {
			return nil, err
		}
		call = func(method string, msg []byte) ([]byte, error) {
			in, out := otlpwire.Frame{Bytes: msg}, otlpwire.Frame{}
			err := cc.Invoke(context.Background(), method, &in, &out)
			return out.Bytes, err
		}
		release = func() { _ = cc.Close() }
	}
	methods := map[string]string{}
	for _, sig := range otlpwire.Signals {
		methods[otlpwire.HTTPPath[sig]] = otlpwire.Method[sig]
	}
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		release()
		return nil, err
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, ok := methods[r.URL.Path]
		if !ok || r.Method != http.MethodPost || r.ContentLength < 0 || r.ContentLength > leanMaxBody {
			http.Error(w, "rawproxy: POST a protobuf body of known length to an OTLP path", http.StatusBadRequest)
			return
		}
		body := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		answer, err := call(method, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(answer)
	})
	h := &httpProxy{lis: lis, srv: &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}, done: make(chan struct{}), closeExtra: release}
	go func() {
		defer close(h.done)
		_ = h.srv.Serve(lis)
	}()
	return h, nil
}
