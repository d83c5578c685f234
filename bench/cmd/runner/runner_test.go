package main

import (
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"sigs.k8s.io/yaml"

	"github.com/podstamp/podstamp/bench/loadgen"
	"github.com/podstamp/podstamp/bench/sink"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestProcReaders(t *testing.T) {
	// Burn a little CPU so utime moves.
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i % 7
	}
	_ = x
	cpu, err := cpuSeconds(os.Getpid())
	if err != nil || cpu <= 0 {
		t.Fatalf("cpuSeconds: %v %v", cpu, err)
	}
	hwm, rss, err := memKiB(os.Getpid())
	if err != nil || rss <= 0 || hwm < rss {
		t.Fatalf("memKiB: hwm %d rss %d %v", hwm, rss, err)
	}
	if _, err := cpuSeconds(1 << 30); err == nil {
		t.Fatal("cpuSeconds of a missing pid: no error")
	}
}

func TestCollectorConfigIsYAMLWithTheSameAttributes(t *testing.T) {
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(collectorConfig("127.0.0.1:1", "127.0.0.1:2", "gzip")), &cfg); err != nil {
		t.Fatal(err)
	}
	k8s := cfg["processors"].(map[string]any)["k8sattributes"].(map[string]any)
	md := k8s["extract"].(map[string]any)["metadata"].([]any)
	if len(md) != len(metadata) || k8s["filter"].(map[string]any)["node"] != benchNode {
		t.Fatalf("k8sattributes: %v", k8s)
	}
	exp := cfg["exporters"].(map[string]any)["otlp_grpc"].(map[string]any)
	if exp["compression"] != "gzip" || exp["sending_queue"].(map[string]any)["enabled"] != false {
		t.Fatalf("exporter: %v", exp)
	}
}

func TestChecks(t *testing.T) {
	ph := func(cpu, p50, p99 float64, share float64) phaseResult {
		return phaseResult{CPUPerMillion: cpu, Summary: loadgen.Summary{LatencyMs: loadgen.Latency{P50: p50, P99: p99}},
			Identity: sink.IdentityReport{Share: share}}
	}
	r := &runner{o: options{pods: 250}}
	r.results = []*targetResult{
		{Key: "A", Paced: ph(0, 1, 2, 0)},
		{Key: "B", Saturated: ph(0.9, 0, 0, 1), Paced: ph(1.5, 1.5, 3, 1), Gzip: ph(2, 0, 0, 1), PeakRSSKiB: 20 << 10, HasProcess: true},
		{Key: "C", Saturated: ph(4.9, 0, 0, 1), Paced: ph(7.9, 4, 8, 1), Gzip: ph(9, 0, 0, 1), PeakRSSKiB: 100 << 10, HasProcess: true},
	}
	got := map[string]bool{}
	for _, c := range r.checks() {
		got[c.Name] = c.Met
	}
	want := map[string]bool{
		"CPU per million spans, saturated":     true, // 0.9/4.9 = 0.18
		"CPU per million spans, paced":         true, // 1.5/7.9 = 0.19
		"Peak RSS":                             true, // 20/100
		"Added latency p50 at paced rate":      true, // 0.5/3
		"Added latency p99 at paced rate":      true, // 1/6
		"gzip in + out: CPU per million spans": true, // 2/9
		"Peak RSS with 250 pods on the node":   true, // 20 MiB
		"Stamped with the right pod":           true, //
		"Lost items / failed requests":         true, //
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: met=%v, want %v", k, got[k], v)
		}
	}
	r.results[1].Saturated.CPUPerMillion = 1.2 // 1.2/4.9 = 0.245 > 0.2
	r.results[1].Paced.Identity.Share = 0.99
	for _, c := range r.checks() {
		switch c.Name {
		case "CPU per million spans, saturated", "Stamped with the right pod":
			if c.Met || c.Miss == "" {
				t.Errorf("%s should be missed with a reason: %+v", c.Name, c)
			}
		}
	}
	if !strings.Contains(r.headline(), "MISSED") {
		t.Fatal("headline does not show the miss")
	}
}

func TestProfileShare(t *testing.T) {
	top := `Showing nodes accounting for 6.29s, 87.12% of 7.22s total
      flat  flat%   sum%        cum   cum%
     2.21s 30.61% 30.61%      2.87s 39.75%  compress/flate.(*compressor).findMatch
     1.56s 21.61% 52.22%      5.42s 75.07%  compress/flate.(*compressor).deflate
     0.23s  3.19% 64.27%      0.23s  3.19%  runtime.memmove
`
	if got := profileShare(top, false, "compress/flate"); got < 52.21 || got > 52.23 {
		t.Fatalf("flat share %v", got)
	}
	if got := profileShare(top, true, "deflate"); got != 75.07 {
		t.Fatalf("cum share %v", got)
	}
	if got := heapTotal("Showing nodes accounting for 7352.55kB, 100% of 7352.55kB total"); got != "7352.55kB" {
		t.Fatalf("heap total %q", got)
	}
}
