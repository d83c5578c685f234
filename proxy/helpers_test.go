package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/pprofile"
	"go.opentelemetry.io/collector/pdata/pprofile/pprofileotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// ingressTransport is the gRPC ingress every test proxy serves with:
// PODSTAMP_TEST_GRPC_TRANSPORT=lean runs the whole suite on leanServer
// (make test does both).
var ingressTransport = os.Getenv("PODSTAMP_TEST_GRPC_TRANSPORT")

// upstreamTransport is the transport of every test's gRPC upstream (but the
// legs that name theirs): PODSTAMP_TEST_UPSTREAM_TRANSPORT=auto runs the
// suite as the binary runs by default.
var upstreamTransport = os.Getenv("PODSTAMP_TEST_UPSTREAM_TRANSPORT")

// bytesCodec is the tests' own raw codec (independent of the proxy's): it
// moves *[]byte.
type bytesCodec struct{}

func (bytesCodec) Name() string { return "proto" }
func (bytesCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (bytesCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// payload returns an export request of sig with n items, as protobuf and as
// OTLP JSON (both encoded by pdata).
func payload(t testing.TB, sig enrich.Signal, n int) (pb, js []byte) {
	t.Helper()
	var err1, err2 error
	switch sig {
	case enrich.Traces:
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", "checkout")
		rs.Resource().Attributes().PutInt("loadgen.n", int64(n))
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName("podstamp-test")
		for i := range n {
			sp := ss.Spans().AppendEmpty()
			sp.SetName("GET /cart")
			sp.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, byte(i)})
			sp.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, byte(i)})
			sp.SetKind(ptrace.SpanKindServer)
			sp.SetStartTimestamp(pcommon.Timestamp(1700000000000000000 + i))
			sp.SetEndTimestamp(pcommon.Timestamp(1700000000000001000 + i))
			sp.Attributes().PutStr("http.route", "/cart")
			sp.Attributes().PutInt("http.status_code", 200)
		}
		r := ptraceotlp.NewExportRequestFromTraces(td)
		pb, err1 = r.MarshalProto()
		js, err2 = r.MarshalJSON()
	case enrich.Metrics:
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "checkout")
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName("requests")
		g := m.SetEmptyGauge()
		for i := range n {
			dp := g.DataPoints().AppendEmpty()
			dp.SetIntValue(int64(i))
			dp.SetTimestamp(pcommon.Timestamp(1700000000000000000 + i))
			dp.Attributes().PutStr("route", "/cart")
		}
		r := pmetricotlp.NewExportRequestFromMetrics(md)
		pb, err1 = r.MarshalProto()
		js, err2 = r.MarshalJSON()
	case enrich.Logs:
		ld := plog.NewLogs()
		rl := ld.ResourceLogs().AppendEmpty()
		rl.Resource().Attributes().PutStr("service.name", "checkout")
		sl := rl.ScopeLogs().AppendEmpty()
		for i := range n {
			lr := sl.LogRecords().AppendEmpty()
			lr.Body().SetStr("cart updated")
			lr.SetSeverityNumber(plog.SeverityNumberInfo)
			lr.SetTimestamp(pcommon.Timestamp(1700000000000000000 + i))
			lr.Attributes().PutInt("items", int64(i))
		}
		r := plogotlp.NewExportRequestFromLogs(ld)
		pb, err1 = r.MarshalProto()
		js, err2 = r.MarshalJSON()
	case enrich.Profiles:
		pd := pprofile.NewProfiles()
		pd.Dictionary().StringTable().Append("", "cpu", "nanoseconds")
		rp := pd.ResourceProfiles().AppendEmpty()
		rp.Resource().Attributes().PutStr("service.name", "checkout")
		sp := rp.ScopeProfiles().AppendEmpty()
		for i := range n {
			p := sp.Profiles().AppendEmpty()
			p.SetProfileID(pprofile.ProfileID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, byte(i)})
			p.SetTime(pcommon.Timestamp(1700000000000000000 + i))
			p.SetDurationNano(1000)
			p.SampleType().SetTypeStrindex(1)
			p.SampleType().SetUnitStrindex(2)
		}
		r := pprofileotlp.NewExportRequestFromProfiles(pd)
		pb, err1 = r.MarshalProto()
		js, err2 = r.MarshalJSON()
	}
	if err1 != nil || err2 != nil {
		t.Fatalf("building %s payload: %v %v", sig, err1, err2)
	}
	return pb, js
}

// partialSuccess returns an export response of sig with a partial success.
func partialSuccess(t testing.TB, sig enrich.Signal, rejected int64, msg string) []byte {
	t.Helper()
	var b []byte
	var err error
	switch sig {
	case enrich.Traces:
		r := ptraceotlp.NewExportResponse()
		r.PartialSuccess().SetRejectedSpans(rejected)
		r.PartialSuccess().SetErrorMessage(msg)
		b, err = r.MarshalProto()
	case enrich.Metrics:
		r := pmetricotlp.NewExportResponse()
		r.PartialSuccess().SetRejectedDataPoints(rejected)
		r.PartialSuccess().SetErrorMessage(msg)
		b, err = r.MarshalProto()
	case enrich.Logs:
		r := plogotlp.NewExportResponse()
		r.PartialSuccess().SetRejectedLogRecords(rejected)
		r.PartialSuccess().SetErrorMessage(msg)
		b, err = r.MarshalProto()
	case enrich.Profiles:
		r := pprofileotlp.NewExportResponse()
		r.PartialSuccess().SetRejectedProfiles(rejected)
		r.PartialSuccess().SetErrorMessage(msg)
		b, err = r.MarshalProto()
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// received is one request an upstream saw.
type received struct {
	path        string // gRPC full method or HTTP path
	body        []byte // decompressed
	header      map[string][]string
	deadline    time.Time
	hasDeadline bool
	compressed  bool
}

// upstream is a recording OTLP upstream on a real 127.0.0.1 listener.
type upstream struct {
	t         testing.TB
	endpoint  string // base URL: http://127.0.0.1:port
	protocol  string
	transport string // of a gRPC upstream's targets: "" (grpc-go), TransportLean or TransportAuto
	got       chan received

	mu sync.Mutex
	// answer decides the answer to each request; nil answers OK with an
	// empty response.
	answer func(ctx context.Context, r received) upstreamAnswer
}

type upstreamAnswer struct {
	body []byte // response (success) or google.rpc.Status (HTTP error)
	err  error  // gRPC upstream: the error to return
	// HTTP upstream
	httpStatus int
	header     map[string]string
}

func (u *upstream) setAnswer(f func(ctx context.Context, r received) upstreamAnswer) {
	u.mu.Lock()
	u.answer = f
	u.mu.Unlock()
}

func (u *upstream) respond(ctx context.Context, r received) upstreamAnswer {
	u.mu.Lock()
	f := u.answer
	u.mu.Unlock()
	if u.got == nil { // benchmarks: record nothing
		return upstreamAnswer{}
	}
	select {
	case u.got <- r:
	default:
		u.t.Errorf("upstream: more requests than the test expected")
	}
	if f == nil {
		return upstreamAnswer{}
	}
	return f(ctx, r)
}

// next returns the next request the upstream saw.
func (u *upstream) next(t testing.TB) received {
	t.Helper()
	select {
	case r := <-u.got:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("upstream received nothing")
		return received{}
	}
}

// none checks that the upstream saw no request.
func (u *upstream) none(t testing.TB) {
	t.Helper()
	select {
	case r := <-u.got:
		t.Fatalf("upstream received a request it should not have: %s", r.path)
	default:
	}
}

func (u *upstream) target(sig enrich.Signal) Target {
	t := Target{Protocol: u.protocol, Endpoint: u.endpoint, Timeout: time.Minute, Transport: u.transport}
	if u.protocol == ProtocolHTTPProtobuf {
		t.Endpoint = JoinURLPath(u.endpoint, HTTPPath(sig))
	}
	return t
}

func (u *upstream) targets() [numSignals]Target {
	var out [numSignals]Target
	for _, sig := range enrich.Signals {
		out[sig] = u.target(sig)
	}
	return out
}

func newGRPCUpstream(t testing.TB) *upstream { return newGRPCUpstreamTLS(t, nil) }

// newLeanUpstream is a gRPC upstream that podstamp reaches on the lean
// transport.
func newLeanUpstream(t testing.TB) *upstream {
	u := newGRPCUpstreamTLS(t, nil)
	u.transport = TransportLean
	return u
}

// newGRPCGoUpstream is a gRPC upstream that podstamp reaches on grpc-go's
// client, whatever PODSTAMP_TEST_UPSTREAM_TRANSPORT says.
func newGRPCGoUpstream(t testing.TB) *upstream {
	u := newGRPCUpstreamTLS(t, nil)
	u.transport = TransportGRPC
	return u
}

// upstreamLegs are the four upstream legs a request can leave by: gRPC or
// HTTP, plain or gzip.
var upstreamLegs = []upstreamLeg{
	{"grpc-upstream", newGRPCGoUpstream, ""},
	{"grpc-upstream-gzip", newGRPCGoUpstream, "gzip"},
	{"lean-upstream", newLeanUpstream, ""},
	{"lean-upstream-gzip", newLeanUpstream, "gzip"},
	{"http-upstream", newHTTPUpstream, ""},
	{"http-upstream-gzip", newHTTPUpstream, "gzip"},
}

type upstreamLeg struct {
	name string
	mk   func(testing.TB) *upstream
	gzip string
}

// start starts the leg's upstream and returns it with targets that use the
// leg's compression.
func (l upstreamLeg) start(t testing.TB) (*upstream, [numSignals]Target) {
	up := l.mk(t)
	targets := up.targets()
	for i := range targets {
		targets[i].Compression = l.gzip
	}
	return up, targets
}

// newGRPCUpstreamTLS starts a gRPC upstream, serving TLS when tc is set.
func newGRPCUpstreamTLS(t testing.TB, tc *tls.Config) *upstream {
	t.Helper()
	u := &upstream{t: t, protocol: ProtocolGRPC, transport: upstreamTransport, got: make(chan received, 1024)}
	var creds []grpc.ServerOption
	if tc != nil {
		creds = append(creds, grpc.Creds(credentials.NewTLS(tc)))
	}
	srv := grpc.NewServer(append(creds,
		grpc.StatsHandler(compressionSeen{}),
		grpc.ForceServerCodecV2(bytesCodec{}),
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			var body []byte
			if err := stream.RecvMsg(&body); err != nil {
				return err
			}
			ctx := stream.Context()
			method, _ := grpc.MethodFromServerStream(stream)
			md, _ := metadata.FromIncomingContext(ctx)
			r := received{path: method, body: body, header: md}
			r.deadline, r.hasDeadline = ctx.Deadline()
			if c, ok := ctx.Value(compressedKey{}).(*atomic.Bool); ok {
				r.compressed = c.Load()
			}
			a := u.respond(ctx, r)
			if a.err != nil {
				return a.err
			}
			resp := a.body
			if resp == nil {
				resp = []byte{}
			}
			return stream.SendMsg(&resp)
		}),
	)...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	u.endpoint = "http://" + ln.Addr().String()
	if tc != nil {
		u.endpoint = "https://" + ln.Addr().String()
	}
	return u
}

func newHTTPUpstream(t testing.TB) *upstream { return newHTTPUpstreamTLS(t, nil) }

// newHTTPUpstreamTLS starts an HTTP upstream, serving TLS when tc is set.
func newHTTPUpstreamTLS(t testing.TB, tc *tls.Config) *upstream {
	t.Helper()
	u := &upstream{t: t, protocol: ProtocolHTTPProtobuf, got: make(chan received, 1024)}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var rd io.Reader = req.Body
		r := received{path: req.URL.Path, header: map[string][]string{}}
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			rd = zr
			r.compressed = true
		}
		body, err := io.ReadAll(rd)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.body = body
		for k, v := range req.Header {
			r.header[strings.ToLower(k)] = v
		}
		a := u.respond(req.Context(), r)
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/x-protobuf")
		}
		code := a.httpStatus
		if code == 0 {
			code = http.StatusOK
		}
		w.WriteHeader(code)
		_, _ = w.Write(a.body)
	}))
	if tc != nil {
		srv.TLS = tc
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	u.endpoint = srv.URL
	return u
}

// compressionSeen records in the RPC's context whether its request arrived
// compressed.
type compressionSeen struct{}

type compressedKey struct{}

func (compressionSeen) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, compressedKey{}, new(atomic.Bool))
}

func (compressionSeen) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if in, ok := s.(*stats.InPayload); ok && in.CompressedLength > 0 && in.CompressedLength != in.Length {
		ctx.Value(compressedKey{}).(*atomic.Bool).Store(true)
	}
}

func (compressionSeen) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (compressionSeen) HandleConn(context.Context, stats.ConnStats)                       {}

// testProxy is a running proxy on 127.0.0.1 listeners.
type testProxy struct {
	*Proxy
	reg     *prometheus.Registry
	cancel  context.CancelFunc
	done    chan error
	grpc    *grpc.ClientConn
	httpURL string
	admin   string
	debug   string
	hc      *http.Client
}

type proxyOption func(*Config, *Options)

func newTestProxy(t testing.TB, targets [numSignals]Target, opts ...proxyOption) *testProxy {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.GRPCListen, cfg.HTTPListen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.DebugListen = "127.0.0.1:0"
	cfg.Upstream = targets
	cfg.GRPCTransport = ingressTransport
	cfg.ShutdownTimeout = 10 * time.Second
	// Closing a test proxy waits this long; TestReusePortHandover keeps the
	// default.
	cfg.KeepAliveDrain = 10 * time.Millisecond
	o := Options{Registerer: reg, Gatherer: reg, Version: "test"}
	for _, f := range opts {
		f(&cfg, &o)
	}
	p, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		p.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tp := &testProxy{Proxy: p, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { tp.done <- p.Serve(ctx) }()
	cc, err := grpc.NewClient("passthrough:///"+p.GRPCAddr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(bytesCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	tp.grpc = cc
	tp.httpURL = "http://" + p.HTTPAddr().String()
	tp.admin = "http://" + p.AdminAddr().String()
	if a := p.DebugAddr(); a != nil {
		tp.debug = "http://" + a.String()
	}
	tp.hc = &http.Client{Transport: &http.Transport{}}
	t.Cleanup(func() {
		cc.Close()
		tp.hc.CloseIdleConnections()
		tp.stop(t)
	})
	return tp
}

// stop drains the proxy and waits for Serve to return (idempotent).
func (tp *testProxy) stop(t testing.TB) error {
	t.Helper()
	tp.cancel()
	select {
	case err, ok := <-tp.done:
		if ok {
			close(tp.done)
		}
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("proxy did not stop")
		return nil
	}
}

func (tp *testProxy) exportGRPC(ctx context.Context, sig enrich.Signal, body []byte, opts ...grpc.CallOption) ([]byte, error) {
	var resp []byte
	err := tp.grpc.Invoke(ctx, signals[sig].method, &body, &resp, opts...)
	return resp, err
}

type httpResult struct {
	status int
	header http.Header
	body   []byte
}

func (tp *testProxy) exportHTTP(t testing.TB, ctx context.Context, sig enrich.Signal, contentType string, gz bool, body []byte, hdr map[string]string) httpResult {
	t.Helper()
	if gz {
		body = gzipBytes(t, body)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tp.httpURL+HTTPPath(sig), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := tp.hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", HTTPPath(sig), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return httpResult{status: resp.StatusCode, header: resp.Header, body: b}
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// SameTarget returns an upstream array that sends every signal to t (for
// http/protobuf, t.Endpoint is the base URL the signal paths are appended to).
func SameTarget(t Target) [numSignals]Target {
	var out [numSignals]Target
	for _, sig := range enrich.Signals {
		out[sig] = t
		if t.Protocol == ProtocolHTTPProtobuf {
			out[sig].Endpoint = JoinURLPath(t.Endpoint, HTTPPath(sig))
		}
	}
	return out
}
