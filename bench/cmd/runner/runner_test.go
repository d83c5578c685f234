package main

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"

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
	if err := yaml.Unmarshal([]byte(collectorConfig("127.0.0.1:1", "127.0.0.1:3", "127.0.0.1:2", "gzip", benchNode)), &cfg); err != nil {
		t.Fatal(err)
	}
	k8s := cfg["processors"].(map[string]any)["k8sattributes"].(map[string]any)
	md := k8s["extract"].(map[string]any)["metadata"].([]any)
	if len(md) != len(metadata) || k8s["filter"].(map[string]any)["node"] != benchNode {
		t.Fatalf("k8sattributes: %v", k8s)
	}
	if http := cfg["receivers"].(map[string]any)["otlp"].(map[string]any)["protocols"].(map[string]any)["http"].(map[string]any); http["endpoint"] != "127.0.0.1:3" {
		t.Fatalf("http receiver: %v", http)
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
	grpc := &ingressResult{Ing: ingresses[0], Targets: []*targetResult{
		{Key: "A", Paced: ph(0, 1, 2, 0)},
		{Key: "T", Saturated: ph(0.5, 0, 0, 0), Paced: ph(1.2, 1.1, 2.2, 0), PeakRSSKiB: 5 << 10, HasProcess: true},
		{Key: "B", Saturated: ph(0.9, 0, 0, 1), Paced: ph(1.5, 1.5, 3, 1), PeakRSSKiB: 19 << 10, HasProcess: true},
		{Key: "C", Saturated: ph(4.9, 0, 0, 1), Paced: ph(7.9, 4, 8, 1), PeakRSSKiB: 100 << 10, HasProcess: true},
	}}
	json := &ingressResult{Ing: ingresses[4], Targets: []*targetResult{
		{Key: "A", Paced: ph(0, 1, 2, 0)},
		{Key: "B", Saturated: ph(3, 0, 0, 1), Paced: ph(4, 1.5, 3, 1), PeakRSSKiB: 20 << 10, HasProcess: true},
		{Key: "C", Saturated: ph(10, 0, 0, 1), Paced: ph(13, 4, 8, 1), PeakRSSKiB: 100 << 10, HasProcess: true},
	}}
	r.matrix = []*ingressResult{grpc, json}
	got := map[string]bool{}
	for _, c := range r.checks() {
		got[c.Group+": "+c.Name] = c.Met
	}
	g, j := ingresses[0].Name+": ", ingresses[4].Name+": "
	want := map[string]bool{
		g + "CPU per item, saturated":                      true, // 0.9/4.9 = 0.18
		g + "CPU per item, paced":                          true, // 1.5/7.9 = 0.19
		g + "Peak RSS":                                     true, // 19/100
		g + "Added latency p50, paced":                     true, // 0.5/3
		g + "Added latency p99, paced":                     true, // 1/6
		g + "CPU per item vs the TCP floor, saturated":     true, // 0.9/0.5 = 1.8
		g + "CPU per item vs the TCP floor, paced":         true, // 1.5/1.2 = 1.25
		g + "Peak RSS (gRPC, close to the floor)":          true,
		g + "Peak RSS with 250 pods on the node (issue 7)": true,
		g + "Stamped with the right pod":                   true,
		g + "Lost items / failed requests":                 true,
		j + "CPU per item, saturated":                      true, // 3/10 = 0.3 ≤ 1/3 (JSON)
		j + "CPU per item, paced":                          true, // 4/13
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: met=%v, want %v", k, got[k], v)
		}
	}
	grpc.Targets[2].Saturated.CPUPerMillion = 1.2 // 1.2/4.9 = 0.245 > 0.2; 1.2/0.5 = 2.4 > 2
	grpc.Targets[2].Paced.Identity.Share = 0.99
	for _, c := range r.checks() {
		switch c.Group + ": " + c.Name {
		case g + "CPU per item, saturated", g + "Stamped with the right pod", g + "CPU per item vs the TCP floor, saturated":
			if c.Met || c.Miss == "" {
				t.Errorf("%s should be missed with a reason: %+v", c.Name, c)
			}
		}
	}
	if !strings.Contains(r.headline(), "MISSED") {
		t.Fatal("headline does not show the miss")
	}
	if rep := r.report(); !strings.Contains(rep, "## "+ingresses[4].Name) || !strings.Contains(rep, "**no**") {
		t.Fatal("report lacks the JSON table or the miss")
	}
}

func TestAPIServerMetrics(t *testing.T) {
	text := `# HELP apiserver_request_total x
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="cluster",subresource="",verb="LIST",version="v1"} 4
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="cluster",subresource="",verb="WATCH",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="status",verb="PATCH",version="v1"} 7
apiserver_request_total{code="200",component="",dry_run="",group="",resource="",scope="",subresource="/metrics",verb="GET",version=""} 9
apiserver_response_sizes_sum{component="apiserver",group="",resource="pods",scope="cluster",subresource="",verb="LIST",version="v1"} 4096
apiserver_watch_events_total{group="apps",resource="replicasets",version="v1"} 10
apiserver_watch_events_sizes_sum{group="apps",resource="replicasets",version="v1"} 20000
apiserver_longrunning_requests{component="apiserver",group="",resource="pods",scope="cluster",subresource="",verb="WATCH",version="v1"} 3
apiserver_longrunning_requests{component="apiserver",group="apps",resource="replicasets",scope="cluster",subresource="",verb="WATCH",version="v1"} 0
apiserver_selfrequest_total{group="",resource="pods",subresource="",verb="LIST"} 1
process_cpu_seconds_total 12.5
`
	a := parseAPIMetrics(text)
	if a.requests["LIST pods"] != 4 || a.requests["PATCH pods/status"] != 7 || len(a.requests) != 3 {
		t.Fatalf("requests %v", a.requests)
	}
	if a.respB["LIST pods"] != 4096 || a.watchEv["replicasets"] != 10 || a.watchB["replicasets"] != 20000 || a.open["WATCH pods"] != 3 {
		t.Fatalf("parsed %+v", a)
	}
	b := parseAPIMetrics(strings.NewReplacer(`verb="LIST",version="v1"} 4`, `verb="LIST",version="v1"} 54`,
		`verb="WATCH",version="v1"} 3`, `verb="WATCH",version="v1"} 53`,
		`resource="replicasets",version="v1"} 10`, `resource="replicasets",version="v1"} 60`,
		`verb="LIST"} 1`, `verb="LIST"} 3`).Replace(text))
	b.at = a.at.Add(10 * time.Second)
	d := cpDiff(a, b)
	// 50 lists, 2 of them the server's own; 50 watches opened (none ended, 50 more open).
	if d.Requests["LIST pods"] != 48 || d.Requests["WATCH pods"] != 50 || d.reads() != 98 || d.openWatches() != 53 {
		t.Fatalf("delta %+v", d)
	}
	d.Changes = map[string]int{"replicasets": 1}
	if f := fanOut(d, 1)["replicasets"]; f != 50 {
		t.Fatalf("fan-out %v", f)
	}
	net := fleetOnly(d, d)
	if net.reads() != 0 || net.serverBytes() != 0 {
		t.Fatalf("minus itself: %+v", net)
	}
	if human(3<<20) != "3.0 MiB" || human(-2048) != "-2.0 KiB" {
		t.Fatal(human(3<<20), human(-2048))
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
	if got := topFlat(top, 2); got != "`flate.(*compressor).findMatch` 30.61%, `flate.(*compressor).deflate` 21.61%" {
		t.Fatalf("topFlat %q", got)
	}
	if got := heapTotal("Showing nodes accounting for 7352.55kB, 100% of 7352.55kB total"); got != "7352.55kB" {
		t.Fatalf("heap total %q", got)
	}
}

// The paced checks give the ratio round by round, from the rounds that
// mergePhase accumulated, beside the ratio of the totals.
func TestRoundRatios(t *testing.T) {
	paced := func(cpu ...float64) phaseResult {
		var p phaseResult
		for _, c := range cpu {
			p = mergePhase(p, phaseResult{CPUSeconds: c, CPUPerMillion: c, Summary: loadgen.Summary{Items: 1e6}})
		}
		return p
	}
	b, c := paced(1.2, 1.5, 1.3, 1.4), paced(6, 6, 5, 7)
	lo, hi, ok := roundRatios(b.RoundCPU, c.RoundCPU)
	if !ok || math.Abs(lo-0.2) > 1e-9 || math.Abs(hi-0.26) > 1e-9 {
		t.Fatalf("round ratios %v–%v (%v), want 0.2–0.26", lo, hi, ok)
	}
	ch := withRounds(ratioCheck("g", "CPU per item, paced", b.CPUPerMillion, c.CPUPerMillion, 0.2, "CPU-s/M", "(C)"), b, c, "×")
	if ch.Met || !strings.HasSuffix(ch.Measured, "(rounds 0.20–0.26×)") {
		t.Fatalf("check %+v", ch)
	}
	if _, _, ok := roundRatios(nil, c.RoundCPU); ok {
		t.Fatal("a range from no rounds")
	}
	if _, _, ok := roundRatios([]float64{0, 1}, []float64{1, 0}); ok {
		t.Fatal("a range from rounds with nothing measured")
	}
}

// TestVariantChecks: with (S) in the run, its targets are judged on its own
// figures and the headline carries its column.
func TestVariantChecks(t *testing.T) {
	ph := func(cpu, p50, p99 float64) phaseResult {
		return phaseResult{CPUPerMillion: cpu, Summary: loadgen.Summary{LatencyMs: loadgen.Latency{P50: p50, P99: p99}},
			Identity: sink.IdentityReport{Share: 1}}
	}
	r := &runner{o: options{pods: 250, variantArgs: "--grpc-transport lean"}}
	r.matrix = []*ingressResult{{Ing: ingresses[0], Targets: []*targetResult{
		{Key: "A", Paced: ph(0, 1, 2)},
		{Key: "T", Saturated: ph(0.5, 0, 0), Paced: ph(1, 1.1, 2.2), PeakRSSKiB: 5 << 10, HasProcess: true},
		{Key: "B", Saturated: ph(1.2, 0, 0), Paced: ph(1.6, 1.5, 3), PeakRSSKiB: 19 << 10, HasProcess: true},
		{Key: "S", Saturated: ph(0.9, 0, 0), Paced: ph(1.4, 1.4, 3), PeakRSSKiB: 18 << 10, HasProcess: true},
		{Key: "C", Saturated: ph(4.9, 0, 0), Paced: ph(7.9, 4, 8), PeakRSSKiB: 100 << 10, HasProcess: true},
	}}}
	met := func(cs []check, name string) bool {
		for _, c := range cs {
			if c.Name == name {
				return c.Met
			}
		}
		t.Fatalf("no check %q", name)
		return false
	}
	// (B) 1.2/4.9 = 0.245 and 1.2/0.5 = 2.4: missed; (S) 0.9/4.9 = 0.18 and 1.8: met.
	if met(r.checks(), "CPU per item, saturated") || !met(r.variantChecks(), "CPU per item, saturated") {
		t.Error("saturated CPU: want (B) missed and (S) met")
	}
	if met(r.checks(), "CPU per item vs the TCP floor, saturated") || !met(r.variantChecks(), "CPU per item vs the TCP floor, saturated") {
		t.Error("TCP floor: want (B) missed and (S) met")
	}
	h := r.headlineMarkdown()
	for _, want := range []string{"variant (S)", "| 1.20 | 0.90 | 4.90 | **0.24** | 0.18 |", "**2.40x** | 1.80x |", "podstamp --grpc-transport lean"} {
		if !strings.Contains(h, want) {
			t.Errorf("headline lacks %q:\n%s", want, h)
		}
	}
	if rep := r.report(); !strings.Contains(rep, "The same targets for (S)") {
		t.Error("report lacks (S)'s targets")
	}
}
