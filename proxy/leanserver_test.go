package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// These tests attack leanServer through a real listener with a raw HTTP/2
// client; the rest of the proxy suite runs on it too with
// PODSTAMP_TEST_GRPC_TRANSPORT=lean.

func leanIngress(extra func(*Config)) proxyOption {
	return func(c *Config, _ *Options) {
		c.GRPCTransport = TransportLean
		if extra != nil {
			extra(c)
		}
	}
}

// lsEvent is a frame the raw client read, reduced to what tests check.
type lsEvent struct {
	typ        http2.FrameType
	stream     uint32
	httpStatus string
	grpcStatus string
	grpcMsg    string
	code       http2.ErrCode // RST_STREAM, GOAWAY
	data       int
	end        bool
}

type lsRawClient struct {
	t      *testing.T
	conn   net.Conn
	fr     *http2.Framer
	mu     sync.Mutex // writes
	hbuf   bytes.Buffer
	enc    *hpack.Encoder
	events chan lsEvent
	closed chan struct{}
}

// dialLean opens a raw HTTP/2 connection: the preface, and SETTINGS unless
// noSettings. It acknowledges the server's SETTINGS and never sends
// WINDOW_UPDATE.
func dialLean(t *testing.T, addr string, noSettings bool) *lsRawClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &lsRawClient{t: t, conn: conn, events: make(chan lsEvent, 4096), closed: make(chan struct{})}
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.fr = http2.NewFramer(conn, conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if !noSettings {
		if err := c.fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
	}
	go c.read()
	return c
}

func (c *lsRawClient) read() {
	defer close(c.closed)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		e := lsEvent{typ: f.Header().Type, stream: f.Header().StreamID}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.mu.Lock()
				c.fr.WriteSettingsAck()
				c.mu.Unlock()
			}
			continue
		case *http2.MetaHeadersFrame:
			e.httpStatus = f.PseudoValue("status")
			for _, hf := range f.Fields {
				switch hf.Name {
				case "grpc-status":
					e.grpcStatus = hf.Value
				case "grpc-message":
					e.grpcMsg = hf.Value
				}
			}
			e.end = f.StreamEnded()
		case *http2.DataFrame:
			e.data, e.end = len(f.Data()), f.StreamEnded()
		case *http2.RSTStreamFrame:
			e.code = f.ErrCode
		case *http2.GoAwayFrame:
			e.code = f.ErrCode
		case *http2.WindowUpdateFrame:
			continue
		}
		c.events <- e
	}
}

// headers sends a request's HEADERS: the Export call of sig unless fields
// replace them, then extra fields.
//
// A field whose value is lsOmit leaves that field of the call out.
func (c *lsRawClient) headers(id uint32, end bool, fields ...[2]string) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hbuf.Reset()
	base := map[string]string{":method": "POST", ":scheme": "http", ":authority": "podstamp",
		":path": signals[enrich.Traces].method, "content-type": "application/grpc", "te": "trailers"}
	for _, kv := range fields {
		if _, ok := base[kv[0]]; ok {
			base[kv[0]] = kv[1]
		}
	}
	for _, k := range []string{":method", ":scheme", ":authority", ":path", "content-type", "te"} {
		if base[k] != lsOmit {
			c.enc.WriteField(hpack.HeaderField{Name: k, Value: base[k]})
		}
	}
	for _, kv := range fields {
		if _, ok := base[kv[0]]; !ok {
			c.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
	}
	block := c.hbuf.Bytes()
	first := true
	for first || len(block) > 0 {
		n := min(len(block), 16384)
		var err error
		if first {
			err = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block[:n], EndStream: end, EndHeaders: n == len(block)})
		} else {
			err = c.fr.WriteContinuation(id, n == len(block), block[:n])
		}
		if err != nil {
			c.t.Fatal(err)
		}
		block, first = block[n:], false
	}
}

const lsOmit = "\x00omit"

func (c *lsRawClient) data(id uint32, b []byte, end bool) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for first := true; first || len(b) > 0; first = false {
		n := min(len(b), 16384)
		if err := c.fr.WriteData(id, end && n == len(b), b[:n]); err != nil {
			c.t.Fatal(err)
		}
		b = b[n:]
	}
}

// message sends a whole call: HEADERS, then msg with its gRPC prefix.
func (c *lsRawClient) message(id uint32, msg []byte, fields ...[2]string) {
	c.t.Helper()
	c.headers(id, false, fields...)
	c.data(id, grpcMessage(msg), true)
}

func grpcMessage(msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

func (c *lsRawClient) do(f func(fr *http2.Framer) error) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := f(c.fr); err != nil {
		c.t.Fatal(err)
	}
}

// expect returns the next event that match accepts, skipping others.
func (c *lsRawClient) expect(what string, match func(lsEvent) bool) lsEvent {
	c.t.Helper()
	timeout := time.After(10 * time.Second)
	var skipped []lsEvent
	for {
		select {
		case e := <-c.events:
			if match(e) {
				return e
			}
			skipped = append(skipped, e)
		case <-c.closed:
			select {
			case e := <-c.events:
				if match(e) {
					return e
				}
				continue
			default:
			}
			c.t.Fatalf("connection closed before %s", what)
		case <-timeout:
			c.t.Fatalf("no %s within 10s; skipped %+v", what, skipped)
		}
	}
}

// status waits for stream id's grpc-status.
func (c *lsRawClient) status(id uint32) lsEvent {
	c.t.Helper()
	return c.expect("grpc-status", func(e lsEvent) bool {
		return e.typ == http2.FrameHeaders && e.stream == id && e.grpcStatus != ""
	})
}

func (c *lsRawClient) goAway() lsEvent {
	c.t.Helper()
	return c.expect("GOAWAY", func(e lsEvent) bool { return e.typ == http2.FrameGoAway })
}

func (c *lsRawClient) waitClosed() {
	c.t.Helper()
	select {
	case <-c.closed:
	case <-time.After(10 * time.Second):
		c.t.Fatal("connection not closed within 10s")
	}
}

func wantStatus(t *testing.T, e lsEvent, c codes.Code) {
	t.Helper()
	if e.grpcStatus != strconv.Itoa(int(c)) {
		t.Fatalf("stream %d: grpc-status %s (%s), want %d %v", e.stream, e.grpcStatus, e.grpcMsg, c, c)
	}
}

// holdUpstream makes the upstream hold every call until release is closed.
func holdUpstream(up *upstream) (release func()) {
	ch := make(chan struct{})
	up.setAnswer(func(ctx context.Context, _ received) upstreamAnswer {
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return upstreamAnswer{}
	})
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// TestLeanServerMultiplexes: calls on one connection are served side by
// side; one held upstream does not hold the others.
func TestLeanServerMultiplexes(t *testing.T) {
	up := newGRPCUpstream(t)
	// 17 streams may hold their reservation at once (until a worker trues
	// it up): small messages keep them within the budget.
	tp := newTestProxy(t, up.targets(), leanIngress(func(c *Config) { c.MaxGRPCRequestBytes = 1 << 20 }))
	body, _ := payload(t, enrich.Traces, 2)
	var n atomic.Int32
	release := make(chan struct{})
	up.setAnswer(func(ctx context.Context, _ received) upstreamAnswer {
		if n.Add(1) == 1 {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return upstreamAnswer{}
	})
	held := make(chan error, 1)
	go func() {
		_, err := tp.exportGRPC(context.Background(), enrich.Traces, body)
		held <- err
	}()
	up.next(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			_, err := tp.exportGRPC(context.Background(), enrich.Traces, body)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for range 16 {
		up.next(t)
	}
	select {
	case err := <-held:
		t.Fatalf("the held call returned before its upstream answered: %v", err)
	default:
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	waitBudgetZero(t, tp)
}

// TestLeanServerStreamsOverLimit: a client that opens more streams than
// SETTINGS_MAX_CONCURRENT_STREAMS gets REFUSED_STREAM for them, and the
// others are served.
func TestLeanServerStreamsOverLimit(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), leanIngress(func(c *Config) { c.MaxStreamsPerConnection = 2 }))
	release := holdUpstream(up)
	defer release()
	body, _ := payload(t, enrich.Traces, 2)
	c := dialLean(t, tp.GRPCAddr().String(), false)
	c.message(1, body)
	c.message(3, body)
	up.next(t)
	up.next(t)
	c.message(5, body)
	e := c.expect("RST_STREAM", func(e lsEvent) bool { return e.typ == http2.FrameRSTStream })
	if e.stream != 5 || e.code != http2.ErrCodeRefusedStream {
		t.Fatalf("got RST_STREAM %d %v, want stream 5 REFUSED_STREAM", e.stream, e.code)
	}
	release()
	for range 2 { // in either order
		e := c.expect("grpc-status of stream 1 or 3", func(e lsEvent) bool { return e.grpcStatus != "" })
		if e.stream != 1 && e.stream != 3 {
			t.Fatalf("status on stream %d", e.stream)
		}
		wantStatus(t, e, codes.OK)
	}
	up.none(t)
	c.message(7, body) // a slot is free again
	wantStatus(t, c.status(7), codes.OK)
	up.next(t)
	waitBudgetZero(t, tp)
}

// TestLeanServerBadCalls: calls that are wrong each get their status and
// leave the connection serving.
func TestLeanServerBadCalls(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), leanIngress(func(c *Config) { c.MaxGRPCRequestBytes = 1 << 20 }))
	body, _ := payload(t, enrich.Traces, 2)
	c := dialLean(t, tp.GRPCAddr().String(), false)
	id := uint32(1)
	next := func() uint32 { id += 2; return id - 2 }
	for _, tc := range []struct {
		name       string
		send       func(id uint32)
		code       codes.Code
		httpStatus string
	}{
		{"unknown method", func(id uint32) { c.message(id, body, [2]string{":path", "/no.Such/Method"}) }, codes.Unimplemented, "200"},
		{"GET", func(id uint32) { c.message(id, body, [2]string{":method", "GET"}) }, codes.Internal, "405"},
		{"content-type", func(id uint32) { c.message(id, body, [2]string{"content-type", "text/plain"}) }, codes.Internal, "415"},
		{"encoding", func(id uint32) { c.message(id, body, [2]string{"grpc-encoding", "br"}) }, codes.Unimplemented, "200"},
		{"timeout", func(id uint32) { c.message(id, body, [2]string{"grpc-timeout", "soon"}) }, codes.Internal, "200"},
		{"no message", func(id uint32) { c.headers(id, true) }, codes.Internal, "200"},
		{"message cut short", func(id uint32) {
			c.headers(id, false)
			c.data(id, grpcMessage(body)[:20], true)
		}, codes.Internal, "200"},
		{"two messages", func(id uint32) {
			c.headers(id, false)
			c.data(id, append(grpcMessage(body), grpcMessage(body)...), true)
		}, codes.Internal, "200"},
		{"compressed without encoding", func(id uint32) {
			m := grpcMessage(body)
			m[0] = 1
			c.headers(id, false)
			c.data(id, m, true)
		}, codes.Internal, "200"},
		{"announced over the limit", func(id uint32) {
			m := make([]byte, 5)
			binary.BigEndian.PutUint32(m[1:], 2<<20)
			c.headers(id, false)
			c.data(id, m, false) // the rest never comes: the answer does not wait for it
		}, codes.ResourceExhausted, "200"},
		{"gzip over the limit", func(id uint32) {
			m := grpcMessage(gzipBytes(t, make([]byte, 2<<20)))
			m[0] = 1
			c.headers(id, false, [2]string{"grpc-encoding", "gzip"})
			c.data(id, m, true)
		}, codes.ResourceExhausted, "200"},
		{"malformed OTLP", func(id uint32) { c.message(id, []byte{0x0a, 0xff}) }, codes.InvalidArgument, "200"},
		{"header list over the limit", func(id uint32) {
			// Just over the limit: the framer drops the fields past it
			// (MetaHeadersFrame.Truncated). A block far over it ends the
			// connection (TestLeanServerProtocolErrors).
			var fields [][2]string
			for i := range 4 {
				fields = append(fields, [2]string{"x-big-" + strconv.Itoa(i), strings.Repeat("a", lsMaxHeaderList/4-100)})
			}
			c.message(id, body, fields...)
		}, codes.ResourceExhausted, "431"},
	} {
		sid := next()
		tc.send(sid)
		e := c.status(sid)
		wantStatus(t, e, tc.code)
		if e.httpStatus != tc.httpStatus {
			t.Errorf("%s: :status %q, want %s", tc.name, e.httpStatus, tc.httpStatus)
		}
	}
	up.none(t)
	sid := next()
	c.message(sid, body)
	wantStatus(t, c.status(sid), codes.OK)
	up.next(t)
	waitBudgetZero(t, tp)
}

// TestLeanServerMalformedRequests: requests that are not well-formed
// HTTP/2 (RFC 9113 8.1.1: a pseudo-header missing or empty, a
// connection-specific field, TE other than "trailers"), a stream depending
// on itself, and a stream's send window pushed over 2^31-1 end that stream
// with RST_STREAM and the error's code; nothing reaches the upstream, the
// connection keeps serving, and every reservation comes back.
func TestLeanServerMalformedRequests(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), leanIngress(nil))
	body, _ := payload(t, enrich.Traces, 2)
	c := dialLean(t, tp.GRPCAddr().String(), false)
	id := uint32(1)
	for _, tc := range []struct {
		name string
		send func(id uint32)
		code http2.ErrCode
	}{
		{"no :method", func(id uint32) { c.message(id, body, [2]string{":method", lsOmit}) }, http2.ErrCodeProtocol},
		{"no :scheme", func(id uint32) { c.message(id, body, [2]string{":scheme", lsOmit}) }, http2.ErrCodeProtocol},
		{"no :path", func(id uint32) { c.message(id, body, [2]string{":path", lsOmit}) }, http2.ErrCodeProtocol},
		{"empty :path", func(id uint32) { c.message(id, body, [2]string{":path", ""}) }, http2.ErrCodeProtocol},
		{"connection", func(id uint32) { c.message(id, body, [2]string{"connection", "keep-alive"}) }, http2.ErrCodeProtocol},
		{"upgrade", func(id uint32) { c.message(id, body, [2]string{"upgrade", "h2c"}) }, http2.ErrCodeProtocol},
		{"te", func(id uint32) { c.message(id, body, [2]string{"te", "gzip"}) }, http2.ErrCodeProtocol},
		{"HEADERS depending on itself", func(id uint32) {
			c.do(func(fr *http2.Framer) error {
				c.hbuf.Reset()
				for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", signals[enrich.Traces].method}, {"content-type", "application/grpc"}} {
					c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
				}
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true,
					Priority: http2.PriorityParam{StreamDep: id, Weight: 15}})
			})
		}, http2.ErrCodeProtocol},
		{"PRIORITY depending on itself", func(id uint32) {
			c.headers(id, false)
			c.do(func(fr *http2.Framer) error {
				return fr.WritePriority(id, http2.PriorityParam{StreamDep: id, Weight: 15})
			})
		}, http2.ErrCodeProtocol},
		{"stream window over 2^31-1", func(id uint32) {
			c.headers(id, false)
			c.do(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(id, 1<<31-1) })
		}, http2.ErrCodeFlowControl},
	} {
		tc.send(id)
		e := c.expect("RST_STREAM", func(e lsEvent) bool { return e.typ == http2.FrameRSTStream && e.stream == id })
		if e.code != tc.code {
			t.Errorf("%s: RST_STREAM %v, want %v", tc.name, e.code, tc.code)
		}
		id += 2
	}
	up.none(t)
	// The next stream's reservation sweeps those of the streams ended.
	c.message(id, body)
	wantStatus(t, c.status(id), codes.OK)
	up.next(t)
	waitBudgetZero(t, tp)
}

// TestLeanServerProtocolErrors: frames no client may send end the
// connection with GOAWAY and the error's code.
func TestLeanServerProtocolErrors(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), leanIngress(nil))
	body, _ := payload(t, enrich.Traces, 2)
	for _, tc := range []struct {
		name       string
		noSettings bool
		send       func(c *lsRawClient)
		code       http2.ErrCode
	}{
		{"no SETTINGS first", true, func(c *lsRawClient) { c.do(func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{}) }) }, http2.ErrCodeProtocol},
		{"even stream id", false, func(c *lsRawClient) { c.message(2, body) }, http2.ErrCodeProtocol},
		{"stream id going back", false, func(c *lsRawClient) { c.message(5, body); c.status(5); c.message(3, body) }, http2.ErrCodeProtocol},
		{"DATA on an idle stream", false, func(c *lsRawClient) { c.data(9, grpcMessage(body), true) }, http2.ErrCodeProtocol},
		{"RST_STREAM on an idle stream", false, func(c *lsRawClient) {
			c.do(func(fr *http2.Framer) error { return fr.WriteRSTStream(9, http2.ErrCodeCancel) })
		}, http2.ErrCodeProtocol},
		{"PUSH_PROMISE", false, func(c *lsRawClient) {
			c.do(func(fr *http2.Framer) error {
				return fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, EndHeaders: true})
			})
		}, http2.ErrCodeProtocol},
		{"window over 2^31-1", false, func(c *lsRawClient) {
			c.do(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, 1<<31-1) })
		}, http2.ErrCodeFlowControl},
		{"WINDOW_UPDATE on an idle stream", false, func(c *lsRawClient) {
			c.do(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(9, 1) })
		}, http2.ErrCodeProtocol},
		{"SETTINGS pushing a stream's window over 2^31-1", false, func(c *lsRawClient) {
			c.headers(1, false) // open: its message never comes
			c.do(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(1, 1<<31-1-65535) })
			c.do(func(fr *http2.Framer) error {
				return fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65536})
			})
		}, http2.ErrCodeFlowControl},
		{"header value over the list limit", false, func(c *lsRawClient) {
			c.message(1, body, [2]string{"x-big", strings.Repeat("a", lsMaxHeaderList+1)})
		}, http2.ErrCodeCompression},
		{"frame over SETTINGS_MAX_FRAME_SIZE", false, func(c *lsRawClient) {
			// A frame the framer would otherwise buffer whole: up to 16 MiB
			// per connection.
			c.do(func(fr *http2.Framer) error { return fr.WriteRawFrame(0x42, 0, 0, make([]byte, 20<<10)) })
		}, http2.ErrCodeFrameSize},
		{"ping flood", false, func(c *lsRawClient) {
			for i := range 4 {
				c.do(func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{byte(i)}) })
			}
		}, http2.ErrCodeEnhanceYourCalm},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialLean(t, tp.GRPCAddr().String(), tc.noSettings)
			c.t = t
			tc.send(c)
			if e := c.goAway(); e.code != tc.code {
				t.Fatalf("GOAWAY %v, want %v", e.code, tc.code)
			}
			c.waitClosed()
			for len(up.got) > 0 {
				<-up.got
			}
			waitBudgetZero(t, tp)
		})
	}
}

// TestLeanServerResetsGiveBack: streams reset before their message is in,
// thousands of them, give back every reservation and slot, and the
// connection still serves.
func TestLeanServerResetsGiveBack(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), leanIngress(nil))
	body, _ := payload(t, enrich.Traces, 2)
	c := dialLean(t, tp.GRPCAddr().String(), false)
	m := grpcMessage(body)
	id := uint32(1)
	for range 2000 {
		c.headers(id, false)
		c.data(id, m[:len(m)/2], false)
		c.do(func(fr *http2.Framer) error { return fr.WriteRSTStream(id, http2.ErrCodeCancel) })
		id += 2
	}
	c.message(id, body)
	wantStatus(t, c.status(id), codes.OK)
	up.next(t)
	up.none(t)
	waitBudgetZero(t, tp)
	tp.lim.mu.Lock()
	for a, ps := range tp.lim.peers {
		if n := ps.requests.Load(); n != 0 {
			t.Errorf("%v holds %d request slots", a, n)
		}
	}
	tp.lim.mu.Unlock()
}

// TestLeanServerUnreadAnswer: a client that never opens its window for an
// answer is cut off after the write timeout; what its call held is given
// back.
func TestLeanServerUnreadAnswer(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), leanIngress(func(c *Config) { c.leanWriteTimeout = 300 * time.Millisecond }))
	up.setAnswer(func(context.Context, received) upstreamAnswer { return upstreamAnswer{body: make([]byte, 1<<20)} })
	body, _ := payload(t, enrich.Traces, 2)
	c := dialLean(t, tp.GRPCAddr().String(), false)
	start := time.Now()
	c.message(1, body)
	up.next(t)
	got := 0
	for {
		select {
		case e := <-c.events:
			got += e.data
			if e.typ == http2.FrameHeaders && e.grpcStatus != "" {
				t.Fatalf("answer completed over a window of 65535 bytes: %+v", e)
			}
			continue
		case <-c.closed:
		case <-time.After(10 * time.Second):
			t.Fatal("connection not cut off")
		}
		break
	}
	if got > 65535 {
		t.Errorf("%d bytes of answer sent over a window of 65535", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cut off after %v", d)
	}
	waitBudgetZero(t, tp)
}

// TestLeanServerTimeouts: a connection that sends no preface is closed
// after ReadHeaderTimeout; an idle one gets GOAWAY after the idle timeout.
func TestLeanServerTimeouts(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), leanIngress(func(c *Config) {
		c.ReadHeaderTimeout = 200 * time.Millisecond
		c.leanIdleTimeout = 300 * time.Millisecond
	}))
	conn, err := net.Dial("tcp", tp.GRPCAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil { // the server's SETTINGS, then EOF
		t.Fatalf("silent connection: %v, want it closed", err)
	}

	body, _ := payload(t, enrich.Traces, 2)
	c := dialLean(t, tp.GRPCAddr().String(), false)
	c.message(1, body)
	wantStatus(t, c.status(1), codes.OK)
	up.next(t)
	if e := c.goAway(); e.code != http2.ErrCodeNo {
		t.Fatalf("idle GOAWAY %v", e.code)
	}
	c.waitClosed()
}

// TestLeanServerDrain: a draining server sends GOAWAY, answers the call in
// flight, and refuses streams opened after it.
func TestLeanServerDrain(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), leanIngress(nil))
	release := holdUpstream(up)
	defer release()
	body, _ := payload(t, enrich.Traces, 2)
	c := dialLean(t, tp.GRPCAddr().String(), false)
	c.message(1, body)
	up.next(t)
	stopped := make(chan error, 1)
	go func() { stopped <- tp.stop(t) }()
	if e := c.goAway(); e.code != http2.ErrCodeNo {
		t.Fatalf("GOAWAY %v", e.code)
	}
	c.message(3, body)
	e := c.expect("RST_STREAM of stream 3", func(e lsEvent) bool { return e.stream == 3 })
	if e.typ != http2.FrameRSTStream || e.code != http2.ErrCodeRefusedStream {
		t.Fatalf("stream 3 after GOAWAY: %+v, want REFUSED_STREAM", e)
	}
	release()
	wantStatus(t, c.status(1), codes.OK)
	c.waitClosed()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	up.none(t)
}

// TestLeanServerErrorsKeepDetails: an upstream error reaches a gRPC client
// with its code, message and details.
func TestLeanServerErrorsKeepDetails(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), leanIngress(nil))
	want, err := withRetryInfo(status.New(codes.Unavailable, "upstream down: 100% ünïcode"), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	up.setAnswer(func(context.Context, received) upstreamAnswer { return upstreamAnswer{err: want.Err()} })
	body, _ := payload(t, enrich.Traces, 2)
	_, err = tp.exportGRPC(context.Background(), enrich.Traces, body)
	up.next(t)
	got := status.Convert(err)
	if got.Code() != want.Code() || got.Message() != want.Message() || retryDelay(got) != 3*time.Second {
		t.Fatalf("got %v (retry %v), want %v", got, retryDelay(got), want)
	}
	if errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// TestLeanServerHeaderTableSize: a client that shrinks the HPACK table gets
// answers it can decode (the blocks then go through the connection's
// encoder, which signals the change).
func TestLeanServerHeaderTableSize(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), leanIngress(nil))
	body, _ := payload(t, enrich.Traces, 2)
	c := dialLean(t, tp.GRPCAddr().String(), false)
	c.fr.ReadMetaHeaders.SetAllowedMaxDynamicTableSize(0)
	c.do(func(fr *http2.Framer) error {
		return fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
	})
	for id := uint32(1); id <= 5; id += 2 {
		c.message(id, body)
		wantStatus(t, c.status(id), codes.OK)
		up.next(t)
	}
	c.message(7, []byte{0x0a, 0xff})
	wantStatus(t, c.status(7), codes.InvalidArgument)
}

// FuzzLeanServer writes arbitrary frames after the client preface to a
// lean server on a real listener: it must not fail, must answer or close,
// and once the connection is gone every charge and request slot must be
// back.
func FuzzLeanServer(f *testing.F) {
	body, _ := payload(f, enrich.Traces, 2)
	seed := func(write func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer)) {
		var b, hb bytes.Buffer
		fr := http2.NewFramer(&b, nil)
		enc := hpack.NewEncoder(&hb)
		_ = fr.WriteSettings()
		write(fr, enc, &hb)
		f.Add(b.Bytes())
	}
	headers := func(enc *hpack.Encoder, hb *bytes.Buffer, kv ...string) []byte {
		hb.Reset()
		for i := 0; i < len(kv); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return hb.Bytes()
	}
	call := []string{":method", "POST", ":scheme", "http", ":authority", "p", ":path", signals[enrich.Traces].method,
		"content-type", "application/grpc", "te", "trailers"}
	seed(func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headers(enc, hb, call...), EndHeaders: true})
		_ = fr.WriteData(1, true, grpcMessage(body))
	})
	seed(func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headers(enc, hb, append(call, "grpc-encoding", "gzip", "grpc-timeout", "1S")...), EndHeaders: true})
		_ = fr.WriteData(1, false, grpcMessage(body)[:7])
		_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: headers(enc, hb, call...), EndHeaders: true})
		_ = fr.WriteDataPadded(3, true, grpcMessage(body), make([]byte, 9))
	})
	seed(func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		block := headers(enc, hb, call...)
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:5], EndHeaders: false})
		_ = fr.WriteContinuation(1, true, block[5:])
		_ = fr.WriteWindowUpdate(0, 1000)
		_ = fr.WriteWindowUpdate(1, 1000)
		_ = fr.WritePing(false, [8]byte{1})
		_ = fr.WriteData(1, true, grpcMessage(body))
		_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	})
	seed(func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headers(enc, hb, ":method", "GET", ":path", "/x"), EndHeaders: true, EndStream: true})
		_ = fr.WritePriority(3, http2.PriorityParam{StreamDep: 1, Weight: 9})
		_ = fr.WriteRawFrame(0x42, 0, 5, []byte("unknown"))
	})

	up := newGRPCUpstream(f)
	tp := newTestProxy(f, up.targets(), leanIngress(func(c *Config) {
		c.MaxGRPCRequestBytes = 1 << 20
		c.ReadTimeout = 2 * time.Second
		c.ReadHeaderTimeout = 2 * time.Second
		c.leanWriteTimeout = time.Second
	}))
	f.Fuzz(func(t *testing.T, frames []byte) {
		conn, err := net.Dial("tcp", tp.GRPCAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(append([]byte(http2.ClientPreface), frames...)); err != nil {
			return // the server may have closed already
		}
		conn.(*net.TCPConn).CloseWrite()
		// The server answers, then closes on the end of input, a protocol
		// error or the read timeout of a message left incomplete.
		if _, err := io.Copy(io.Discard, conn); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("reading the server: %v", err)
		}
		conn.Close()
		for len(up.got) > 0 {
			<-up.got
		}
		waitBudgetZero(t, tp)
		tp.lim.mu.Lock()
		n := len(tp.lim.peers)
		tp.lim.mu.Unlock()
		if n != 0 {
			t.Fatalf("%d peers still hold connections after the connection closed", n)
		}
	})
}

// TestLeanServerSlotFreeOnAnswer: a stream's slot is free by the time its
// answer's last frame can be read, so a client at the stream limit may
// open its next stream at once.
func TestLeanServerSlotFreeOnAnswer(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), leanIngress(func(c *Config) { c.MaxStreamsPerConnection = 1 }))
	body, _ := payload(t, enrich.Traces, 2)
	c := dialLean(t, tp.GRPCAddr().String(), false)
	for i := range 300 {
		id := uint32(2*i + 1)
		m := body
		if i%2 == 1 {
			m = []byte{0x0a, 0xff} // answered with an error: the other path
		}
		c.message(id, m)
		e := c.expect("the answer's end", func(e lsEvent) bool { return e.stream == id && (e.end || e.typ == http2.FrameRSTStream) })
		if e.typ == http2.FrameRSTStream {
			t.Fatalf("call %d: RST_STREAM %v right after the previous answer", i, e.code)
		}
		if i%2 == 0 {
			up.next(t)
		}
	}
}

// TestLeanServerPayloadInPieces: DATA payloads, read from the connection
// straight into the message, arrive in pieces (a frame's header and its
// payload apart, a payload cut in the middle, the prefix split over two
// frames) and the upstream gets the message whole; a client that goes away
// in the middle of a payload gives back every charge.
func TestLeanServerPayloadInPieces(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), leanIngress(nil))
	body, _ := payload(t, enrich.Traces, 1000)
	msg := grpcMessage(body)
	if len(msg) < 3*16384 {
		t.Fatalf("message of %d bytes: want several frames", len(msg))
	}
	frame := func(id uint32, p []byte, end bool) []byte { // a DATA frame's bytes, to write in pieces
		var b bytes.Buffer
		if err := http2.NewFramer(&b, nil).WriteData(id, end, p); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	write := func(c *lsRawClient, b []byte) {
		t.Helper()
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, err := c.conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	c := dialLean(t, tp.GRPCAddr().String(), false)
	c.headers(1, false)
	write(c, frame(1, msg[:3], false)) // the prefix over two frames
	rest := msg[3:]
	for len(rest) > 0 {
		n := min(len(rest), 16384)
		f := frame(1, rest[:n], n == len(rest))
		write(c, f[:9])      // the header alone
		write(c, f[9:9+n/2]) // half the payload
		write(c, f[9+n/2:])
		rest = rest[n:]
	}
	wantStatus(t, c.status(1), codes.OK)
	if got := up.next(t); !bytes.Equal(got.body, body) {
		t.Errorf("the upstream got %d bytes, want the %d sent", len(got.body), len(body))
	}

	gone := dialLean(t, tp.GRPCAddr().String(), false)
	gone.headers(1, false)
	f := frame(1, msg[:16384], false)
	write(gone, f[:9+5000]) // a payload cut short, and the client gone
	gone.conn.Close()
	waitBudgetZero(t, tp)
}
