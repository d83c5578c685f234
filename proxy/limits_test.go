package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	rtmetrics "runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// waitBudgetZero waits until every charge was given back, and checks the
// gauge says so too.
func waitBudgetZero(t *testing.T, tp *testProxy) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for tp.lim.budget.used.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("in-flight budget holds %d bytes, want 0", tp.lim.budget.used.Load())
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	if v := counterValue(t, tp, "podstamp_inflight_bytes", nil); v != 0 {
		t.Errorf("podstamp_inflight_bytes = %v, want 0", v)
	}
}

// heapBytes is the live heap after a collection.
func heapBytes() int64 {
	runtime.GC()
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(s)
	return int64(s[0].Value.Uint64())
}

func rejectedValue(t *testing.T, tp *testProxy, reason string) float64 {
	t.Helper()
	return counterValue(t, tp, "podstamp_rejected_total", map[string]string{"reason": reason})
}

// rawHTTPResult reads one HTTP answer from a raw connection.
func rawHTTPResult(conn net.Conn) (int, http.Header, []byte, error) {
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, nil
}

// checkRetryable checks an OTLP/HTTP answer is 429 with Retry-After and a
// google.rpc.Status with RESOURCE_EXHAUSTED and RetryInfo.
func checkRetryable(t *testing.T, code int, h http.Header, body []byte) {
	t.Helper()
	if code != http.StatusTooManyRequests || h.Get("Retry-After") != "1" {
		t.Fatalf("HTTP %d Retry-After %q, want 429 and 1", code, h.Get("Retry-After"))
	}
	var sp spb.Status
	if err := proto.Unmarshal(body, &sp); err != nil {
		t.Fatalf("429 body is not a google.rpc.Status: %v", err)
	}
	checkRetryInfo(t, status.FromProto(&sp))
}

func checkRetryInfo(t *testing.T, st *status.Status) {
	t.Helper()
	if st.Code() != codes.ResourceExhausted || retryDelay(st) != time.Second || !retryableGRPC(st) {
		t.Fatalf("got %v %q (retry delay %v), want RESOURCE_EXHAUSTED with a 1s RetryInfo", st.Code(), st.Message(), retryDelay(st))
	}
}

// TestLyingContentLength: clients that announce bodies and send nothing
// hold a charge, not memory: while they wait, the heap holds a small first
// buffer per request, not what they claimed; those the budget cannot hold
// get 429 at once; the rest get a retryable error after the read timeout;
// and the budget returns to zero. A claim over the limit is 413 at once.
func TestLyingContentLength(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), func(c *Config, _ *Options) {
		c.ReadHeaderTimeout = time.Second
		c.ReadTimeout = time.Second
		// Every connection comes from 127.0.0.1: this test is about the
		// whole budget, so that address may hold all of it.
		c.MaxInflightBytesPerPeer = defaultMaxInflightBytes
	})
	headers := func(n int64) string {
		return fmt.Sprintf("POST /v1/traces HTTP/1.1\r\nHost: podstamp\r\nContent-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n", n)
	}
	dial := func() net.Conn {
		conn, err := net.Dial("tcp", tp.HTTPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}

	conn := dial()
	io.WriteString(conn, headers(64<<20))
	if code, _, _, err := rawHTTPResult(conn); err != nil || code != http.StatusRequestEntityTooLarge {
		t.Fatalf("64 MiB claim: HTTP %d %v, want 413 before anything is read", code, err)
	}

	const n, claim = 24, 2 << 20
	fits := int(tp.lim.budget.limit / httpCost(claim))
	if fits >= n || fits == 0 {
		t.Fatalf("test set-up: %d of %d fit", fits, n)
	}
	heap0 := heapBytes()
	type result struct {
		code int
		h    http.Header
		body []byte
		err  error
		took time.Duration
	}
	results := make(chan result, n)
	for range n {
		conn := dial()
		if _, err := io.WriteString(conn, headers(claim)); err != nil {
			t.Fatal(err)
		}
		go func() {
			start := time.Now()
			code, h, body, err := rawHTTPResult(conn)
			results <- result{code, h, body, err, time.Since(start)}
		}()
	}
	for range n - fits {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		checkRetryable(t, r.code, r.h, r.body)
	}
	// The others are waiting for their bodies now.
	if used := tp.lim.budget.used.Load(); used != int64(fits)*httpCost(claim) {
		t.Errorf("budget holds %d, want %d charges of %d", used, fits, httpCost(claim))
	}
	if grown := heapBytes() - heap0; grown > 8<<20 {
		t.Errorf("heap grew by %d bytes for %d requests claiming %d bytes each", grown, fits, claim)
	}
	if pk := tp.lim.budget.peak.Load(); pk > tp.lim.budget.limit {
		t.Errorf("budget peak %d over its limit %d", pk, tp.lim.budget.limit)
	}
	for range fits {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.code != http.StatusServiceUnavailable || r.h.Get("Retry-After") == "" {
			t.Errorf("after the read timeout: HTTP %d Retry-After %q, want a retryable 503", r.code, r.h.Get("Retry-After"))
		}
	}
	waitBudgetZero(t, tp)
	if v := rejectedValue(t, tp, "budget"); v != float64(n-fits) {
		t.Errorf("rejected{budget} = %v, want %d", v, n-fits)
	}
	if v := rejectedValue(t, tp, "read_timeout"); v != float64(fits) {
		t.Errorf("rejected{read_timeout} = %v, want %d", v, fits)
	}
	up.none(t)
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestGzipBombs: a small gzip body that expands past the limit is refused
// (413 / RESOURCE_EXHAUSTED, permanent) on both ingresses, what it took
// stays within the budget, and nothing reaches the upstream.
func TestGzipBombs(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets())
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := io.CopyN(zw, zeros{}, 64<<20); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	if buf.Len() > 128<<10 {
		t.Fatalf("bomb is %d bytes compressed", buf.Len())
	}
	req, _ := http.NewRequest(http.MethodPost, tp.httpURL+"/v1/traces", bytes.NewReader(buf.Bytes()))
	req.Header.Set("Content-Type", contentTypeProtobuf)
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := tp.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("HTTP gzip bomb: %d, want 413", resp.StatusCode)
	}
	// The buffer grows to just past the limit, each size charged before
	// it is taken: the old and new buffer, never more.
	if pk, want := tp.lim.budget.peak.Load(), pooledCap(int(tp.cfg.MaxRequestBytes)+1)+pooledCap(int(tp.cfg.MaxRequestBytes)); pk > want {
		t.Errorf("HTTP gzip bomb: budget peak %d, want at most %d", pk, want)
	}
	waitBudgetZero(t, tp)

	_, err = tp.exportGRPC(context.Background(), enrich.Traces, make([]byte, 16<<20), grpc.UseCompressor("gzip"))
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || retryableGRPC(st) {
		t.Errorf("gRPC gzip bomb: %v, want a permanent RESOURCE_EXHAUSTED", err)
	}
	if pk := tp.lim.budget.peak.Load(); pk > tp.lim.budget.limit {
		t.Errorf("budget peak %d over its limit", pk)
	}
	waitBudgetZero(t, tp)
	up.none(t)
}

// heldUpstream makes the upstream hold every request until release is
// closed.
func heldUpstream(t *testing.T, up *upstream) (release func()) {
	ch := make(chan struct{})
	up.setAnswer(func(ctx context.Context, _ received) upstreamAnswer {
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return upstreamAnswer{}
	})
	var once sync.Once
	rel := func() { once.Do(func() { close(ch) }) }
	t.Cleanup(rel)
	return rel
}

// postUntilRefused posts body through hc, one request after another, each
// held at the upstream once admitted, until one is refused; it checks that
// refusal is retryable and returns the held requests' results.
func postUntilRefused(t *testing.T, tp *testProxy, up *upstream, hc *http.Client, body []byte) []chan sendResult {
	t.Helper()
	var held []chan sendResult
	for {
		res := tp.postAsync(hc, body)
		select {
		case <-up.got: // admitted and held
			held = append(held, res)
			continue
		case r := <-res:
			if r.err != nil {
				t.Fatal(r.err)
			}
			checkRetryable(t, r.code, r.h, r.body)
		}
		return held
	}
}

type sendResult struct {
	code int
	h    http.Header
	body []byte
	err  error
}

func (tp *testProxy) postAsync(hc *http.Client, body []byte) chan sendResult {
	out := make(chan sendResult, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, tp.httpURL+"/v1/traces", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentTypeProtobuf)
		resp, err := hc.Do(req)
		if err != nil {
			out <- sendResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out <- sendResult{code: resp.StatusCode, h: resp.Header, body: b}
	}()
	return out
}

// TestBudgetExhaustion: requests are admitted while their charges fit;
// the next gets 429 + Retry-After (HTTP) or RESOURCE_EXHAUSTED + RetryInfo
// (gRPC, refused in the tap), every request that was answered OK arrived
// upstream, and the budget returns to zero.
func TestBudgetExhaustion(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), func(c *Config, _ *Options) {
		c.MaxRequestBytes = 256 << 10
		c.MaxGRPCRequestBytes = 256 << 10
		c.MaxInflightBytes = 1 << 20
		c.MaxInflightBytesPerPeer = 1 << 20 // one sender, the whole budget
	})
	release := heldUpstream(t, up)
	body, _ := payload(t, enrich.Traces, 800)
	cost := httpCost(int64(len(body)))
	fits := int(tp.lim.budget.limit / cost)
	if fits < 2 || len(body) > 256<<10 {
		t.Fatalf("test set-up: %d-byte body costs %d, %d fit", len(body), cost, fits)
	}
	hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 100}}
	defer hc.CloseIdleConnections()
	held := postUntilRefused(t, tp, up, hc, body)
	if len(held) != fits {
		t.Errorf("%d requests admitted, want %d (budget %d, %d each)", len(held), fits, tp.lim.budget.limit, cost)
	}
	// A gRPC stream's reservation does not fit either: refused before its
	// message is read.
	_, err := tp.exportGRPC(context.Background(), enrich.Traces, body)
	checkRetryInfo(t, status.Convert(err))
	if v := counterValue(t, tp, "podstamp_inflight_bytes", nil); v != float64(int64(fits)*cost) {
		t.Errorf("podstamp_inflight_bytes = %v, want %d", v, int64(fits)*cost)
	}

	release()
	for _, res := range held {
		if r := <-res; r.err != nil || r.code != 200 {
			t.Errorf("held request: HTTP %d %v, want 200", r.code, r.err)
		}
	}
	waitBudgetZero(t, tp)
	up.none(t) // every OK was one of the requests the upstream got
	if v := rejectedValue(t, tp, "budget"); v != 2 {
		t.Errorf("rejected{budget} = %v, want 2", v)
	}
	for proto, want := range map[string]float64{"http": 1, "grpc": 1} {
		if v := counterValue(t, tp, "podstamp_requests_total", map[string]string{"protocol": proto, "outcome": "rejected", "signal": "traces"}); v != want {
			t.Errorf("requests_total{%s, rejected} = %v, want %v", proto, v, want)
		}
	}
	// With the budget free again, both ingresses forward.
	if _, err := tp.exportGRPC(context.Background(), enrich.Traces, body); err != nil {
		t.Errorf("gRPC after release: %v", err)
	}
	up.next(t)
	waitBudgetZero(t, tp)
}

// TestPerPeerRequestLimit: one address gets MaxRequestsPerPeer requests
// in flight over both ingresses; the next is refused retryably; another
// address is not affected.
func TestPerPeerRequestLimit(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), func(c *Config, _ *Options) { c.MaxRequestsPerPeer = 2 })
	release := heldUpstream(t, up)
	body, _ := payload(t, enrich.Traces, 3)
	grpcErr := make(chan error, 1)
	go func() { _, err := tp.exportGRPC(context.Background(), enrich.Traces, body); grpcErr <- err }()
	up.next(t)
	first := tp.postAsync(tp.hc, body)
	up.next(t)

	r := <-tp.postAsync(tp.hc, body)
	if r.err != nil {
		t.Fatal(r.err)
	}
	checkRetryable(t, r.code, r.h, r.body)
	_, err := tp.exportGRPC(context.Background(), enrich.Traces, body)
	checkRetryInfo(t, status.Convert(err))

	// 127.0.0.2 is another peer.
	other := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	defer other.CloseIdleConnections()
	third := tp.postAsync(other, body)
	up.next(t)

	release()
	for _, res := range []chan sendResult{first, third} {
		if r := <-res; r.err != nil || r.code != 200 {
			t.Errorf("held request: HTTP %d %v", r.code, r.err)
		}
	}
	if err := <-grpcErr; err != nil {
		t.Errorf("held gRPC request: %v", err)
	}
	if v := rejectedValue(t, tp, "per_peer"); v != 2 {
		t.Errorf("rejected{per_peer} = %v, want 2", v)
	}
	waitBudgetZero(t, tp)
	up.none(t)
}

// peerConns is how many connections the proxy counts for addr.
func peerConns(tp *testProxy, addr string) int {
	tp.lim.mu.Lock()
	defer tp.lim.mu.Unlock()
	for a, ps := range tp.lim.peers {
		if a.String() == addr {
			return ps.conns
		}
	}
	return 0
}

func waitPeerConns(t *testing.T, tp *testProxy, addr string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for peerConns(tp, addr) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d connections, want %d", addr, peerConns(tp, addr), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestConnectionCaps: connections over the listener's cap, or over one
// address's, are closed at accept and counted; a closed connection frees
// its slot; another address still gets in.
func TestConnectionCaps(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), func(c *Config, _ *Options) {
		c.MaxConnections = 3
		c.MaxConnectionsPerPeer = 2
	})
	dial := func(from string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		conn, err := d.Dial("tcp", tp.GRPCAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	// The gRPC server speaks first (its SETTINGS) on an accepted
	// connection; a refused one is closed without a byte.
	accepted := func(conn net.Conn) bool {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := conn.Read(make([]byte, 1))
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("read: %v", err)
		}
		return err == nil
	}
	a1, a2 := dial("127.0.0.1"), dial("127.0.0.1")
	if !accepted(a1) || !accepted(a2) {
		t.Fatal("first two connections refused")
	}
	if accepted(dial("127.0.0.1")) {
		t.Error("third connection of 127.0.0.1 accepted, over MaxConnectionsPerPeer 2")
	}
	if v := rejectedValue(t, tp, "connections_per_peer"); v != 1 {
		t.Errorf("rejected{connections_per_peer} = %v, want 1", v)
	}
	if !accepted(dial("127.0.0.2")) {
		t.Error("another address refused")
	}
	if accepted(dial("127.0.0.3")) {
		t.Error("fourth connection accepted, over MaxConnections 3")
	}
	if v := rejectedValue(t, tp, "connections"); v != 1 {
		t.Errorf("rejected{connections} = %v, want 1", v)
	}
	a1.Close()
	waitPeerConns(t, tp, "127.0.0.1", 1)
	if !accepted(dial("127.0.0.1")) {
		t.Error("a closed connection's slot was not freed")
	}
}

// h2client speaks just enough HTTP/2 to send gRPC requests a gRPC client
// would not: an unknown grpc-encoding, a message that never completes.
type h2client struct {
	t      *testing.T
	conn   net.Conn
	fr     *http2.Framer
	mu     sync.Mutex
	hbuf   bytes.Buffer
	enc    *hpack.Encoder
	status chan string   // grpc-status of finished streams
	closed chan struct{} // the server closed the connection
}

func dialH2(t *testing.T, addr string) *h2client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &h2client{t: t, conn: conn, status: make(chan string, 16), closed: make(chan struct{})}
	c.enc = hpack.NewEncoder(&c.hbuf)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	c.fr = http2.NewFramer(conn, conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go c.read()
	return c
}

func (c *h2client) read() {
	defer close(c.closed)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.mu.Lock()
				c.fr.WriteSettingsAck()
				c.mu.Unlock()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.mu.Lock()
				c.fr.WritePing(true, f.Data)
				c.mu.Unlock()
			}
		case *http2.MetaHeadersFrame:
			if v := f.PseudoValue("status"); v == "" || f.StreamEnded() {
				for _, hf := range f.Fields {
					if hf.Name == "grpc-status" {
						c.status <- hf.Value
					}
				}
			}
		}
	}
}

// send writes a gRPC request's headers and data (a message prefix
// announcing announce bytes, then msg).
func (c *h2client) send(id uint32, encoding string, announce int, msg []byte, end bool) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hbuf.Reset()
	for _, kv := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":authority", "podstamp"},
		{":path", signals[enrich.Traces].method}, {"content-type", "application/grpc"},
		{"te", "trailers"}, {"grpc-encoding", encoding},
	} {
		c.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true}); err != nil {
		c.t.Fatal(err)
	}
	data := make([]byte, 5, 5+len(msg))
	data[0] = 1 // compressed
	binary.BigEndian.PutUint32(data[1:], uint32(announce))
	if err := c.fr.WriteData(id, end, append(data, msg...)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *h2client) nextStatus(t *testing.T) string {
	t.Helper()
	select {
	case s := <-c.status:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no gRPC status")
		return ""
	}
}

// TestBudgetReturnsToZero: whatever ends a request (its client going away
// mid-body or while the upstream holds it, the upstream failing, bad
// input, a stream gRPC refuses after the tap, a message slower than the
// read timeout), the budget and the peer's request slots return to zero.
func TestBudgetReturnsToZero(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), func(c *Config, _ *Options) { c.ReadTimeout = 500 * time.Millisecond })
	body, _ := payload(t, enrich.Traces, 20)
	peerIdle := func(t *testing.T) {
		t.Helper()
		tp.lim.mu.Lock()
		defer tp.lim.mu.Unlock()
		for a, ps := range tp.lim.peers {
			if n := ps.requests.Load(); n != 0 {
				t.Errorf("%s holds %d request slots", a, n)
			}
		}
	}

	t.Run("http-client-gone-mid-body", func(t *testing.T) {
		conn, err := net.Dial("tcp", tp.HTTPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /v1/traces HTTP/1.1\r\nHost: p\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100000\r\n\r\n%s", body[:10])
		deadline := time.Now().Add(5 * time.Second)
		for tp.lim.budget.used.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // until the handler charged it
		}
		conn.Close()
		waitBudgetZero(t, tp)
	})
	t.Run("http-chunked-client-gone", func(t *testing.T) {
		conn, err := net.Dial("tcp", tp.HTTPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /v1/traces HTTP/1.1\r\nHost: p\r\nContent-Type: application/x-protobuf\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n")
		deadline := time.Now().Add(5 * time.Second)
		for tp.lim.budget.used.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		conn.Close()
		waitBudgetZero(t, tp)
	})
	t.Run("canceled-while-upstream-holds", func(t *testing.T) {
		release := heldUpstream(t, up)
		defer release()
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 2)
		go func() { _, err := tp.exportGRPC(ctx, enrich.Traces, body); errc <- err }()
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tp.httpURL+"/v1/traces", bytes.NewReader(body))
			req.Header.Set("Content-Type", contentTypeProtobuf)
			resp, err := tp.hc.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		up.next(t)
		up.next(t)
		cancel()
		<-errc
		<-errc
		waitBudgetZero(t, tp)
		peerIdle(t)
	})
	t.Run("upstream-error-and-bad-input", func(t *testing.T) {
		up.setAnswer(func(context.Context, received) upstreamAnswer {
			return upstreamAnswer{err: status.Error(codes.Unavailable, "down")}
		})
		defer up.setAnswer(nil)
		if _, err := tp.exportGRPC(context.Background(), enrich.Traces, body); status.Code(err) != codes.Unavailable {
			t.Errorf("gRPC: %v", err)
		}
		up.next(t)
		if r := tp.exportHTTP(t, context.Background(), enrich.Traces, contentTypeProtobuf, true, body, nil); r.status != 503 {
			t.Errorf("HTTP: %d", r.status)
		}
		up.next(t)
		if _, err := tp.exportGRPC(context.Background(), enrich.Traces, []byte{0x0a, 0xff}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("malformed gRPC: %v", err)
		}
		if _, err := tp.exportGRPC(context.Background(), enrich.Traces, make([]byte, 5<<20)); status.Code(err) != codes.ResourceExhausted {
			t.Errorf("too large gRPC: %v", err)
		}
		if r := tp.exportHTTP(t, context.Background(), enrich.Traces, contentTypeJSON, false, []byte(`{"resourceSpans": [`), nil); r.status != 400 {
			t.Errorf("bad JSON: %d", r.status)
		}
		waitBudgetZero(t, tp)
		peerIdle(t)
		up.none(t)
	})
	t.Run("grpc-refused-after-tap", func(t *testing.T) {
		// gRPC answers an unknown grpc-encoding itself, after the tap and
		// without running the handler: the reservation is swept when the
		// next stream on the connection arrives, or when it closes.
		c := dialH2(t, tp.GRPCAddr().String())
		c.send(1, "no-such-codec", 3, []byte{1, 2, 3}, true)
		if s := c.nextStatus(t); s != fmt.Sprint(int(codes.Unimplemented)) {
			t.Fatalf("grpc-status %s, want UNIMPLEMENTED", s)
		}
		// leanServer checks the encoding before it reserves anything.
		want := tp.lim.grpcReserve
		if ingressTransport == TransportLean {
			want = 0
		}
		if used := tp.lim.budget.used.Load(); used != want {
			t.Fatalf("budget holds %d, want the refused stream's reservation %d until a sweep", used, want)
		}
		c.send(3, "no-such-codec", 3, []byte{1, 2, 3}, true)
		c.nextStatus(t)
		if used := tp.lim.budget.used.Load(); used != want {
			t.Fatalf("budget holds %d after the second stream, want %d", used, want)
		}
		c.conn.Close()
		waitBudgetZero(t, tp)
		peerIdle(t)
	})
	t.Run("grpc-message-slower-than-read-timeout", func(t *testing.T) {
		c := dialH2(t, tp.GRPCAddr().String())
		start := time.Now()
		c.send(1, "gzip", 1000, []byte{0x1f, 0x8b}, false) // 2 of 1000 bytes
		select {
		case <-c.closed:
		case <-time.After(10 * time.Second):
			t.Fatal("the connection of a stalled message was not closed")
		}
		if d := time.Since(start); d < tp.cfg.ReadTimeout {
			t.Errorf("closed after %v, before the read timeout", d)
		}
		if v := rejectedValue(t, tp, "read_timeout"); v != 1 {
			t.Errorf("rejected{read_timeout} = %v, want 1", v)
		}
		waitBudgetZero(t, tp)
		peerIdle(t)
	})
	up.none(t)
}

// TestJSONDecodeCost: decoding JSON is charged its bound before it
// starts (the output can outgrow the JSON: "0," in a list of fixed 64-bit
// numbers becomes 8 bytes, and the bound counts every comma so). With a
// budget that holds an ordinary JSON request but not one of the same size
// made of tiny items, the tiny one is refused (413, permanent) before
// decoding, and the ordinary one is forwarded.
func TestJSONDecodeCost(t *testing.T) {
	tiny := []byte(`{"resourceSpans":[` + strings.Repeat(`{},`, 100000) + `{}]}`)
	_, js := payload(t, enrich.Traces, 1000)
	_, js = payload(t, enrich.Traces, 1000*len(tiny)/len(js))
	need := func(b []byte) int64 { return httpCost(int64(len(b))) + jsonDecodeBound(int(enrich.Traces), b) }
	budget := (need(js) + need(tiny)) / 2
	if !(need(js) < budget && budget < need(tiny)) {
		t.Fatalf("test set-up: ordinary JSON of %d bytes needs %d, tiny items of %d bytes %d", len(js), need(js), len(tiny), need(tiny))
	}
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), func(c *Config, _ *Options) {
		c.MaxRequestBytes = int64(max(len(tiny), len(js)))
		c.MaxJSONRequestBytes = c.MaxRequestBytes
		c.MaxGRPCRequestBytes = 64 << 10
		c.MaxInflightBytes = budget
		c.MaxInflightBytesPerPeer = budget
	})
	r := tp.exportHTTP(t, context.Background(), enrich.Traces, contentTypeJSON, false, tiny, nil)
	if r.status != http.StatusRequestEntityTooLarge || !strings.Contains(string(r.body), "decoding this JSON request") {
		t.Errorf("JSON of tiny items: HTTP %d %s, want 413", r.status, r.body)
	}
	up.none(t)
	if r := tp.exportHTTP(t, context.Background(), enrich.Traces, contentTypeJSON, false, js, nil); r.status != 200 {
		t.Errorf("ordinary JSON of %d bytes: HTTP %d", len(js), r.status)
	}
	up.next(t)
	waitBudgetZero(t, tp)
}

// TestPerPeerBudgetShare: one address may hold only its share of the
// in-flight budget. Its requests beyond it are refused as retryable
// (per_peer_bytes), over gRPC before the message is read, while another
// address's requests still fit, are forwarded and answered OK.
func TestPerPeerBudgetShare(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), func(c *Config, _ *Options) {
		c.MaxRequestBytes = 256 << 10
		c.MaxGRPCRequestBytes = 256 << 10
		c.MaxInflightBytes = 2 << 20 // the default share: half of it
	})
	if tp.lim.maxPeerBytes != 1<<20 {
		t.Fatalf("share %d, want half the budget", tp.lim.maxPeerBytes)
	}
	release := heldUpstream(t, up)
	body, _ := payload(t, enrich.Traces, 800)
	cost := httpCost(int64(len(body)))
	fits := int(tp.lim.maxPeerBytes / cost)
	if fits < 2 {
		t.Fatalf("test set-up: %d-byte body costs %d, %d fit", len(body), cost, fits)
	}
	hog := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 100}}
	defer hog.CloseIdleConnections()
	held := postUntilRefused(t, tp, up, hog, body)
	if len(held) != fits {
		t.Errorf("%d requests of one address admitted, want %d (share %d, %d each)", len(held), fits, tp.lim.maxPeerBytes, cost)
	}
	if v := rejectedValue(t, tp, "per_peer_bytes"); v != 1 {
		t.Errorf("rejected{per_peer_bytes} = %v, want 1", v)
	}
	// The same address over gRPC: refused in the tap.
	_, err := tp.exportGRPC(context.Background(), enrich.Traces, body)
	checkRetryInfo(t, status.Convert(err))

	// Another address still gets in, though the first holds its share.
	other := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	defer other.CloseIdleConnections()
	res := tp.postAsync(other, body)
	select {
	case <-up.got:
	case r := <-res:
		t.Fatalf("another address refused while one holds its share: HTTP %d %v", r.code, r.err)
	}
	release()
	if r := <-res; r.err != nil || r.code != 200 {
		t.Errorf("other address: HTTP %d %v, want 200", r.code, r.err)
	}
	for _, res := range held {
		if r := <-res; r.err != nil || r.code != 200 {
			t.Errorf("held request: HTTP %d %v, want 200", r.code, r.err)
		}
	}
	waitBudgetZero(t, tp)
	up.none(t)
}

// TestBudgetWaitsBriefly: a request whose charge does not fit waits up to
// budgetWait for bytes to be given back before it is refused, so a burst
// of ordinary exports is delayed rather than refused: over HTTP (the
// handler waits) and over gRPC (the tap waits).
func TestBudgetWaitsBriefly(t *testing.T) {
	up := newGRPCUpstream(t)
	body, _ := payload(t, enrich.Traces, 800)
	tp := newTestProxy(t, up.targets(), func(c *Config, _ *Options) {
		c.MaxRequestBytes = int64(len(body))
		c.MaxGRPCRequestBytes = int64(len(body))
		// Room for one request in flight, not two.
		c.MaxInflightBytes = max(grpcReservation(int64(len(body))), httpCost(int64(len(body)))) + httpCost(int64(len(body)))/2
		c.MaxInflightBytesPerPeer = c.MaxInflightBytes
	})
	for _, proto := range []string{"http", "grpc"} {
		t.Run(proto, func(t *testing.T) {
			release := heldUpstream(t, up)
			hc := &http.Client{Transport: &http.Transport{}}
			defer hc.CloseIdleConnections()
			first := tp.postAsync(hc, body)
			<-up.got // holds its charge at the upstream
			second := make(chan error, 1)
			go func() {
				if proto == "http" {
					r := <-tp.postAsync(hc, body)
					if r.err == nil && r.code != 200 {
						r.err = fmt.Errorf("HTTP %d", r.code)
					}
					second <- r.err
					return
				}
				_, err := tp.exportGRPC(context.Background(), enrich.Traces, body)
				second <- err
			}()
			for tp.lim.budget.waiters.Load() == 0 {
				select {
				case err := <-second:
					t.Fatalf("second request answered before the first gave its bytes back: %v", err)
				default:
					runtime.Gosched()
				}
			}
			release() // the first completes within the second's wait
			if r := <-first; r.err != nil || r.code != 200 {
				t.Fatalf("first: HTTP %d %v", r.code, r.err)
			}
			if err := <-second; err != nil {
				t.Errorf("second request refused although bytes were given back while it waited: %v", err)
			} else {
				<-up.got
			}
			waitBudgetZero(t, tp)
		})
	}
	if v := rejectedValue(t, tp, "budget"); v != 0 {
		t.Errorf("rejected{budget} = %v, want 0", v)
	}
}
