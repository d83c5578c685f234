package sink_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/podstamp/podstamp/bench/internal/otlpwire"
	"github.com/podstamp/podstamp/bench/loadgen"
	"github.com/podstamp/podstamp/bench/sink"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, cfg sink.Config) *sink.Sink {
	t.Helper()
	if cfg.GRPCListen == "" {
		cfg.GRPCListen = "127.0.0.1:0"
	}
	if cfg.HTTPListen == "" {
		cfg.HTTPListen = "127.0.0.1:0"
	}
	s, err := sink.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func send(t *testing.T, cfg loadgen.Config) loadgen.Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sum, err := loadgen.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func TestGRPCRecordsPeersAttributesAndItems(t *testing.T) {
	s := start(t, sink.Config{})
	sum := send(t, loadgen.Config{
		Endpoint: s.GRPCAddr(), Requests: 10, Items: 7, Attrs: 3, Conns: 2,
		SourceIPs: []string{"127.0.0.11", "127.0.0.12"},
	})
	if sum.Acked != 10 || sum.Failed != 0 {
		t.Fatalf("summary: %+v", sum)
	}
	st := s.Stats()
	if st.Items["traces"] != 70 || st.TotalItems != 70 || st.Requests["traces"] != 10 || st.Resources["traces"] != 10 {
		t.Fatalf("stats: %+v", st)
	}
	recs := s.Records()
	if len(recs) != 10 {
		t.Fatalf("records: %d", len(recs))
	}
	peers := map[string]int{}
	for _, r := range recs {
		if r.Peer != r.Attributes[loadgen.SourceAttr] {
			t.Fatalf("peer %s but loadgen.source %s", r.Peer, r.Attributes[loadgen.SourceAttr])
		}
		if r.Items != 7 || r.Signal != "traces" || r.Transport != "grpc" || r.Attributes["service.name"] != "loadgen" {
			t.Fatalf("record: %+v", r)
		}
		peers[r.Peer]++
	}
	if peers["127.0.0.11"] == 0 || peers["127.0.0.12"] == 0 {
		t.Fatalf("peers: %v", peers)
	}
}

func TestHTTPEncodingsAndSignals(t *testing.T) {
	s := start(t, sink.Config{})
	for _, sig := range []string{"traces", "metrics", "logs"} {
		for _, enc := range []string{"proto", "json"} {
			for _, gz := range []bool{false, true} {
				sum := send(t, loadgen.Config{
					Endpoint: "http://" + s.HTTPAddr(), Protocol: "http", Encoding: enc, Gzip: gz,
					Signal: sig, Requests: 2, Items: 5, Attrs: 2, SourceIPs: []string{"127.0.0.21"},
				})
				if sum.Acked != 2 {
					t.Fatalf("%s %s gzip=%v: %+v", sig, enc, gz, sum)
				}
			}
		}
	}
	st := s.Stats()
	for _, sig := range []string{"traces", "metrics", "logs"} {
		if st.Items[sig] != 40 || st.Requests[sig] != 8 {
			t.Fatalf("%s: items %d requests %d", sig, st.Items[sig], st.Requests[sig])
		}
	}
	seen := map[string]bool{}
	for _, r := range s.Records() {
		seen[r.Transport] = true
		if r.Peer != "127.0.0.21" {
			t.Fatalf("peer %q", r.Peer)
		}
	}
	if !seen["http/json"] || !seen["http/protobuf"] {
		t.Fatalf("transports: %v", seen)
	}
}

func TestGRPCGzip(t *testing.T) {
	s := start(t, sink.Config{})
	sum := send(t, loadgen.Config{Endpoint: s.GRPCAddr(), Gzip: true, Signal: "logs", Requests: 3, Items: 4})
	if sum.Acked != 3 || s.Stats().Items["logs"] != 12 {
		t.Fatalf("summary %+v stats %+v", sum, s.Stats())
	}
}

func TestFailOnPurposeViaControl(t *testing.T) {
	s := start(t, sink.Config{ControlListen: "127.0.0.1:0"})
	post := func(path string) {
		resp, err := http.Post("http://"+s.ControlAddr()+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s", path, resp.Status)
		}
	}
	post("/fail?on=1")
	g := send(t, loadgen.Config{Endpoint: s.GRPCAddr(), Requests: 2, Items: 1})
	if g.Failed != 2 || g.FailedByCode["Unavailable"] != 2 {
		t.Fatalf("grpc: %+v", g)
	}
	h := send(t, loadgen.Config{Endpoint: s.HTTPAddr(), Protocol: "http", Requests: 3, Items: 1})
	if h.Failed != 3 || h.FailedByCode["http_503"] != 3 {
		t.Fatalf("http: %+v", h)
	}
	// The 503 carries a google.rpc.Status body and Retry-After.
	body, _ := loadgen.BuildPayload(loadgen.PayloadSpec{Signal: "traces", Items: 1})
	resp, err := http.Post("http://"+s.HTTPAddr()+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	var st spb.Status
	if err := proto.Unmarshal(buf.Bytes(), &st); err != nil || codes.Code(st.Code) != codes.Unavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("503 body: %v %v %q", err, &st, resp.Header.Get("Retry-After"))
	}
	if got := s.Stats(); got.Failed != 6 || got.TotalItems != 0 || !got.Failing {
		t.Fatalf("stats while failing: %+v", got)
	}
	post("/fail?on=1&grpc_code=8&http_status=429")
	g = send(t, loadgen.Config{Endpoint: s.GRPCAddr(), Requests: 1, Items: 1})
	h = send(t, loadgen.Config{Endpoint: s.HTTPAddr(), Protocol: "http", Requests: 1, Items: 1})
	if g.FailedByCode["ResourceExhausted"] != 1 || h.FailedByCode["http_429"] != 1 {
		t.Fatalf("custom codes: %+v %+v", g.FailedByCode, h.FailedByCode)
	}
	post("/fail?on=0")
	if ok := send(t, loadgen.Config{Endpoint: s.GRPCAddr(), Requests: 2, Items: 1}); ok.Acked != 2 {
		t.Fatalf("after recovery: %+v", ok)
	}
	post("/reset")
	if st := s.Stats(); st.TotalItems != 0 || st.Failed != 0 || len(s.Records()) != 0 {
		t.Fatalf("after reset: %+v", st)
	}
}

func TestMalformedIsRefused(t *testing.T) {
	s := start(t, sink.Config{})
	cc, err := grpc.NewClient("passthrough:///"+s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(otlpwire.Codec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	bad := &otlpwire.Frame{Bytes: []byte{0x0a, 0x10, 0x01}} // field 1, length 16, 1 byte present
	err = cc.Invoke(context.Background(), otlpwire.Method["traces"], bad, &otlpwire.Frame{})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("grpc malformed: %v", err)
	}
	resp, err := http.Post("http://"+s.HTTPAddr()+"/v1/logs", "application/json", strings.NewReader("{not json"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("http malformed: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	if st := s.Stats(); st.Malformed != 2 || st.TotalItems != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestIdentityCheck(t *testing.T) {
	s := start(t, sink.Config{})
	// Three sources: one stamped right, one stamped with another pod, one unstamped,
	// and one request with no source at all.
	send(t, loadgen.Config{Endpoint: s.GRPCAddr(), Requests: 4, Items: 2, SourceIPs: []string{"127.0.0.31"},
		ResourceAttrs: map[string]string{"k8s.pod.name": "a", "k8s.pod.uid": "uid-a", "k8s.namespace.name": "ns"}})
	send(t, loadgen.Config{Endpoint: s.GRPCAddr(), Requests: 2, Items: 2, SourceIPs: []string{"127.0.0.32"},
		ResourceAttrs: map[string]string{"k8s.pod.name": "a", "k8s.pod.uid": "uid-a"}})
	send(t, loadgen.Config{Endpoint: s.GRPCAddr(), Requests: 1, Items: 2, SourceIPs: []string{"127.0.0.33"}})
	send(t, loadgen.Config{Endpoint: s.GRPCAddr(), Requests: 1, Items: 2})
	exp := map[string]sink.Expected{
		"127.0.0.31": {Namespace: "ns", Name: "a", UID: "uid-a"},
		"127.0.0.32": {Namespace: "ns", Name: "b", UID: "uid-b"},
		"127.0.0.33": {Namespace: "ns", Name: "c", UID: "uid-c"},
	}
	rep := s.Identity(exp)
	want := sink.IdentityReport{Resources: 8, Items: 16, Matched: 4, MatchedItems: 8, Wrong: 2, Unstamped: 1, Unexpected: 1, Share: 4.0 / 7.0}
	if rep != want {
		t.Fatalf("report %+v, want %+v", rep, want)
	}
	// The same over the control endpoint.
	body, _ := json.Marshal(exp)
	resp, err := http.Post("http://"+s.ControlAddr()+"/identity", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var got sink.IdentityReport
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || got != want {
		t.Fatalf("POST /identity: %v %+v", err, got)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestPrintDebugExporterStyle(t *testing.T) {
	var out syncBuffer
	s := start(t, sink.Config{Print: &out})
	send(t, loadgen.Config{Endpoint: s.GRPCAddr(), Requests: 1, Items: 3, SourceIPs: []string{"127.0.0.41"},
		ResourceAttrs: map[string]string{"k8s.pod.name": "web-0"}})
	got := out.String()
	for _, want := range []string{
		"ResourceSpans #0\n", "Resource attributes:\n", "     -> service.name: Str(loadgen)\n",
		"     -> loadgen.source: Str(127.0.0.41)\n", "     -> k8s.pod.name: Str(web-0)\n", "Items: 3 spans\n",
		`"peer": "127.0.0.41"`,
	} {
		if !strings.Contains(got, want) {
			t.Fatalf("print output lacks %q:\n%s", want, got)
		}
	}
}

func TestWaitAndRecordBound(t *testing.T) {
	s := start(t, sink.Config{MaxRecords: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Wait(ctx, func(st sink.Stats) bool { return st.TotalItems >= 10 }) }()
	send(t, loadgen.Config{Endpoint: s.GRPCAddr(), Requests: 5, Items: 2})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.RecordsKept != 3 || st.RecordsDropped != 2 {
		t.Fatalf("bound: %+v", st)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := s.Wait(short, func(st sink.Stats) bool { return st.TotalItems > 1000 }); err == nil {
		t.Fatal("Wait returned nil for a condition that cannot hold")
	}
}
