package interop

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podstamp/podstamp/proxy"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/gzip" // the Go client's gzip
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	tracesMethod  = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
	metricsMethod = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
	logsMethod    = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
	grpcJSVersion = "1.14.7"
)

// tcase is one call every client makes.
type tcase struct {
	Name     string      `json:"name"`
	Method   string      `json:"method"`
	Body     []byte      `json:"body"` // base64 in JSON
	Gzip     bool        `json:"gzip"`
	Metadata [][2]string `json:"metadata"`
	wantCode codes.Code
	wantMsg  string // in the client's message
}

// result is what a client saw.
type result struct {
	Name     string `json:"name"`
	Code     int    `json:"code"`
	Message  string `json:"message"`
	Response []byte `json:"response"`
}

func cases(t *testing.T) []tcase {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "interop")
	ss := rs.ScopeSpans().AppendEmpty()
	for i := range 20 {
		s := ss.Spans().AppendEmpty()
		s.SetName("span-" + strconv.Itoa(i))
		s.SetTraceID([16]byte{1, byte(i)})
		s.SetSpanID([8]byte{2, byte(i)})
	}
	traces, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	md := pmetric.NewMetrics()
	m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("interop.count")
	m.SetEmptySum().DataPoints().AppendEmpty().SetIntValue(7)
	metrics, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	// About 1 MiB: more than any default flow-control window, so both
	// sides of each hop must honour the other's window updates.
	ld := plog.NewLogs()
	lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	for i := range 1024 {
		lrs.AppendEmpty().Body().SetStr(strings.Repeat(strconv.Itoa(i%10), 1000))
	}
	logs, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return []tcase{
		{Name: "traces", Method: tracesMethod, Body: traces, Metadata: [][2]string{{"authorization", "Bearer interop"}}},
		{Name: "metrics-gzip", Method: metricsMethod, Body: metrics, Gzip: true},
		{Name: "logs-1mib", Method: logsMethod, Body: logs},
		{Name: "logs-1mib-gzip", Method: logsMethod, Body: logs, Gzip: true},
		{Name: "malformed", Method: tracesMethod, Body: []byte{0x0a, 0xff}, wantCode: codes.InvalidArgument, wantMsg: "malformed"},
		{Name: "upstream-error", Method: tracesMethod, Body: traces, Metadata: [][2]string{{"x-fail", "on purpose"}}, wantCode: codes.Unavailable, wantMsg: "on purpose"},
	}
}

// check compares what a client saw and what the upstream received with
// what each case wants: the upstream gets every well-formed call's bytes
// and headers unchanged, in order, and the client its answer.
func check(t *testing.T, cs []tcase, res []result, up upstream) {
	t.Helper()
	if len(res) != len(cs) {
		t.Fatalf("%d results for %d cases: %+v", len(res), len(cs), res)
	}
	for i, c := range cs {
		r := res[i]
		if r.Code != int(c.wantCode) || !strings.Contains(r.Message, c.wantMsg) {
			t.Errorf("%s: code %d %q, want %d (%v) with %q", c.Name, r.Code, r.Message, c.wantCode, c.wantCode, c.wantMsg)
		}
		if c.wantCode == codes.InvalidArgument {
			continue // podstamp answers it: nothing goes upstream
		}
		got := up.next(t)
		if got.Method != c.Method || !bytes.Equal(got.Body, c.Body) {
			t.Errorf("%s: upstream got %s with %d bytes, want %s with the client's %d bytes", c.Name, got.Method, len(got.Body), c.Method, len(c.Body))
		}
		for _, kv := range c.Metadata {
			if got.Metadata[kv[0]] != kv[1] {
				t.Errorf("%s: upstream header %s = %q, want %q", c.Name, kv[0], got.Metadata[kv[0]], kv[1])
			}
		}
	}
}

// ---------------------------------------------------------------- podstamp

// startPodstamp runs the proxy on a real 127.0.0.1 listener, forwarding
// every signal to upstream over gRPC with transport.
func startPodstamp(t *testing.T, ingress, transport, upstream string) string {
	t.Helper()
	cfg := proxy.DefaultConfig()
	cfg.GRPCListen = "127.0.0.1:0"
	cfg.GRPCTransport = ingress
	cfg.ForwardHeaders = []string{"authorization", "x-fail"}
	cfg.KeepAliveDrain = 10 * time.Millisecond
	for i := range cfg.Upstream {
		cfg.Upstream[i] = proxy.Target{Endpoint: "http://" + upstream, Timeout: 20 * time.Second, Transport: transport}
	}
	p, err := proxy.New(cfg, proxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("podstamp: %v", err)
		}
	})
	return p.GRPCAddr().String()
}

// ---------------------------------------------------------------- upstreams

type call struct {
	Method   string            `json:"method"`
	Body     []byte            `json:"body"`
	Metadata map[string]string `json:"metadata"`
}

type upstream interface {
	addr() string
	next(t *testing.T) call
}

type recorded struct {
	address string
	calls   chan call
}

func (r *recorded) addr() string { return r.address }

func (r *recorded) next(t *testing.T) call {
	t.Helper()
	select {
	case c := <-r.calls:
		return c
	case <-time.After(20 * time.Second):
		t.Fatal("the upstream received nothing")
		return call{}
	}
}

// rawCodec moves *[]byte unchanged.
type rawCodec struct{}

var _ encoding.Codec = rawCodec{}

func (rawCodec) Name() string                  { return "proto" }
func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), b...)
	return nil
}

// goUpstream is grpc-go's server.
func goUpstream(t *testing.T) upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorded{address: ln.Addr().String(), calls: make(chan call, 64)}
	s := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(ss)
		var body []byte
		if err := ss.RecvMsg(&body); err != nil {
			return err
		}
		md, _ := metadata.FromIncomingContext(ss.Context())
		c := call{Method: method, Body: body, Metadata: map[string]string{}}
		for k, v := range md {
			c.Metadata[k] = v[0]
		}
		r.calls <- c
		if v := c.Metadata["x-fail"]; v != "" {
			return status.Error(codes.Unavailable, "go upstream: "+v)
		}
		empty := []byte{}
		return ss.SendMsg(&empty)
	}))
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return r
}

// scriptUpstream runs a server script that prints its port, then a JSON
// line per call.
func scriptUpstream(t *testing.T, cmd *exec.Cmd) upstream {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill() // the process this test started
			<-done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", cmd.Path, stderr.String())
		}
	})
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	if !sc.Scan() {
		t.Fatalf("%v printed no port: %v\n%s", cmd.Args, sc.Err(), stderr.String())
	}
	var first struct{ Port int }
	if err := json.Unmarshal(sc.Bytes(), &first); err != nil || first.Port == 0 {
		t.Fatalf("%v: first line %q: %v", cmd.Args, sc.Text(), err)
	}
	r := &recorded{address: "127.0.0.1:" + strconv.Itoa(first.Port), calls: make(chan call, 64)}
	go func() {
		for sc.Scan() {
			var c call
			if json.Unmarshal(sc.Bytes(), &c) == nil {
				r.calls <- c
			}
		}
	}()
	return r
}

// ---------------------------------------------------------------- clients

type client func(t *testing.T, addr string, cs []tcase) []result

func scriptClient(cmd func(addr string) *exec.Cmd) client {
	return func(t *testing.T, addr string, cs []tcase) []result {
		t.Helper()
		in, err := json.Marshal(cs)
		if err != nil {
			t.Fatal(err)
		}
		c := cmd(addr)
		c.Stdin = bytes.NewReader(in)
		var stderr bytes.Buffer
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil {
			t.Fatalf("%v: %v\n%s", c.Args, err, stderr.String())
		}
		var res []result
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("%v printed %q: %v\n%s", c.Args, out, err, stderr.String())
		}
		return res
	}
}

// goClient is grpc-go's client.
func goClient(t *testing.T, addr string, cs []tcase) []result {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var res []result
	for _, c := range cs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for _, kv := range c.Metadata {
			ctx = metadata.AppendToOutgoingContext(ctx, kv[0], kv[1])
		}
		var opts []grpc.CallOption
		if c.Gzip {
			opts = append(opts, grpc.UseCompressor("gzip"))
		}
		body, resp := c.Body, []byte(nil)
		err := cc.Invoke(ctx, c.Method, &body, &resp, opts...)
		cancel()
		st := status.Convert(err)
		res = append(res, result{Name: c.Name, Code: int(st.Code()), Message: st.Message(), Response: resp})
	}
	return res
}

// curlClient is curl's HTTP/2 (nghttp2) speaking gRPC by hand: the
// length-prefixed message as the body, the status from the trailers.
func curlClient(t *testing.T, addr string, cs []tcase) []result {
	t.Helper()
	dir := t.TempDir()
	var res []result
	for i, c := range cs {
		msg := c.Body
		flag := byte(0)
		if c.Gzip {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(msg)
			zw.Close()
			msg, flag = b.Bytes(), 1
		}
		framed := make([]byte, 5, 5+len(msg))
		framed[0] = flag
		binary.BigEndian.PutUint32(framed[1:], uint32(len(msg)))
		framed = append(framed, msg...)
		in := filepath.Join(dir, fmt.Sprintf("req-%d", i))
		hdrs := filepath.Join(dir, fmt.Sprintf("hdr-%d", i))
		if err := os.WriteFile(in, framed, 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"-sS", "--http2-prior-knowledge", "--max-time", "10", "-X", "POST",
			"-H", "content-type: application/grpc", "-H", "te: trailers",
			"--data-binary", "@" + in, "-D", hdrs, "-o", filepath.Join(dir, fmt.Sprintf("resp-%d", i))}
		if c.Gzip {
			args = append(args, "-H", "grpc-encoding: gzip")
		}
		for _, kv := range c.Metadata {
			args = append(args, "-H", kv[0]+": "+kv[1])
		}
		cmd := exec.Command("curl", append(args, "http://"+addr+c.Method)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		h, err := os.ReadFile(hdrs)
		if err != nil {
			t.Fatal(err)
		}
		r := result{Name: c.Name, Code: -1}
		for _, line := range strings.Split(string(h), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok {
				continue
			}
			switch strings.ToLower(k) {
			case "grpc-status":
				r.Code, _ = strconv.Atoi(strings.TrimSpace(v))
			case "grpc-message":
				r.Message = strings.TrimSpace(v)
			}
		}
		if r.Code == -1 {
			t.Fatalf("%s: no grpc-status in curl's headers and trailers:\n%s", c.Name, h)
		}
		res = append(res, r)
	}
	return res
}

// ---------------------------------------------------------------- tools

var (
	pythonOnce sync.Once
	python     string
	pythonErr  error
	nodeOnce   sync.Once
	nodePath   string
	nodeErr    error
)

// pythonGRPC is a python3 that imports grpc (Debian's python3-grpcio).
func pythonGRPC(t *testing.T) string {
	t.Helper()
	pythonOnce.Do(func() {
		for _, p := range []string{"/usr/bin/python3", "python3"} {
			if exec.Command(p, "-c", "import grpc").Run() == nil {
				python = p
				return
			}
		}
		pythonErr = fmt.Errorf("no python3 with grpcio: install Debian's python3-grpcio (.ci/run does)")
	})
	if pythonErr != nil {
		t.Fatal(pythonErr)
	}
	return python
}

// nodeGRPC returns a NODE_PATH holding @grpc/grpc-js, installed with npm
// into podstamp's cache on first use.
func nodeGRPC(t *testing.T) string {
	t.Helper()
	nodeOnce.Do(func() {
		if _, err := exec.LookPath("node"); err != nil {
			nodeErr = fmt.Errorf("no node: install Debian's nodejs and npm (.ci/run does)")
			return
		}
		cache, err := os.UserCacheDir()
		if err != nil {
			nodeErr = err
			return
		}
		dir := filepath.Join(cache, "podstamp", "interop-grpc-js-"+grpcJSVersion)
		nodePath = filepath.Join(dir, "node_modules")
		if _, err := os.Stat(filepath.Join(nodePath, "@grpc", "grpc-js", "package.json")); err == nil {
			return
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			nodeErr = err
			return
		}
		out, err := exec.Command("npm", "install", "--prefix", dir, "--no-save", "--no-audit", "--no-fund", "@grpc/grpc-js@"+grpcJSVersion).CombinedOutput()
		if err != nil {
			nodeErr = fmt.Errorf("npm install @grpc/grpc-js@%s: %v\n%s", grpcJSVersion, err, out)
		}
	})
	if nodeErr != nil {
		t.Fatal(nodeErr)
	}
	return nodePath
}

func nodeCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("node", args...)
	cmd.Env = append(os.Environ(), "NODE_PATH="+nodeGRPC(t))
	return cmd
}

// ---------------------------------------------------------------- tests

// TestClients: SDK-grade gRPC clients on HTTP/2 stacks other than
// grpc-go's (gRPC's C core through grpcio, Node's nghttp2 through
// @grpc/grpc-js, curl's nghttp2) send OTLP to podstamp on both of its
// gRPC servers; each call reaches the upstream unchanged, and each client
// reads podstamp's answers, statuses and messages.
func TestClients(t *testing.T) {
	py, cs := pythonGRPC(t), cases(t)
	nodeGRPC(t)
	if out, err := exec.Command("curl", "--version").Output(); err != nil || !strings.Contains(string(out), "nghttp2") {
		t.Fatalf("no curl with HTTP/2 (nghttp2): %v", err)
	}
	clients := []struct {
		name string
		run  client
	}{
		{"grpcio", scriptClient(func(addr string) *exec.Cmd { return exec.Command(py, "testdata/client.py", addr) })},
		{"grpc-js", scriptClient(func(addr string) *exec.Cmd { return nodeCmd(t, "testdata/client.js", addr) })},
		{"curl", curlClient},
		{"grpc-go", goClient},
	}
	for _, ingress := range []string{proxy.TransportGRPC, proxy.TransportLean} {
		for _, cl := range clients {
			t.Run(ingress+"/"+cl.name, func(t *testing.T) {
				up := goUpstream(t)
				addr := startPodstamp(t, ingress, ingress, up.addr())
				check(t, cs, cl.run(t, addr, cs), up)
			})
		}
	}
}

// TestUpstreams: podstamp's two gRPC clients forward to upstreams on
// other HTTP/2 stacks (grpcio's C core, @grpc/grpc-js on Node): every call
// arrives unchanged, and each upstream's answers and errors come back.
func TestUpstreams(t *testing.T) {
	py, cs := pythonGRPC(t), cases(t)
	ups := []struct {
		name  string
		start func(t *testing.T) upstream
	}{
		{"grpcio", func(t *testing.T) upstream { return scriptUpstream(t, exec.Command(py, "testdata/server.py")) }},
		{"grpc-js", func(t *testing.T) upstream {
			return scriptUpstream(t, nodeCmd(t, "testdata/server.js", tracesMethod, metricsMethod, logsMethod))
		}},
	}
	for _, u := range ups {
		for _, transport := range []string{proxy.TransportGRPC, proxy.TransportLean} {
			t.Run(u.name+"/"+transport, func(t *testing.T) {
				up := u.start(t)
				addr := startPodstamp(t, proxy.TransportGRPC, transport, up.addr())
				check(t, cs, goClient(t, addr, cs), up)
			})
		}
	}
}
