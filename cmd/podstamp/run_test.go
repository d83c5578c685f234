package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// traceSink is an OTLP/gRPC trace receiver built from pdata.
type traceSink struct {
	ptraceotlp.UnimplementedGRPCServer
	got chan ptrace.Traces
	md  chan metadata.MD // the request's metadata, when not nil
}

func (s *traceSink) Export(ctx context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	td := ptrace.NewTraces()
	req.Traces().CopyTo(td)
	if s.md != nil {
		md, _ := metadata.FromIncomingContext(ctx)
		s.md <- md
	}
	s.got <- td
	return ptraceotlp.NewExportResponse(), nil
}

// logLines feeds each JSON log line to a channel.
func logLines(t *testing.T) (io.Writer, <-chan map[string]any) {
	pr, pw := io.Pipe()
	ch := make(chan map[string]any, 100)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				ch <- m
			}
		}
	}()
	t.Cleanup(func() { pw.Close() })
	return pw, ch
}

// TestRun: the binary's whole life with a real upstream: start from flags,
// report its addresses, forward an OTLP/gRPC export (a client's tenant
// header is not forwarded by default), be ready, drain on cancellation and
// return nil.
func TestRun(t *testing.T) {
	sink := &traceSink{got: make(chan ptrace.Traces, 1), md: make(chan metadata.MD, 1)}
	srv := grpc.NewServer()
	ptraceotlp.RegisterGRPCServer(srv, sink)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Stop()

	out, lines := logLines(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Read before run starts: it sets GOMAXPROCS while it runs.
	before := runtime.GOMAXPROCS(0)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{
			"--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
			"--debug-listen", "127.0.0.1:0",
			"--upstream", "http://" + ln.Addr().String(), "--log-format", "json",
		}, env(nil), out)
	}()
	addrs := map[string]string{}
	passThrough := false
	var procs, gcp, server, upstream any
	for len(addrs) < 4 {
		select {
		case m := <-lines:
			msg, _ := m["msg"].(string)
			if msg == "starting" {
				procs, gcp, server, upstream = m["procs"], m["gc_percent"], m["grpc_server"], m["upstream"]
			}
			if strings.HasPrefix(msg, "serving ") {
				addrs[msg] = m["addr"].(string)
			}
			if strings.Contains(msg, "passing data through") {
				passThrough = true
			}
		case err := <-done:
			t.Fatalf("run returned early: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("podstamp did not report its listeners")
		}
	}
	if !passThrough {
		t.Error("pass-through mode was not logged")
	}
	if procs != float64(1) {
		t.Errorf("started with procs %v, want the default of 1", procs)
	}
	if gcp != float64(DefaultConfig().GCPercent) || gcp != float64(40) {
		t.Errorf("started with gc_percent %v, want the default of 40", gcp)
	}
	// The default transports are podstamp's own HTTP/2 on both sides, and
	// the log says which client each upstream got.
	if up, _ := upstream.(string); server != "lean" || !strings.HasSuffix(up, "(lean client)") {
		t.Errorf("started with grpc_server %v, upstream %v; want lean and the lean client", server, upstream)
	}

	cc, err := grpc.NewClient("passthrough:///"+addrs["serving OTLP/gRPC"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	td := ptrace.NewTraces()
	td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("checkout")
	mctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer t0k", "x-scope-orgid", "tenant-picked-by-client")
	if _, err := ptraceotlp.NewGRPCClient(cc).Export(mctx, ptraceotlp.NewExportRequestFromTraces(td)); err != nil {
		t.Fatal(err)
	}
	md := <-sink.md
	if strings.Join(md.Get("authorization"), ",") != "Bearer t0k" || len(md.Get("x-scope-orgid")) != 0 {
		t.Errorf("upstream metadata authorization=%q x-scope-orgid=%q, want only authorization forwarded by default",
			md.Get("authorization"), md.Get("x-scope-orgid"))
	}
	select {
	case got := <-sink.got:
		if got.SpanCount() != 1 || got.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Name() != "checkout" {
			t.Error("upstream got a different span")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("upstream got nothing")
	}

	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://" + addrs["serving admin"] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/readyz %d in pass-through mode", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancellation: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancellation")
	}
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS %d after run, want %d restored", got, before)
	}
}

// TestRunPassthroughUpstream: an --upstream of another registered gRPC
// resolver (passthrough:///host:port, plaintext with --upstream-insecure)
// passes the command's checks, and podstamp starts and forwards to it.
func TestRunPassthroughUpstream(t *testing.T) {
	sink := &traceSink{got: make(chan ptrace.Traces, 1)}
	srv := grpc.NewServer()
	ptraceotlp.RegisterGRPCServer(srv, sink)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Stop()

	out, lines := logLines(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{
			"--grpc-listen", "127.0.0.1:0", "--http-listen", "", "--admin-listen", "", "--debug-listen", "",
			"--upstream", "passthrough:///" + ln.Addr().String(), "--upstream-insecure", "--log-format", "json",
		}, env(nil), out)
	}()
	var grpcAddr string
	for grpcAddr == "" {
		select {
		case m := <-lines:
			if m["msg"] == "serving OTLP/gRPC" {
				grpcAddr = m["addr"].(string)
			}
		case err := <-done:
			t.Fatalf("run returned early: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("podstamp did not report its gRPC listener")
		}
	}
	cc, err := grpc.NewClient("passthrough:///"+grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	td := ptrace.NewTraces()
	td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("passthrough")
	if _, err := ptraceotlp.NewGRPCClient(cc).Export(ctx, ptraceotlp.NewExportRequestFromTraces(td)); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-sink.got:
		if got.SpanCount() != 1 || got.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Name() != "passthrough" {
			t.Error("upstream got a different span")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("upstream got nothing")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run after cancellation: %v", err)
	}
}

// TestRunInvalidConfig: invalid configuration fails at start, one line.
func TestRunInvalidConfig(t *testing.T) {
	for _, args := range [][]string{
		{"--upstream", "http://127.0.0.1:4317", "--log-format", "xml"},
		{"--upstream", "ftp://x"},
		{"--upstream", "http://127.0.0.1:4317", "--node-name", "n1", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", ""},
		{"--upstream", "http://127.0.0.1:4317", "--allow-cidr", "everyone"},
		// Identity headers without a pod cache could never be set.
		{"--upstream", "http://127.0.0.1:4317", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "",
			"--debug-listen", "", "--upstream-header-from-identity", "x-scope-orgid=k8s.namespace.name"},
	} {
		err := run(t.Context(), args, env(nil), io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), "invalid configuration: --") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: %v, want one line naming the flag", args, err)
		}
	}
}

// TestRunWithPodCache: with --node-name and --kubeconfig, podstamp wires the
// pod cache: /readyz reports it (not ready while the API server cannot be
// reached), /livez checks it, /debug/pods is served on the debug listener
// and not on the admin listener, and cancellation still drains to nil.
func TestRunWithPodCache(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, lines := logLines(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{
			"--grpc-listen", "127.0.0.1:0", "--http-listen", "", "--admin-listen", "127.0.0.1:0",
			"--debug-listen", "127.0.0.1:0",
			"--upstream", "http://127.0.0.1:1", "--log-format", "json",
			"--node-name", "node-a", "--kubeconfig", kubeconfig, "--node-ip", "10.0.0.1",
		}, env(nil), out)
	}()
	admin, debug := "", ""
	for admin == "" || debug == "" {
		select {
		case m := <-lines:
			if m["msg"] == "serving admin" {
				admin = m["addr"].(string)
			}
			if m["msg"] == "serving debug" {
				debug = m["addr"].(string)
			}
			if msg, _ := m["msg"].(string); strings.Contains(msg, "passing data through") {
				t.Error("pass-through mode despite --node-name and --kubeconfig")
			}
		case err := <-done:
			t.Fatalf("run returned early: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("podstamp did not report its admin and debug listeners")
		}
	}
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	getFrom := func(addr, path string) (int, string) {
		resp, err := hc.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	get := func(path string) (int, string) { return getFrom(admin, path) }
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "pod-cache") {
		t.Errorf("/readyz = %d %q, want 503 naming the pod cache", code, body)
	}
	if code, body := get("/livez"); code != 200 || !strings.Contains(body, "[+] pod-cache") {
		t.Errorf("/livez = %d %q, want 200 with the pod cache checked", code, body)
	}
	if code, _ := get("/debug/pods"); code != http.StatusNotFound {
		t.Errorf("/debug/pods on the admin listener = %d, want 404", code)
	}
	if code, _ := getFrom(debug, "/debug/pods"); code != 200 {
		t.Errorf("/debug/pods on the debug listener = %d", code)
	}
	if _, body := get("/metrics"); !strings.Contains(body, "\npodstamp_identity_conflicts_total 0\n") {
		t.Error("/metrics has no podstamp_identity_conflicts_total")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancellation: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancellation")
	}
}
