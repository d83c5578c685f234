package main

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// triedMD is what was tried against the CPU targets that remain missed,
// with the A/B figures: history, not this run's measurement.
//
//go:embed tried.md
var triedMD string

// check is one target of the issues the benchmark answers (7 and 16).
type check struct {
	Group    string // the ingress or part of the run it belongs to
	Name     string
	Required string
	Measured string
	Met      bool
	Known    bool // false: could not be evaluated (a side missing)
	Miss     string
}

// ingress returns the results of the ingress with key k, or nil.
func (r *runner) ingress(k string) *ingressResult {
	for _, ir := range r.matrix {
		if ir.Ing.Key == k {
			return ir
		}
	}
	return nil
}

// cpuLimit is the CPU ratio to the Collector for an ingress:
// 1/5, or 1/3 with gzip or JSON (codec work both must do).
func cpuLimit(ing ingress) float64 {
	if ing.Gzip || ing.Encoding == "json" {
		return 1.0 / 3
	}
	return 0.2
}

func ratioCheck(group, name string, b, c, limit float64, unit, of string) check {
	ch := check{Group: group, Name: name, Required: fmt.Sprintf("≤ %s of %s", frac(limit), of)}
	if b > 0 && c > 0 {
		q := b / c
		ch.Known = true
		ch.Met = q <= limit
		ch.Measured = fmt.Sprintf("%.3g vs %.3g %s = %.2f×", b, c, unit, q)
		if !ch.Met {
			ch.Miss = fmt.Sprintf("%.2f× the allowed ratio (needs %.3g %s or less, %.0f%% less)", q/limit, c*limit, unit, 100*(1-c*limit/b))
		}
	} else {
		ch.Measured = "n/a"
	}
	return ch
}

// latencyCheck is ratioCheck for added latencies, which can be at or
// below zero (within the noise of the baseline): podstamp adding nothing
// measurable meets the target; the Collector adding nothing measurable
// leaves it unknown.
func latencyCheck(group, name string, b, c float64) check {
	switch {
	case c <= 0:
		return check{Group: group, Name: name, Required: "≤ 1/3 of (C)",
			Measured: fmt.Sprintf("%+.3g vs %+.3g ms: (C) adds nothing measurable over (A)", b, c)}
	case b <= 0:
		return check{Group: group, Name: name, Required: "≤ 1/3 of (C)", Known: true, Met: true,
			Measured: fmt.Sprintf("%+.3g vs %+.3g ms: podstamp adds nothing measurable over (A)", b, c)}
	}
	return ratioCheck(group, name, b, c, 1.0/3, "ms", "(C)")
}

// withRounds adds to a paced check the range of the ratio round by round
// (b's round i against o's round i), which shows how much of a miss or a
// pass the machine's noise could account for.
func withRounds(ch check, b, o phaseResult, sign string) check {
	if lo, hi, ok := roundRatios(b.RoundCPU, o.RoundCPU); ok && ch.Known {
		ch.Measured += fmt.Sprintf(" (rounds %.2f–%.2f%s)", lo, hi, sign)
	}
	return ch
}

// roundRatios is the smallest and largest b[i]/o[i] over rounds both
// measured.
func roundRatios(b, o []float64) (lo, hi float64, ok bool) {
	for i := range min(len(b), len(o)) {
		if b[i] <= 0 || o[i] <= 0 {
			continue
		}
		q := b[i] / o[i]
		if !ok || q < lo {
			lo = q
		}
		if !ok || q > hi {
			hi = q
		}
		ok = true
	}
	return lo, hi, ok
}

// multipleCheck: b must be at most limit times the floor f.
func multipleCheck(group, name string, b, f, limit float64, unit string) check {
	ch := check{Group: group, Name: name, Required: fmt.Sprintf("≤ %gx (T)", limit)}
	if b > 0 && f > 0 {
		q := b / f
		ch.Known, ch.Met = true, q <= limit
		ch.Measured = fmt.Sprintf("%.3g vs %.3g %s = %.2fx", b, f, unit, q)
		if !ch.Met {
			ch.Miss = fmt.Sprintf("needs %.3g %s or less (%.0f%% less)", f*limit, unit, 100*(1-f*limit/b))
		}
	} else {
		ch.Measured = "n/a"
	}
	return ch
}

func added(t, a *targetResult) (p50, p99 float64) {
	return t.Paced.Summary.LatencyMs.P50 - a.Paced.Summary.LatencyMs.P50, t.Paced.Summary.LatencyMs.P99 - a.Paced.Summary.LatencyMs.P99
}

func (r *runner) ingressChecks(ir *ingressResult) []check { return r.ingressChecksOf(ir, "B") }

// ingressChecksOf is ingressChecks for podstamp set-up key: "B", or "S" (the
// variant, when it ran).
func (r *runner) ingressChecksOf(ir *ingressResult, key string) []check {
	A, B, C, T := ir.result("A"), ir.result(key), ir.result("C"), ir.result("T")
	g := ir.Ing.Name
	var cs []check
	if B == nil {
		return nil
	}
	if C != nil {
		lim := cpuLimit(ir.Ing)
		cs = append(cs, ratioCheck(g, "CPU per item, saturated", B.Saturated.CPUPerMillion, C.Saturated.CPUPerMillion, lim, "CPU-s/M", "(C)"))
		cs = append(cs, withRounds(ratioCheck(g, "CPU per item, paced", B.Paced.CPUPerMillion, C.Paced.CPUPerMillion, lim, "CPU-s/M", "(C)"), B.Paced, C.Paced, "×"))
		if A != nil {
			b50, b99 := added(B, A)
			c50, c99 := added(C, A)
			cs = append(cs, latencyCheck(g, "Added latency p50, paced", b50, c50))
			cs = append(cs, latencyCheck(g, "Added latency p99, paced", b99, c99))
		}
		cs = append(cs, ratioCheck(g, "Peak RSS", mib(B.PeakRSSKiB), mib(C.PeakRSSKiB), 0.25, "MiB", "(C)"))
	}
	if ir.Ing.Key == "grpc" {
		if T != nil {
			cs = append(cs, multipleCheck(g, "CPU per item vs the TCP floor, saturated", B.Saturated.CPUPerMillion, T.Saturated.CPUPerMillion, 2, "CPU-s/M"))
			cs = append(cs, withRounds(multipleCheck(g, "CPU per item vs the TCP floor, paced", B.Paced.CPUPerMillion, T.Paced.CPUPerMillion, 1.5, "CPU-s/M"), B.Paced, T.Paced, "x"))
		}
		hwm := mib(B.PeakRSSKiB)
		cs = append(cs, check{Group: g, Name: "Peak RSS (gRPC, close to the floor)", Required: "< 20 MiB",
			Measured: fmt.Sprintf("%.1f MiB", hwm), Known: true, Met: hwm < 20, Miss: ifs(hwm >= 20, fmt.Sprintf("%.1f MiB over", hwm-20))})
		cs = append(cs, check{Group: g, Name: fmt.Sprintf("Peak RSS with %d pods on the node (issue 7)", r.o.pods), Required: "< 30 MiB",
			Measured: fmt.Sprintf("%.1f MiB", hwm), Known: true, Met: hwm < 30, Miss: ifs(hwm >= 30, fmt.Sprintf("%.1f MiB over", hwm-30))})
	}
	share := math.Min(B.Saturated.Identity.Share, B.Paced.Identity.Share)
	cs = append(cs, check{Group: g, Name: "Stamped with the right pod", Required: "100%",
		Measured: fmt.Sprintf("%.4f%% (%d wrong, %d unstamped)", 100*share,
			B.Saturated.Identity.Wrong+B.Paced.Identity.Wrong, B.Saturated.Identity.Unstamped+B.Paced.Identity.Unstamped),
		Known: true, Met: share == 1, Miss: ifs(share < 1, fmt.Sprintf("%.4f%% short", 100*(1-share)))})
	lost := B.Saturated.Lost + B.Paced.Lost
	failed := B.Saturated.Summary.Failed + B.Paced.Summary.Failed
	cs = append(cs, check{Group: g, Name: "Lost items / failed requests", Required: "0", Measured: fmt.Sprintf("%d lost, %d failed", lost, failed),
		Known: true, Met: lost == 0 && failed == 0, Miss: ifs(lost+failed > 0, fmt.Sprintf("%d items lost, %d requests failed", lost, failed))})
	return cs
}

func (r *runner) checks() []check {
	var cs []check
	for _, ir := range r.matrix {
		cs = append(cs, r.ingressChecks(ir)...)
	}
	cs = append(cs, r.cpChecks()...)
	if s := r.scaleR; s != nil && s.BaseHWM > 0 && s.AfterHWM > 0 {
		g := float64(s.AfterHWM-s.BaseHWM) / float64(s.BaseHWM)
		cs = append(cs, check{Group: "scale run", Name: fmt.Sprintf("Peak RSS with %d more pods elsewhere", s.OtherPods), Required: "within 5% of the node-only figure",
			Measured: fmt.Sprintf("%.1f → %.1f MiB (%+.1f%%)", mib(s.BaseHWM), mib(s.AfterHWM), 100*g), Known: true, Met: math.Abs(g) <= 0.05,
			Miss: ifs(math.Abs(g) > 0.05, fmt.Sprintf("%+.1f%% (%.1f points over)", 100*g, 100*math.Abs(g)-5))})
	}
	return cs
}

func ifs(c bool, s string) string {
	if c {
		return s
	}
	return ""
}

func frac(v float64) string {
	switch {
	case math.Abs(v-0.2) < 1e-9:
		return "1/5"
	case math.Abs(v-0.25) < 1e-9:
		return "1/4"
	case math.Abs(v-1.0/3) < 1e-9:
		return "1/3"
	}
	return fmt.Sprintf("%.2f", v)
}

// markOf is a check's mark in the runner's summary.
func markOf(c check) string {
	switch {
	case !c.Known:
		return "N/A   "
	case !c.Met:
		return "MISSED"
	}
	return "MET   "
}

func (r *runner) headline() string {
	var b strings.Builder
	b.WriteString("\nTargets:\n")
	for _, c := range r.checks() {
		fmt.Fprintf(&b, "  %s %-32s %-45s %-22s %s %s\n", markOf(c), c.Group, c.Name, c.Required, c.Measured, c.Miss)
	}
	if vs := r.variantChecks(); len(vs) > 0 {
		fmt.Fprintf(&b, "\nTargets for (S), %s:\n", r.targetName("S"))
		for _, c := range vs {
			fmt.Fprintf(&b, "  %s %-32s %-45s %-22s %s %s\n", markOf(c), c.Group, c.Name, c.Required, c.Measured, c.Miss)
		}
	}
	return b.String()
}

func (r *runner) report() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	args := strings.Join(os.Args[1:], " ")
	w("# podstamp benchmark results\n\n")
	w("Written by `make bench` (`cd bench && go run ./cmd/runner %s`) on %s; the run took %s.\n\n",
		args, r.started.UTC().Format("2006-01-02 15:04 UTC"), r.finished.Sub(r.started).Round(time.Second))
	w("Issues 7 and 16 ask podstamp to beat a Collector running `k8sattributes` by wide margins on every OTLP ingress the\n")
	w("SDKs send, to come close to a forwarder that does nothing (a TCP relay), and to ask little of the API server of a\n")
	w("large cluster. All set-ups below ran in this one run, on this machine, with the same load generator (bench/loadgen)\n")
	w("and sink (bench/sink); load generator and sink run inside the runner process, and only the forwarder's own process\n")
	w("is measured (CPU: the run time of its threads from /proc/<pid>/task/*/schedstat; memory: VmHWM from\n")
	w("/proc/<pid>/status).\n\n")

	w("## Machine\n\n")
	w("| | |\n|---|---|\n")
	w("| CPU | %s |\n| cores | %d |\n| memory | %s |\n| kernel | %s |\n| Go | %s |\n| load average (1/5/15 min) at start / end | %s / %s |\n\n",
		cpuModel(), runtime.NumCPU(), memTotal(), kernel(), runtime.Version(), r.loadStart, r.loadEnd)
	w("Other work on the machine (a load average above the core count) shows up in every figure, most in the tail latencies.\n\n")

	w("## Versions\n\n")
	w("| component | version |\n|---|---|\n")
	w("| podstamp | %s (built from ./cmd/podstamp) |\n", gitDescribe(r.root))
	for _, m := range []string{"google.golang.org/grpc", "go.opentelemetry.io/collector/pdata"} {
		w("| %s (podstamp) | %s |\n", m, modVersion(filepath.Join(r.root, "go.mod"), m))
	}
	cm := filepath.Join(r.root, "bench", "collector", "go.mod")
	for _, m := range []string{"go.opentelemetry.io/collector/otelcol", "go.opentelemetry.io/collector/receiver/otlpreceiver",
		"go.opentelemetry.io/collector/exporter/otlpexporter", "github.com/open-telemetry/opentelemetry-collector-contrib/processor/k8sattributesprocessor",
		"go.opentelemetry.io/collector/pdata", "google.golang.org/grpc"} {
		w("| %s (Collector) | %s |\n", m, modVersion(cm, m))
	}
	w("| kube-apiserver | %s |\n| etcd | %s |\n\n", strings.TrimPrefix(filepath.Base(r.apiserverBin), "kube-apiserver-"), etcdVersion())

	w("## Headline\n\n%s\n", r.headlineMarkdown())
	r.reportSetup(w)
	r.reportTargets(w)
	for _, ir := range r.matrix {
		r.reportIngress(w, ir)
	}
	r.reportMemory(w)
	r.reportControlPlane(w)

	if s := r.scaleR; s != nil {
		w("\n## Scale run\n\n")
		w("A fresh podstamp with the %d pods of its node; paced OTLP/gRPC load; then %d pods (2 containers each) were created on %d\n", s.BasePods, s.OtherPods, s.OtherNodes)
		w("other nodes in %.1f s (concurrent creates); paced load again. (The control-plane run's pods on other nodes exist already.)\n\n", s.CreateSeconds)
		w("| | VmHWM MiB | VmRSS MiB |\n|---|---|---|\n")
		w("| %d pods on the node | %.1f | %.1f |\n", s.BasePods, mib(s.BaseHWM), mib(s.BaseRSS))
		w("| + %d pods elsewhere | %.1f | %.1f |\n", s.OtherPods, mib(s.AfterHWM), mib(s.AfterRSS))
		w("\nStamped right during the scale run: %.2f%%.\n", 100*s.Identity.Share)
	}

	missed := false
	for _, c := range r.checks() {
		if !c.Met && c.Known {
			missed = true
		}
	}
	if notes := r.analysis(); missed && len(notes) > 0 {
		w("\n## Why the missed targets are missed\n\n")
		for _, n := range notes {
			w("- %s\n", n)
		}
	}
	r.reportProfiles(w, missed)
	if missed {
		w("\n%s", triedMD)
	}

	w("\n## Command lines\n\n")
	w("`<sink>` is the in-process sink's gRPC address (`<sink-http>` its OTLP/HTTP address); `$WORK` the run's temporary\n")
	w("directory; `$CLUSTER` the API server's directory (admin kubeconfig). Per ingress, the set-ups started for it:\n\n```\n")
	repl := strings.NewReplacer()
	if r.sink != nil {
		repl = strings.NewReplacer(r.sink.GRPCAddr(), "<sink>", r.sink.HTTPAddr(), "<sink-http>")
	}
	for _, ir := range r.matrix {
		for _, t := range ir.Targets {
			if t.Command != "" {
				w("[%s] (%s) %s\n", ir.Ing.Key, t.Key, repl.Replace(t.Command))
			}
		}
	}
	if r.scaleR != nil && r.scaleR.Command != "" {
		w("(scale) %s\n", repl.Replace(r.scaleR.Command))
	}
	if r.cp != nil && r.cp.PodstampCmd != "" {
		w("(control plane, node 0) %s\n", repl.Replace(r.cp.PodstampCmd))
	}
	if r.cp != nil && r.cp.PodstampKubeletCmd != "" {
		w("(control plane, node 0, pod source kubelet) %s\n", repl.Replace(r.cp.PodstampKubeletCmd))
	}
	w("```\n\nThe (C) configuration (gzip ingresses: `compression: gzip` on the exporter; the control-plane fleet: `filter.node`\n")
	w("is each agent's node):\n\n```yaml\n%s```\n", collectorConfig("127.0.0.1:<port>", "127.0.0.1:<port>", "<sink>", "none", benchNode))

	w("\n## Load generator summaries\n\n<details><summary>JSON per ingress, set-up and phase</summary>\n\n```json\n")
	for _, ir := range r.matrix {
		for _, t := range ir.Targets {
			for _, ph := range []struct {
				name string
				p    phaseResult
			}{{"saturated", t.Saturated}, {"paced", t.Paced}} {
				j, _ := json.Marshal(map[string]any{"ingress": ir.Ing.Key, "target": t.Key, "phase": ph.name, "loadgen": ph.p.Summary,
					"forwarder_cpu_s": round3(ph.p.CPUSeconds), "sink_items": ph.p.SinkItems, "identity": ph.p.Identity})
				w("%s\n", j)
			}
		}
	}
	w("```\n\n</details>\n")
	return b.String()
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func (r *runner) reportSetup(w func(string, ...any)) {
	w("## Set-up\n\n")
	w("- A real kube-apiserver + etcd (e2e/cluster). Node `%s` carries %d pods (25 Deployments/ReplicaSets, addresses\n", benchNode, r.o.pods)
	w("  127.0.1.x in status.podIPs, one annotation `resource.opentelemetry.io/team`).\n")
	w("- Load: %d items per request (spans, metric data points or log records), %d attributes per item, %d connections, each\n", r.o.items, r.o.attrs, r.o.conns)
	w("  bound to the address of a different pod, so the forwarder must tell %d pods apart by their connection.\n", r.o.conns)
	w("- The matrix: per ingress (%s), fresh instances of every set-up\n", ingressList(r.matrix))
	w("  (so each ingress has its own peak RSS). Per set-up: warm-up %s, then **saturated** closed loop for %s. Then **paced**\n", r.o.warmup, r.o.saturated)
	w("  at %g requests/s for %s per set-up, in %d interleaved rounds (A T R B C A T R B C ...), so that every set-up sees\n", r.o.rate, r.o.paced, r.o.pacedRounds)
	w("  the same minutes of the machine; latency percentiles are over all requests of the rounds, and the targets table gives\n")
	w("  each paced CPU ratio round by round too (its range shows what the machine's noise alone moves). Peak RSS is read\n")
	w("  after these phases. The phases are short so that the whole matrix fits in one run on 2 cores; the figures of one\n")
	w("  cell move by about 5-10%% between runs.\n")
	w("- gzip ingresses compress both legs: client → forwarder, and forwarder → sink for (R) gRPC, (B) and (C). (T) and the\n")
	w("  HTTP (R) pass the client's compressed bytes through. (B) and (C) forward every ingress to the sink over OTLP/gRPC.\n")
	w("- The set-ups:\n")
	w("  - (A) the load generator straight to the sink: the latency baseline (no forwarder, no CPU or memory figure).\n")
	w("  - (T) bench/cmd/tcprelay: a TCP relay that copies bytes both ways (`io.Copy` between `*net.TCPConn`, spliced on\n")
	w("    Linux) and parses nothing. No forwarder that reads OTLP can cost less.\n")
	w("  - (R) bench/cmd/rawproxy: gRPC, a raw-bytes pass-through proxy with grpc-go's defaults (no decode); HTTP, Go's\n")
	w("    `httputil.ReverseProxy` (body streamed through, keep-alive upstream connections).\n")
	w("  - (B) podstamp; (C) the Collector with `k8sattributes`. Both stamp the same attributes (podstamp's default list: %s)\n", strings.Join(metadata, ", "))
	w("    and `resource.opentelemetry.io/*` annotations; (C) watches only its node (`filter.node`) and associates by\n")
	w("    connection; its exporter has no sending queue and no retry, so like podstamp it answers the client only after\n")
	w("    the sink answered. The Collector is built from its Go modules in bench/collector (k8sattributesprocessor v1.4.1\n")
	w("    with its semconv import pointed at a released otel, see bench/collector/prepare.sh).\n")
	w("- podstamp, the relay and the raw proxy are built like `make build` (`-trimpath -tags grpcnotrace -ldflags '-s -w'`), the\n")
	w("  Collector like its own releases (`-trimpath -ldflags '-s -w'`). Each runs with its own defaults: podstamp on one\n")
	w("  processor (`--max-procs 1`), GC at 40%% (`--gc-percent 40`), 25 ms of timer slack; the others with Go's defaults\n")
	w("  (GOMAXPROCS = the core count, GOGC 100, the kernel's 50 µs timer slack). A variant (S) of the same build runs a\n")
	w("  copy of the binary, a file of its own: podstamp pages its binary out after start-up, and the kernel leaves the\n")
	w("  pages another process maps, so two podstamps on one file would each keep what the other touches.\n\n")
}

func ingressList(m []*ingressResult) string {
	var n []string
	for _, ir := range m {
		n = append(n, ir.Ing.Name)
	}
	return strings.Join(n, "; ")
}

func (r *runner) reportTargets(w func(string, ...any)) {
	w("## Targets\n\n")
	w("Issue 16 (every ingress; the gRPC floor; the control plane) and what remains of issue 7. Ratios are (B)/(C) or\n")
	w("(B)/(T) in the same run. CPU per item: 1/5 of the Collector's, 1/3 with gzip or JSON.\n\n")
	w("| ingress / part | target | required | measured | met | miss |\n|---|---|---|---|---|---|\n")
	for _, c := range r.checks() {
		met := yes(c.Met)
		if !c.Known {
			met = "n/a"
		}
		w("| %s | %s | %s | %s | %s | %s |\n", c.Group, c.Name, c.Required, c.Measured, met, c.Miss)
	}
	w("\n")
	if s := r.variantChecks(); len(s) > 0 {
		w("The same targets for (S), %s, in the same run:\n\n", r.targetName("S"))
		w("| ingress | target | required | measured | met | miss |\n|---|---|---|---|---|---|\n")
		for _, c := range s {
			met := yes(c.Met)
			if !c.Known {
				met = "n/a"
			}
			w("| %s | %s | %s | %s | %s | %s |\n", c.Group, c.Name, c.Required, c.Measured, met, c.Miss)
		}
		w("\n")
	}
}

// variantChecks are the ingress targets applied to (S), when it ran.
func (r *runner) variantChecks() []check {
	var cs []check
	for _, ir := range r.matrix {
		if ir.result("S") != nil {
			cs = append(cs, r.ingressChecksOf(ir, "S")...)
		}
	}
	return cs
}

func (r *runner) reportIngress(w func(string, ...any), ir *ingressResult) {
	A := ir.result("A")
	w("## %s\n\n", ir.Ing.Name)
	it := ir.Ing.items()
	w("| | items/s saturated | CPU-s per M %s saturated | CPU-s per M paced | peak RSS MiB | p50 ms | p99 ms | +p50 vs (A) | +p99 vs (A) | stamped right | lost items | failed requests |\n", it)
	w("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, t := range ir.Targets {
		if t.Err != "" {
			w("| (%s) %s | failed: %s |||||||||||\n", t.Key, t.Name, oneLine(t.Err))
			continue
		}
		cpu := func(v float64) string {
			if !t.HasProcess {
				return "–"
			}
			return fmt.Sprintf("%.2f", v)
		}
		rss := "–"
		if t.HasProcess {
			rss = fmt.Sprintf("%.1f", mib(t.PeakRSSKiB))
		}
		add50, add99 := "–", "–"
		if A != nil && t.Key != "A" {
			a50, a99 := added(t, A)
			add50, add99 = fmt.Sprintf("%+.2f", a50), fmt.Sprintf("%+.2f", a99)
		}
		stamped := "–"
		if t.Key == "B" || t.Key == "S" || t.Key == "C" {
			stamped = fmt.Sprintf("%.2f%%", 100*math.Min(t.Saturated.Identity.Share, t.Paced.Identity.Share))
		}
		w("| (%s) %s | %.0f | %s | %s | %s | %.2f | %.2f | %s | %s | %s | %d | %d |\n",
			t.Key, t.Name, t.Saturated.Summary.ItemsPerSec, cpu(t.Saturated.CPUPerMillion), cpu(t.Paced.CPUPerMillion), rss,
			t.Paced.Summary.LatencyMs.P50, t.Paced.Summary.LatencyMs.P99, add50, add99, stamped,
			t.Saturated.Lost+t.Paced.Lost, t.Saturated.Summary.Failed+t.Paced.Summary.Failed)
	}
	B, C, T, R := ir.result("B"), ir.result("C"), ir.result("T"), ir.result("R")
	if B != nil {
		w("\n| podstamp as a multiple of | CPU saturated | CPU paced | peak RSS | +p50 | +p99 |\n|---|---|---|---|---|---|\n")
		for _, o := range []*targetResult{T, R, C} {
			if o == nil {
				continue
			}
			q := func(b, x float64) string {
				if x <= 0 {
					return "n/a"
				}
				return fmt.Sprintf("%.2fx", b/x)
			}
			l50, l99 := "n/a", "n/a"
			if A != nil {
				b50, b99 := added(B, A)
				o50, o99 := added(o, A)
				l50, l99 = q(b50, o50), q(b99, o99)
			}
			w("| (%s) %s | %s | %s | %s | %s | %s |\n", o.Key, o.Name, q(B.Saturated.CPUPerMillion, o.Saturated.CPUPerMillion),
				q(B.Paced.CPUPerMillion, o.Paced.CPUPerMillion), q(mib(B.PeakRSSKiB), mib(o.PeakRSSKiB)), l50, l99)
		}
	}
	w("\nRequest size: %d bytes (%s). Latency is the load generator's export round trip at the paced rate.\n\n",
		firstNonZero(ir), ir.Ing.Encoding)
}

func firstNonZero(ir *ingressResult) int {
	for _, t := range ir.Targets {
		if t.Saturated.Summary.BytesPerRequest > 0 {
			return t.Saturated.Summary.BytesPerRequest
		}
	}
	return 0
}

func (r *runner) reportMemory(w func(string, ...any)) {
	ir := r.ingress("grpc")
	if ir == nil {
		return
	}
	w("## What the resident set is made of (OTLP/gRPC)\n\n")
	w("After the paced phase (RssAnon: heap, stacks; RssFile: pages of the binary and other files; both are in VmRSS and in\n")
	w("the peak):\n\n| | VmHWM MiB | VmRSS MiB | RssAnon MiB | RssFile MiB |\n|---|---|---|---|---|\n")
	for _, t := range ir.Targets {
		if t.HasProcess && t.Err == "" {
			w("| (%s) %s | %.1f | %.1f | %.1f | %.1f |\n", t.Key, t.Name, mib(t.Mem.HWM), mib(t.Mem.RSS), mib(t.Mem.Anon), mib(t.Mem.File))
		}
	}
	w("\n")
}

func (r *runner) reportProfiles(w func(string, ...any), missed bool) {
	if r.profile != "" {
		if missed {
			w("\n## What dominates podstamp's CPU (targets missed)\n\n")
		} else {
			w("\n## podstamp CPU profile\n\n")
		}
		w("`go tool pprof -top -nodecount=25` of an 8 s CPU profile taken from podstamp's `/debug/pprof/profile` (`--enable-pprof`)\n")
		w("under saturated OTLP/gRPC load, after the measured phases:\n\n```\n%s```\n", trimProfile(r.profile))
	}
	if r.profileCum != "" {
		w("\nThe same profile by cumulative time (`-top -cum -nodecount=30`):\n\n```\n%s```\n", trimProfile(r.profileCum))
	}
	if r.profilePaced != "" {
		w("\nAt the paced rate (%g requests/s; 8 s, `-top -cum`, first 40 nodes):\n\n```\n%s```\n", r.o.rate, firstLines(trimProfile(r.profilePaced), 46))
	}
	if r.profileGzip != "" {
		w("\nUnder OTLP/gRPC gzip load (gzip in and out; saturated; `-top -nodecount=20`):\n\n```\n%s```\n", trimProfile(r.profileGzip))
	}
	if r.profileJSON != "" {
		w("\nUnder OTLP/HTTP JSON load (saturated; `-top -nodecount=20`):\n\n```\n%s```\n", trimProfile(r.profileJSON))
	}
	if r.heapProfile != "" {
		w("\nHeap in use right after the gRPC load (`go tool pprof -top -sample_index=inuse_space` of `/debug/pprof/heap`):\n\n```\n%s```\n", trimProfile(r.heapProfile))
	}
}

// analysis says, from the measured figures and profiles, what dominates
// each missed target.
func (r *runner) analysis() []string {
	var notes []string
	missed := map[string][]string{} // target name -> ingresses that miss it
	for _, c := range r.checks() {
		if !c.Met && c.Known {
			missed[c.Name] = append(missed[c.Name], c.Group)
		}
	}
	g := r.ingress("grpc")
	var B, R, T *targetResult
	if g != nil {
		B, R, T = g.result("B"), g.result("R"), g.result("T")
	}
	if B != nil && (len(missed["Peak RSS"]) > 0 || len(missed["Peak RSS (gRPC, close to the floor)"]) > 0) {
		n := fmt.Sprintf("**Memory** (missed on: %s). podstamp's resident set after the gRPC paced phase is %.1f MiB: %.1f MiB file-backed (RssFile: "+
			"the pages of its %s binary that ran) and %.1f MiB anonymous (RssAnon: heap, stacks, buffers).",
			strings.Join(uniq(append(missed["Peak RSS"], missed["Peak RSS (gRPC, close to the floor)"]...)), ", "),
			mib(B.Mem.RSS), mib(B.Mem.File), binSize(r.podstampBin), mib(B.Mem.Anon))
		if T != nil {
			n += fmt.Sprintf(" The TCP relay (T) has %.1f MiB file-backed and %.1f MiB anonymous.", mib(T.Mem.File), mib(T.Mem.Anon))
		}
		if r.heapProfile != "" {
			n += " The Go heap in use right after saturated load is only " + heapTotal(r.heapProfile) + " (heap profile below):" +
				" the rest of the anonymous part is garbage awaiting collection, goroutine stacks and memory the runtime has not returned to the system."
		}
		notes = append(notes, n)
	}
	if B != nil && T != nil && (len(missed["CPU per item vs the TCP floor, saturated"]) > 0 || len(missed["CPU per item vs the TCP floor, paced"]) > 0) {
		n := fmt.Sprintf("**CPU against the TCP floor (gRPC).** podstamp spends %.2f / %.2f CPU-s per million spans saturated / paced,"+
			" the relay %.2f / %.2f. The relay never copies a byte into its own memory (splice) and makes two system calls"+
			" per direction and wake-up; podstamp must read every request into memory to find the resource attributes,"+
			" parse HTTP/2 frames and headers, and write a new request upstream.", B.Saturated.CPUPerMillion, B.Paced.CPUPerMillion,
			T.Saturated.CPUPerMillion, T.Paced.CPUPerMillion)
		if R != nil {
			n += fmt.Sprintf(" A gRPC proxy that does no work (R) needs %.2f / %.2f: the HTTP/2 hop itself is most of the gap.",
				R.Saturated.CPUPerMillion, R.Paced.CPUPerMillion)
		}
		if pp := r.profilePaced; pp != "" {
			n += " " + r.pacedBreakdown()
		}
		notes = append(notes, n)
	}
	for _, name := range []string{"CPU per item, saturated", "CPU per item, paced"} {
		if len(missed[name]) == 0 {
			continue
		}
		var parts []string
		for _, ir := range r.matrix {
			if !contains(missed[name], ir.Ing.Name) {
				continue
			}
			b, c := ir.result("B"), ir.result("C")
			if b == nil || c == nil {
				continue
			}
			bv, cv := b.Saturated.CPUPerMillion, c.Saturated.CPUPerMillion
			if strings.HasSuffix(name, "paced") {
				bv, cv = b.Paced.CPUPerMillion, c.Paced.CPUPerMillion
			}
			parts = append(parts, fmt.Sprintf("%s %.2f vs %.2f", ir.Ing.Name, bv, cv))
		}
		n := fmt.Sprintf("**%s** (CPU-s per million items, podstamp vs Collector): %s.", name, strings.Join(parts, "; "))
		codec := true
		for _, gname := range missed[name] {
			if !strings.Contains(gname, "JSON") && !strings.Contains(gname, "gzip") {
				codec = false
			}
		}
		if strings.HasSuffix(name, "paced") && r.profilePaced != "" && !codec {
			n += " At the paced rate per-request costs dominate (wake-ups, system calls, one HTTP/2 or HTTP/1.1 exchange each way): " + r.pacedBreakdown()
		}
		if r.profileJSONCum != "" && anyContains(missed[name], "JSON") {
			j := r.profileJSONCum
			if pd := profileShare(j, true, "UnmarshalJSON"); pd > 20 {
				n += fmt.Sprintf(" Under JSON load (saturated profile below, cumulative) podstamp spends %.0f%% of its CPU decoding the JSON"+
					" into pdata (`UnmarshalJSON`) and %.0f%% allocating (`runtime.mallocgc`): the same pdata round trip the"+
					" Collector's receiver makes.", pd, profileShare(j, true, "runtime.mallocgc"))
			} else {
				n += fmt.Sprintf(" Under JSON load the top of podstamp's CPU profile (saturated, flat, below) is %s: scanning"+
					" the JSON text itself, which no forwarder of OTLP/JSON can skip; allocation is %.0f%% and garbage"+
					" collection %.0f%% (cumulative).", topFlat(r.profileJSON, 4),
					profileShare(j, true, "runtime.mallocgc"), profileShare(j, true, "runtime.gcBgMarkWorker"))
			}
		}
		if r.profileGzip != "" && anyContains(missed[name], "gzip") {
			gz := r.profileGzip
			n += fmt.Sprintf(" Under gzip load the flate and CRC code is %.0f%% of podstamp's CPU (flat, top 20 of the gzip profile below).",
				profileShare(gz, false, "/flate.", "hash/crc32"))
		}
		notes = append(notes, n)
	}
	lat := append(append([]string(nil), missed["Added latency p50, paced"]...), missed["Added latency p99, paced"]...)
	if len(lat) > 0 {
		n := fmt.Sprintf("**Latency** (missed on: %s).", strings.Join(uniq(lat), ", "))
		for _, ir := range r.matrix {
			if !contains(lat, ir.Ing.Name) {
				continue
			}
			A, b, c, t := ir.result("A"), ir.result("B"), ir.result("C"), ir.result("T")
			if A == nil || b == nil || c == nil {
				continue
			}
			b50, b99 := added(b, A)
			c50, c99 := added(c, A)
			n += fmt.Sprintf(" %s: podstamp adds %+.2f / %+.2f ms (p50 / p99), the Collector %+.2f / %+.2f", ir.Ing.Name, b50, b99, c50, c99)
			if t != nil {
				t50, t99 := added(t, A)
				n += fmt.Sprintf(", the TCP relay %+.2f / %+.2f", t50, t99)
			}
			if rr := ir.result("R"); rr != nil {
				r50, r99 := added(rr, A)
				n += fmt.Sprintf(", the raw pass-through proxy %+.2f / %+.2f", r50, r99)
			}
			n += "."
		}
		n += " podstamp reads a whole request before it forwards it (it stamps the request's resources first), and its" +
			" added p50 is about its CPU per request, run on one processor; the raw pass-through proxy streams each request" +
			" through (on OTLP/HTTP it is net/http's ReverseProxy)."
		n += " Added latencies are differences of a few tenths of a millisecond between set-ups measured minutes apart on a" +
			" shared 2-core machine; tail latencies move between runs by more than the margin to this target."
		notes = append(notes, n)
	}
	if len(missed["API requests per node"]) > 0 || len(missed["API server bytes per node"]) > 0 {
		notes = append(notes, r.cpAnalysis())
	}
	return notes
}

func (r *runner) pacedBreakdown() string {
	pp := r.profilePaced
	var parts []string
	for _, c := range []struct {
		what  string
		share float64
	}{
		{"system calls (flat)", profileShare(r.profilePacedFlat, false, "Syscall6")},
		{"socket writes", profileShare(pp, true, "syscall.write")},
		{"socket reads", profileShare(pp, true, "syscall.read", "readyreader.sysRead")},
		{"the Go scheduler", profileShare(pp, true, "runtime.schedule")},
		{"memory allocation", profileShare(pp, true, "runtime.mallocgc")},
		{"copies (memmove, flat)", profileShare(r.profilePacedFlat, false, "runtime.memmove")},
		{"garbage collection", profileShare(pp, true, "runtime.gcBgMarkWorker")},
		{"stamping", profileShare(pp, true, "enrich.(*Stamper).Enrich", "enrich.(*Engine)")},
	} {
		if c.share > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f%%", c.what, c.share))
		}
	}
	return "In podstamp's CPU profile at the paced gRPC rate (cumulative unless marked flat): " + strings.Join(parts, ", ") + "." +
		" Go's profiler attributes system calls but not the kernel's work of waking and switching threads between requests."
}

// topFlat names the first n functions of a `go tool pprof -top` listing
// with their flat share.
func topFlat(top string, n int) string {
	var parts []string
	for _, l := range strings.Split(top, "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.HasSuffix(f[1], "%") || f[0] == "flat" {
			continue
		}
		name := strings.Join(f[5:], " ")
		if i := strings.LastIndexByte(name, '/'); i >= 0 {
			name = name[i+1:]
		}
		parts = append(parts, fmt.Sprintf("`%s` %s", name, f[1]))
		if len(parts) == n {
			break
		}
	}
	return strings.Join(parts, ", ")
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func anyContains(l []string, sub string) bool {
	for _, x := range l {
		if strings.Contains(x, sub) {
			return true
		}
	}
	return false
}

func uniq(l []string) []string {
	var out []string
	for _, x := range l {
		if !contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// headlineMarkdown is one small table per ingress, podstamp against the
// Collector and the TCP floor, and the control plane per node: what the
// README shows.
func (r *runner) headlineMarkdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	if len(r.variantChecks()) > 0 {
		w("(S) is %s, measured in the same run.\n\n", r.targetName("S"))
	}
	for _, ir := range r.matrix {
		A, B, C, T, S := ir.result("A"), ir.result("B"), ir.result("C"), ir.result("T"), ir.result("S")
		if B == nil || C == nil {
			continue
		}
		lim := cpuLimit(ir.Ing)
		w("**%s**\n\n", ir.Ing.Name)
		if S != nil {
			w("| | podstamp (B) | variant (S) | Collector (C) | B / C | S / C | target | TCP relay (T) | B / T | S / T |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		} else {
			w("| | podstamp (B) | Collector (C) | B / C | target | TCP relay (T) | B / T |\n|---|---:|---:|---:|---:|---:|---:|\n")
		}
		// sv is (S)'s figure, ignored without (S).
		row := func(name string, bv, sv, cv, tv, limit float64, f string, tLimit float64) {
			ratio := func(v float64) string {
				switch {
				case cv > 0 && v <= 0:
					return "≤ 0" // adds nothing measurable (latency)
				case cv > 0 && v/cv > limit:
					return fmt.Sprintf("**%.2f**", v/cv)
				case cv > 0:
					return fmt.Sprintf("%.2f", v/cv)
				}
				return "n/a"
			}
			floor := func(v float64) string {
				if T == nil || tv <= 0 || v <= 0 {
					return ""
				}
				if tLimit > 0 && v/tv > tLimit {
					return fmt.Sprintf("**%.2fx**", v/tv)
				}
				return fmt.Sprintf("%.2fx", v/tv)
			}
			ts := ""
			if T != nil {
				ts = fmt.Sprintf(f, tv)
			}
			target := "≤ " + frac(limit)
			if tLimit > 0 {
				target += fmt.Sprintf(", ≤ %gx (T)", tLimit)
			}
			if S != nil {
				w("| %s | "+f+" | "+f+" | "+f+" | %s | %s | %s | %s | %s | %s |\n", name, bv, sv, cv, ratio(bv), ratio(sv), target, ts, floor(bv), floor(sv))
				return
			}
			w("| %s | "+f+" | "+f+" | %s | %s | %s | %s |\n", name, bv, cv, ratio(bv), target, ts, floor(bv))
		}
		sf := func(f func(*targetResult) float64) float64 {
			if S == nil {
				return 0
			}
			return f(S)
		}
		tv := func(f func(*targetResult) float64) float64 {
			if T == nil {
				return 0
			}
			return f(T)
		}
		grpc := ir.Ing.Key == "grpc"
		satCPU := func(t *targetResult) float64 { return t.Saturated.CPUPerMillion }
		pacedCPU := func(t *targetResult) float64 { return t.Paced.CPUPerMillion }
		rss := func(t *targetResult) float64 { return mib(t.PeakRSSKiB) }
		row(fmt.Sprintf("CPU-s per M %s, saturated", ir.Ing.items()), satCPU(B), sf(satCPU), satCPU(C), tv(satCPU), lim, "%.2f", ifF(grpc, 2))
		row(fmt.Sprintf("CPU-s per M %s, %g req/s", ir.Ing.items(), r.o.rate), pacedCPU(B), sf(pacedCPU), pacedCPU(C), tv(pacedCPU), lim, "%.2f", ifF(grpc, 1.5))
		if A != nil {
			b50, b99 := added(B, A)
			c50, c99 := added(C, A)
			s50, s99 := 0.0, 0.0
			if S != nil {
				s50, s99 = added(S, A)
			}
			t50, t99 := 0.0, 0.0
			if T != nil {
				t50, t99 = added(T, A)
			}
			row("added latency p50, ms", b50, s50, c50, t50, 1.0/3, "%+.2f", 0)
			row("added latency p99, ms", b99, s99, c99, t99, 1.0/3, "%+.2f", 0)
		}
		row("peak RSS, MiB", rss(B), sf(rss), rss(C), tv(rss), 0.25, "%.1f", 0)
		stamped := func(t *targetResult) string {
			return fmt.Sprintf("%.2f%% / %d", 100*math.Min(t.Saturated.Identity.Share, t.Paced.Identity.Share), t.Saturated.Lost+t.Paced.Lost)
		}
		if S != nil {
			w("| stamped right / lost | %s | %s | %s | | | 100%% / 0 | | | |\n\n", stamped(B), stamped(S), stamped(C))
		} else {
			w("| stamped right / lost | %s | %s | | 100%% / 0 | | |\n\n", stamped(B), stamped(C))
		}

	}
	if cp := r.cp; cp != nil {
		P, K, C := cp.fleet("podstamp"), cp.fleet("podstamp-kubelet"), cp.fleet("collector")
		if P != nil && C != nil {
			n := float64(cp.Nodes)
			pw, cw := cp.cpFleetOnly(P), cp.cpFleetOnly(C)
			var kw map[string]*cpDelta
			if K != nil {
				kw = cp.cpFleetOnly(K)
			}
			q := func(a, c float64, lim float64) string {
				if c <= 0 {
					return "n/a"
				}
				if a <= 0 {
					return "0"
				}
				s := fmt.Sprintf("%.2f", a/c)
				if lim > 0 && a/c > lim {
					s = "**" + s + "**"
				}
				return s
			}
			// row writes podstamp's, the kubelet-source fleet's (when
			// measured) and the Collector's figure, and the ratios.
			row := func(name string, p, k, c float64, f func(float64) string, lim float64, target string) {
				if kw == nil {
					w("| %s | %s | %s | %s | %s |\n", name, f(p), f(c), q(p, c, lim), target)
					return
				}
				w("| %s | %s | %s | %s | %s | %s | %s |\n", name, f(p), f(k), f(c), q(p, c, lim), q(k, c, lim), target)
			}
			w("**Control plane** (%d nodes × %d pods; per node, net of the API server's own work)\n\n", cp.Nodes, cp.PodsPerNode)
			if kw == nil {
				w("| | podstamp | Collector agent | podstamp / Collector | target |\n|---|---:|---:|---:|---:|\n")
			} else {
				w("| | podstamp | podstamp `--pod-source kubelet` | Collector agent | podstamp / Collector | kubelet source / Collector | target |\n|---|---:|---:|---:|---:|---:|---:|\n")
			}
			pr, pb := cpTotals(pw)
			kr, kb := cpTotals(kw)
			cr, cb := cpTotals(cw)
			reqs := func(v float64) string { return fmt.Sprintf("%.1f", v) }
			perNode := func(v float64) string { return human(v) }
			row("API requests (start + steady + churn)", pr/n, kr/n, cr/n, reqs, 0.2, "≤ 1/5")
			row("bytes from the API server (start + steady + churn)", pb/n, kb/n, cb/n, perNode, 0.2, "≤ 1/5")
			for _, win := range cpWindows {
				if pw[win] != nil && cw[win] != nil {
					k := 0.0
					if kw[win] != nil {
						k = kw[win].bytes() / n
					}
					row("… of which "+win, pw[win].bytes()/n, k, cw[win].bytes()/n, perNode, 0, "")
				}
			}
			if ch := pw["churn"]; ch != nil {
				k := 0.0
				if kw["churn"] != nil {
					k = kw["churn"].openWatches() / n
				}
				row("open watches", ch.openWatches()/n, k, cw["churn"].openWatches()/n, reqs, 0, "")
			}
			w("\n")
		}
	}
	return b.String()
}

func ifF(c bool, v float64) float64 {
	if c {
		return v
	}
	return 0
}
