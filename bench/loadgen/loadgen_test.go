package loadgen_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/podstamp/podstamp/bench/loadgen"
	"github.com/podstamp/podstamp/bench/sink"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startSink(t *testing.T) *sink.Sink {
	t.Helper()
	s, err := sink.Start(sink.Config{GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestExactRequestCountAcrossConns(t *testing.T) {
	s := startSink(t)
	for _, proto := range []string{"grpc", "http"} {
		s.Reset()
		addr := s.GRPCAddr()
		if proto == "http" {
			addr = s.HTTPAddr()
		}
		sum, err := loadgen.Run(context.Background(), loadgen.Config{
			Endpoint: addr, Protocol: proto, Requests: 17, Items: 3, Conns: 3,
			SourceIPs: []string{"127.0.0.51", "127.0.0.52", "127.0.0.53"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if sum.Sent != 17 || sum.Acked != 17 || sum.Items != 51 || sum.Conns != 3 {
			t.Fatalf("%s summary: %+v", proto, sum)
		}
		if sum.LatencyMs.P50 <= 0 || sum.LatencyMs.P99 < sum.LatencyMs.P50 || sum.LatencyMs.Max < sum.LatencyMs.P99 {
			t.Fatalf("%s latency: %+v", proto, sum.LatencyMs)
		}
		if st := s.Stats(); st.TotalItems != 51 {
			t.Fatalf("%s sink items: %d", proto, st.TotalItems)
		}
		srcs := map[string]bool{}
		for _, r := range s.Records() {
			srcs[r.Peer] = true
		}
		if len(srcs) != 3 {
			t.Fatalf("%s peers: %v", proto, srcs)
		}
	}
}

func TestPacedRateHoldsTheSchedule(t *testing.T) {
	s := startSink(t)
	sum, err := loadgen.Run(context.Background(), loadgen.Config{
		Endpoint: s.GRPCAddr(), Requests: 20, Items: 1, Conns: 2, Rate: 50,
	})
	if err != nil {
		t.Fatal(err)
	}
	// 20 requests at 50/s: the last is scheduled at 19/50 s = 380 ms.
	if sum.Acked != 20 || sum.DurationSeconds < 0.37 || sum.DurationSeconds > 2 {
		t.Fatalf("paced: %+v", sum)
	}
}

func TestDurationBound(t *testing.T) {
	s := startSink(t)
	sum, err := loadgen.Run(context.Background(), loadgen.Config{
		Endpoint: s.GRPCAddr(), Duration: 200 * time.Millisecond, Items: 1, Rate: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent < 10 || sum.Sent > 30 || sum.DurationSeconds < 0.19 {
		t.Fatalf("duration-bounded: %+v", sum)
	}
}

func TestFailuresAreCountedByCode(t *testing.T) {
	s := startSink(t)
	s.SetFail(true)
	sum, err := loadgen.Run(context.Background(), loadgen.Config{Endpoint: s.GRPCAddr(), Requests: 4, Items: 1})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 4 || sum.Acked != 0 || sum.FailedByCode["Unavailable"] != 4 || sum.Items != 0 {
		t.Fatalf("summary: %+v", sum)
	}
	// Nothing listening: every request fails, none is lost from the count.
	sum, err = loadgen.Run(context.Background(), loadgen.Config{Endpoint: "127.0.0.1:1", Requests: 2, Items: 1, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 2 || sum.Failed != 2 {
		t.Fatalf("unreachable: %+v", sum)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  loadgen.Config
		want string
	}{
		{loadgen.Config{Requests: 1}, "endpoint"},
		{loadgen.Config{Endpoint: "x:1"}, "requests or duration"},
		{loadgen.Config{Endpoint: "x:1", Requests: 1, Encoding: "json"}, "json"},
		{loadgen.Config{Endpoint: "x:1", Requests: 1, Signal: "profiles"}, "signal"},
		{loadgen.Config{Endpoint: "x:1", Requests: 1, SourceIPs: []string{"nope"}}, "source ip"},
		{loadgen.Config{Endpoint: "x:1", Requests: 1, Protocol: "udp"}, "protocol"},
	} {
		_, err := loadgen.Run(context.Background(), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%+v: %v (want %q)", tc.cfg, err, tc.want)
		}
	}
}

func TestPayloadSize(t *testing.T) {
	b, err := loadgen.BuildPayload(loadgen.PayloadSpec{Signal: "traces", Items: 512, Attrs: 8, Source: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	// 512 spans with 8 attributes each are roughly 100-200 KiB of protobuf.
	if len(b) < 64<<10 || len(b) > 512<<10 {
		t.Fatalf("payload is %d bytes", len(b))
	}
}

func TestMergeKeepsExactPercentiles(t *testing.T) {
	s := startSink(t)
	run := func(n int) loadgen.Summary {
		sum, err := loadgen.Run(context.Background(), loadgen.Config{Endpoint: s.GRPCAddr(), Requests: n, Items: 2, KeepLatencies: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(sum.Latencies) != n {
			t.Fatalf("kept %d latencies of %d", len(sum.Latencies), n)
		}
		return sum
	}
	a, b := run(5), run(7)
	m := loadgen.Merge(loadgen.Merge(loadgen.Summary{}, a), b)
	if m.Sent != 12 || m.Acked != 12 || m.Items != 24 || len(m.Latencies) != 12 {
		t.Fatalf("merged: %+v", m)
	}
	all := append(append([]time.Duration(nil), a.Latencies...), b.Latencies...)
	if want := loadgen.Percentiles(all); m.LatencyMs != want {
		t.Fatalf("percentiles %+v, want %+v", m.LatencyMs, want)
	}
	if m.DurationSeconds != a.DurationSeconds+b.DurationSeconds {
		t.Fatalf("duration %v", m.DurationSeconds)
	}
}
