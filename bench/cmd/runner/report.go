package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"
)

func (r *runner) result(key string) *targetResult {
	for _, t := range r.results {
		if t.Key == key && t.Err == "" {
			return t
		}
	}
	return nil
}

// check is one target of issue 7.
type check struct {
	Name     string
	Required string
	Measured string
	Met      bool
	Known    bool // false: could not be evaluated (a side missing)
	Miss     string
}

func (r *runner) checks() []check {
	A, B, C := r.result("A"), r.result("B"), r.result("C")
	var cs []check
	ratio := func(name string, b, c, limit float64, unit string) {
		ch := check{Name: name, Required: fmt.Sprintf("≤ %s of (C)", frac(limit))}
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
		cs = append(cs, ch)
	}
	if B != nil && C != nil {
		ratio("CPU per million spans, saturated", B.Saturated.CPUPerMillion, C.Saturated.CPUPerMillion, 0.2, "CPU-s/M")
		ratio("CPU per million spans, paced", B.Paced.CPUPerMillion, C.Paced.CPUPerMillion, 0.2, "CPU-s/M")
		ratio("Peak RSS", mib(B.PeakRSSKiB), mib(C.PeakRSSKiB), 0.25, "MiB")
		if A != nil {
			ratio("Added latency p50 at paced rate", B.Paced.Summary.LatencyMs.P50-A.Paced.Summary.LatencyMs.P50,
				C.Paced.Summary.LatencyMs.P50-A.Paced.Summary.LatencyMs.P50, 1.0/3, "ms")
			ratio("Added latency p99 at paced rate", B.Paced.Summary.LatencyMs.P99-A.Paced.Summary.LatencyMs.P99,
				C.Paced.Summary.LatencyMs.P99-A.Paced.Summary.LatencyMs.P99, 1.0/3, "ms")
		}
		ratio("gzip in + out: CPU per million spans", B.Gzip.CPUPerMillion, C.Gzip.CPUPerMillion, 1.0/3, "CPU-s/M")
	}
	if B != nil {
		hwm := mib(B.PeakRSSKiB)
		cs = append(cs, check{Name: fmt.Sprintf("Peak RSS with %d pods on the node", r.o.pods), Required: "< 30 MiB",
			Measured: fmt.Sprintf("%.1f MiB", hwm), Known: true, Met: hwm < 30,
			Miss: ifs(hwm >= 30, fmt.Sprintf("%.1f MiB over", hwm-30))})
		share := math.Min(math.Min(B.Saturated.Identity.Share, B.Paced.Identity.Share), B.Gzip.Identity.Share)
		cs = append(cs, check{Name: "Stamped with the right pod", Required: "100%",
			Measured: fmt.Sprintf("%.4f%% (%d wrong, %d unstamped)", 100*share,
				B.Saturated.Identity.Wrong+B.Paced.Identity.Wrong+B.Gzip.Identity.Wrong,
				B.Saturated.Identity.Unstamped+B.Paced.Identity.Unstamped+B.Gzip.Identity.Unstamped),
			Known: true, Met: share == 1, Miss: ifs(share < 1, fmt.Sprintf("%.4f%% short", 100*(1-share)))})
		lost := B.Saturated.Lost + B.Paced.Lost + B.Gzip.Lost
		failed := B.Saturated.Summary.Failed + B.Paced.Summary.Failed + B.Gzip.Summary.Failed
		cs = append(cs, check{Name: "Lost items / failed requests", Required: "0", Measured: fmt.Sprintf("%d lost, %d failed", lost, failed),
			Known: true, Met: lost == 0 && failed == 0, Miss: ifs(lost+failed > 0, fmt.Sprintf("%d items lost, %d requests failed", lost, failed))})
	}
	if s := r.scaleR; s != nil && s.BaseHWM > 0 && s.AfterHWM > 0 {
		g := float64(s.AfterHWM-s.BaseHWM) / float64(s.BaseHWM)
		cs = append(cs, check{Name: fmt.Sprintf("Peak RSS with %d more pods elsewhere", s.OtherPods), Required: "within 5% of the node-only figure",
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

func (r *runner) headline() string {
	var b strings.Builder
	b.WriteString("\nTargets:\n")
	for _, c := range r.checks() {
		mark := "MET   "
		if !c.Met {
			mark = "MISSED"
		}
		fmt.Fprintf(&b, "  %s %-45s %-28s %s %s\n", mark, c.Name, c.Required, c.Measured, c.Miss)
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
	w("Issue 7 asks podstamp to beat a Collector running `k8sattributes` by wide margins, and to beat a naive raw gRPC\n")
	w("pass-through proxy while stamping. All four set-ups below ran in this one run, on this machine, with the same load\n")
	w("generator (bench/loadgen) and sink (bench/sink); load generator and sink run inside the runner process, and only the\n")
	w("forwarder's own process is measured (CPU: utime+stime from /proc/<pid>/stat; memory: VmHWM from /proc/<pid>/status).\n\n")

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

	w("## Set-up\n\n")
	w("- A real kube-apiserver + etcd (e2e/cluster). Node `%s` carries %d pods (25 Deployments/ReplicaSets, addresses\n", benchNode, r.o.pods)
	w("  127.0.1.x in status.podIPs, one annotation `resource.opentelemetry.io/team`).\n")
	w("- Load: OTLP/gRPC traces, %d spans per request, %d attributes per span, %d connections, each bound to the address of a\n", r.o.items, r.o.attrs, r.o.conns)
	w("  different pod, so the forwarder must tell %d pods apart by their connection.\n", r.o.conns)
	w("- All forwarders run at once (idle unless loaded). Per set-up: warm-up %s, then **saturated** closed loop for %s.\n",
		r.o.warmup, r.o.saturated)
	w("  Then **paced** at %g requests/s for %s per set-up, in 4 interleaved rounds (A R B S C A R B S C ...), so that every set-up\n", r.o.rate, r.o.paced)
	w("  sees the same minutes of the machine; latency percentiles are over all requests of the 4 rounds. Peak RSS is read\n")
	w("  after these phases. Then fresh instances with gzip on both legs (client → forwarder and forwarder → sink):\n")
	w("  warm-up and %s saturated each.\n", r.o.gzipDur)
	w("- (B) and (C) stamp the same attributes (podstamp's default list: %s) and `resource.opentelemetry.io/*`\n", strings.Join(metadata, ", "))
	w("  annotations; (C) watches only its node (`filter.node`) and associates by connection; its exporter has no sending\n")
	w("  queue and no retry, so like podstamp it answers the client only after the sink answered. The Collector is built\n")
	w("  from its Go modules in bench/collector (k8sattributesprocessor v1.4.1 with its semconv import pointed at a released\n")
	w("  otel, see bench/collector/prepare.sh). podstamp and the raw proxy are built like `make build`\n")
	w("  (`-trimpath -tags grpcnotrace -ldflags '-s -w'`), the Collector like its own releases (`-trimpath -ldflags '-s -w'`).\n")
	w("- Each forwarder runs with its own defaults: podstamp on one processor (`--max-procs 1`), with the garbage\n")
	w("  collector at 40%% (`--gc-percent 40`) and 5 ms of Linux timer slack (`--timer-slack 5ms`, which it sets at\n")
	w("  start by running itself again in place), all its defaults; the raw proxy and the Collector with Go's\n")
	w("  defaults (GOMAXPROCS = the core count, GOGC 100, the kernel's 50 µs timer slack).\n\n")

	w("## Raw figures\n\n")
	w("| | items/s saturated | CPU-s per M spans saturated | CPU-s per M spans paced | peak RSS MiB | p50 ms | p99 ms | +p50 vs (A) | +p99 vs (A) | gzip CPU-s per M | gzip items/s | stamped right | lost items | failed requests |\n")
	w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	A := r.result("A")
	for _, t := range r.results {
		if t.Err != "" {
			w("| (%s) %s | failed: %s |||||||||||||\n", t.Key, t.Name, oneLine(t.Err))
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
			add50 = fmt.Sprintf("%+.2f", t.Paced.Summary.LatencyMs.P50-A.Paced.Summary.LatencyMs.P50)
			add99 = fmt.Sprintf("%+.2f", t.Paced.Summary.LatencyMs.P99-A.Paced.Summary.LatencyMs.P99)
		}
		stamped := "–"
		if t.Key == "B" || t.Key == "S" || t.Key == "C" {
			stamped = fmt.Sprintf("%.2f%%", 100*math.Min(t.Saturated.Identity.Share, t.Paced.Identity.Share))
		}
		w("| (%s) %s | %.0f | %s | %s | %s | %.2f | %.2f | %s | %s | %s | %.0f | %s | %d | %d |\n",
			t.Key, t.Name, t.Saturated.Summary.ItemsPerSec, cpu(t.Saturated.CPUPerMillion), cpu(t.Paced.CPUPerMillion), rss,
			t.Paced.Summary.LatencyMs.P50, t.Paced.Summary.LatencyMs.P99, add50, add99, cpu(t.Gzip.CPUPerMillion),
			t.Gzip.Summary.ItemsPerSec, stamped, t.Saturated.Lost+t.Paced.Lost+t.Gzip.Lost,
			t.Saturated.Summary.Failed+t.Paced.Summary.Failed+t.Gzip.Summary.Failed)
	}
	w("\nLatency is the load generator's export round trip at the paced rate. (A) has no forwarder process, so it has no CPU or memory figure.\n\n")
	w("What the resident set is made of after the paced phase (RssAnon: heap, stacks; RssFile: pages of the binary and\n")
	w("other files; both are in VmRSS and in the peak):\n\n| | VmHWM MiB | VmRSS MiB | RssAnon MiB | RssFile MiB |\n|---|---|---|---|---|\n")
	for _, t := range r.results {
		if t.HasProcess && t.Err == "" {
			w("| (%s) %s | %.1f | %.1f | %.1f | %.1f |\n", t.Key, t.Name, mib(t.Mem.HWM), mib(t.Mem.RSS), mib(t.Mem.Anon), mib(t.Mem.File))
		}
	}
	w("\n")

	w("## Targets (issue 7)\n\n")
	w("| target | required | measured | met | miss |\n|---|---|---|---|---|\n")
	for _, c := range r.checks() {
		w("| %s | %s | %s | %s | %s |\n", c.Name, c.Required, c.Measured, yes(c.Met), c.Miss)
	}
	B, R := r.result("B"), r.result("R")
	if B != nil && R != nil {
		w("\n### Against the naive floor (R)\n\n")
		w("podstamp must beat a raw pass-through that does no work (informational ratios, (B)/(R); below 1 is better):\n\n")
		w("| | (R) | (B) | (B)/(R) |\n|---|---|---|---|\n")
		floor := func(name string, rv, bv float64, f string) { ratioRow(w, name, rv, bv, f) }
		floor("CPU-s per M spans, saturated", R.Saturated.CPUPerMillion, B.Saturated.CPUPerMillion, "%.2f")
		floor("CPU-s per M spans, paced", R.Paced.CPUPerMillion, B.Paced.CPUPerMillion, "%.2f")
		floor("peak RSS MiB", mib(R.PeakRSSKiB), mib(B.PeakRSSKiB), "%.1f")
		if A != nil {
			floor("added p50 ms", R.Paced.Summary.LatencyMs.P50-A.Paced.Summary.LatencyMs.P50, B.Paced.Summary.LatencyMs.P50-A.Paced.Summary.LatencyMs.P50, "%.2f")
			floor("added p99 ms", R.Paced.Summary.LatencyMs.P99-A.Paced.Summary.LatencyMs.P99, B.Paced.Summary.LatencyMs.P99-A.Paced.Summary.LatencyMs.P99, "%.2f")
		}
		floor("gzip CPU-s per M spans", R.Gzip.CPUPerMillion, B.Gzip.CPUPerMillion, "%.2f")
		floor("items/s saturated", R.Saturated.Summary.ItemsPerSec, B.Saturated.Summary.ItemsPerSec, "%.0f")
	}

	if S := r.result("S"); B != nil && S != nil && S.Err == "" && B.Err == "" {
		w("\n### Timer slack\n\n")
		w("(S) is podstamp with `--timer-slack 0`, the kernel's 50 µs (informational; the targets are (B), podstamp's defaults).\n")
		w("With 5 ms of slack Go's scheduler monitor, which polls every 20 µs after each burst of work, wakes far less often:\n\n")
		w("| | (S) 50 µs | (B) 5 ms | (B)/(S) |\n|---|---|---|---|\n")
		slack := func(name string, sv, bv float64, f string) { ratioRow(w, name, sv, bv, f) }
		slack("CPU-s per M spans, saturated", S.Saturated.CPUPerMillion, B.Saturated.CPUPerMillion, "%.2f")
		slack("CPU-s per M spans, paced", S.Paced.CPUPerMillion, B.Paced.CPUPerMillion, "%.2f")
		slack("p50 ms, paced", S.Paced.Summary.LatencyMs.P50, B.Paced.Summary.LatencyMs.P50, "%.2f")
		slack("p99 ms, paced", S.Paced.Summary.LatencyMs.P99, B.Paced.Summary.LatencyMs.P99, "%.2f")
		slack("peak RSS MiB", mib(S.PeakRSSKiB), mib(B.PeakRSSKiB), "%.1f")
	}

	if s := r.scaleR; s != nil {
		w("\n## Scale run\n\n")
		w("A fresh podstamp with the %d pods of its node; paced load; then %d pods (2 containers each) were created on %d other\n", s.BasePods, s.OtherPods, s.OtherNodes)
		w("nodes in %.1f s (concurrent creates); paced load again.\n\n", s.CreateSeconds)
		w("| | VmHWM MiB | VmRSS MiB |\n|---|---|---|\n")
		w("| %d pods on the node | %.1f | %.1f |\n", s.BasePods, mib(s.BaseHWM), mib(s.BaseRSS))
		w("| + %d pods elsewhere | %.1f | %.1f |\n", s.OtherPods, mib(s.AfterHWM), mib(s.AfterRSS))
		w("\nStamped right during the scale run: %.2f%%.\n", 100*s.Identity.Share)
	}

	missed := false
	for _, c := range r.checks() {
		if !c.Met {
			missed = true
		}
	}
	if notes := r.analysis(); missed && len(notes) > 0 {
		w("\n## Why the missed targets are missed\n\n")
		for _, n := range notes {
			w("- %s\n", n)
		}
	}
	if r.profile != "" {
		if missed {
			w("\n## What dominates podstamp's CPU (targets missed)\n\n")
		} else {
			w("\n## podstamp CPU profile\n\n")
		}
		w("`go tool pprof -top -nodecount=25` of an 8 s CPU profile taken from podstamp's `/debug/pprof/profile` (`--enable-pprof`)\n")
		w("under saturated load, after the measured phases:\n\n```\n%s```\n", trimProfile(r.profile))
	}
	if r.profileCum != "" {
		w("\nThe same profile by cumulative time (`-top -cum -nodecount=30`):\n\n```\n%s```\n", trimProfile(r.profileCum))
	}
	if r.profilePaced != "" {
		w("\nAt the paced rate (%g requests/s; 8 s, `-top -cum`, first 40 nodes):\n\n```\n%s```\n", r.o.rate, firstLines(trimProfile(r.profilePaced), 46))
	}
	if r.profileGzip != "" {
		w("\nUnder gzip load (gzip in and out; `-top -nodecount=20`):\n\n```\n%s```\n", trimProfile(r.profileGzip))
	}
	if r.heapProfile != "" {
		w("\nHeap in use right after that load (`go tool pprof -top -sample_index=inuse_space` of `/debug/pprof/heap`):\n\n```\n%s```\n", trimProfile(r.heapProfile))
	}

	w("\n## Command lines\n\n")
	w("`<sink>` is the in-process sink's gRPC address; `$WORK` the run's temporary directory; `$CLUSTER` the API server's\n")
	w("directory (admin kubeconfig).\n\n```\n")
	repl := strings.NewReplacer()
	if r.sink != nil {
		repl = strings.NewReplacer(r.sink.GRPCAddr(), "<sink>")
	}
	for _, t := range r.results {
		if t.Command != "" {
			w("(%s) %s\n", t.Key, repl.Replace(t.Command))
		}
		if t.GzipCommand != "" {
			w("(%s gzip) %s\n", t.Key, repl.Replace(t.GzipCommand))
		}
	}
	if r.scaleR != nil && r.scaleR.Command != "" {
		w("(scale) %s\n", repl.Replace(r.scaleR.Command))
	}
	w("```\n\nThe (C) configuration:\n\n```yaml\n%s```\n", collectorConfig("127.0.0.1:<port>", "<sink>", "none"))

	w("\n## Load generator summaries\n\n<details><summary>JSON per set-up and phase</summary>\n\n```json\n")
	for _, t := range r.results {
		for _, ph := range []struct {
			name string
			p    phaseResult
		}{{"saturated", t.Saturated}, {"paced", t.Paced}, {"gzip", t.Gzip}} {
			j, _ := json.Marshal(map[string]any{"target": t.Key, "phase": ph.name, "loadgen": ph.p.Summary,
				"forwarder_cpu_s": round2(ph.p.CPUSeconds), "sink_items": ph.p.SinkItems, "identity": ph.p.Identity})
			w("%s\n", j)
		}
	}
	w("```\n\n</details>\n")
	return b.String()
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// trimProfile drops the header lines that name local files.
// firstLines keeps the first n lines of s, ending with a newline.
func firstLines(s string, n int) string {
	l := strings.SplitAfter(s, "\n")
	if len(l) > n {
		l = l[:n]
	}
	return strings.Join(l, "")
}

func trimProfile(p string) string {
	var out []string
	for _, l := range strings.Split(p, "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.Contains(l, "/tmp/") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	m := regexp.MustCompile(`MemTotal:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return "unknown"
	}
	var kb float64
	fmt.Sscan(string(m[1]), &kb)
	return fmt.Sprintf("%.1f GiB", kb/1024/1024)
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// gitDescribe names the commit podstamp was built from, "-dirty" when the
// tree differs from it (the results file itself does not count).
func gitDescribe(root string) string {
	out, err := exec.Command("git", "-C", root, "describe", "--always").Output()
	if err != nil {
		return "unknown"
	}
	d := strings.TrimSpace(string(out))
	st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--", ".", ":!bench/RESULTS.md").Output()
	if err == nil && len(strings.TrimSpace(string(st))) > 0 {
		d += "-dirty"
	}
	return d
}

func modVersion(gomod, mod string) string {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return "?"
	}
	re := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(mod) + `\s+(v\S+)`)
	m := re.FindSubmatch(b)
	if m == nil {
		return "?"
	}
	return string(m[1])
}

func etcdVersion() string {
	out, err := exec.Command("etcd", "--version").Output()
	if err != nil {
		return "unknown"
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(first, "etcd Version:"))
}

// profileShare sums the flat% (cum=false), or takes the largest cum%
// (cum=true), of the lines of a `go tool pprof -top` listing whose function
// name contains any of names.
func profileShare(top string, cum bool, names ...string) float64 {
	total := 0.0
	for _, l := range strings.Split(top, "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.HasSuffix(f[1], "%") {
			continue
		}
		fn := strings.Join(f[5:], " ")
		for _, n := range names {
			if strings.Contains(fn, n) {
				col := f[1]
				if cum {
					col = f[4]
				}
				var v float64
				fmt.Sscanf(strings.TrimSuffix(col, "%"), "%g", &v)
				if cum {
					// Cumulative shares nest: take the largest match.
					total = max(total, v)
				} else {
					total += v
				}
				break
			}
		}
	}
	return total
}

// analysis says, from the measured figures and profiles, what dominates
// each missed target.
func (r *runner) analysis() []string {
	B, C, R := r.result("B"), r.result("C"), r.result("R")
	if B == nil {
		return nil
	}
	var notes []string
	met := map[string]bool{}
	for _, c := range r.checks() {
		met[c.Name] = c.Met
	}
	if !met["Peak RSS"] || !met[fmt.Sprintf("Peak RSS with %d pods on the node", r.o.pods)] {
		n := fmt.Sprintf("**Memory.** podstamp's resident set after the paced phase is %.1f MiB: %.1f MiB file-backed (RssFile: "+
			"the pages of its %s binary that ran) and %.1f MiB anonymous (RssAnon: heap, stacks, buffers).",
			mib(B.Mem.RSS), mib(B.Mem.File), binSize(r.podstampBin), mib(B.Mem.Anon))
		if R != nil {
			n += fmt.Sprintf(" The raw proxy (R) has %.1f MiB file-backed and %.1f MiB anonymous.", mib(R.Mem.File), mib(R.Mem.Anon))
		}
		if r.heapProfile != "" {
			n += " The Go heap in use right after saturated load is only " + heapTotal(r.heapProfile) + " (heap profile below):" +
				" the rest of the anonymous part is garbage awaiting collection, goroutine stacks and memory the runtime has not returned to the system."
		}
		if mib(B.Mem.File) >= 30 {
			n += " The file-backed part alone is over 30 MiB: the target needs less code run (a smaller binary, e.g. fewer" +
				" Kubernetes API groups linked and initialised), not only a smaller heap."
		}
		notes = append(notes, n)
	}
	if !met["CPU per million spans, paced"] && r.profileCum != "" {
		n := fmt.Sprintf("**CPU at the paced rate.** At %g requests/s podstamp spends %.2f CPU-s per million spans against %.2f"+
			" saturated: per-request costs dominate.", r.o.rate, B.Paced.CPUPerMillion, B.Saturated.CPUPerMillion)
		if pp := r.profilePaced; pp != "" {
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
				{"stamping", profileShare(pp, true, "enrich.(*Stamper).Enrich")},
			} {
				if c.share > 0 {
					parts = append(parts, fmt.Sprintf("%s %.0f%%", c.what, c.share))
				}
			}
			n += " In a CPU profile at that rate (cumulative unless marked flat): " + strings.Join(parts, ", ") + "."
			n += " Go's profiler attributes system calls but not the kernel's work of waking and switching threads" +
				" between requests (`perf record -g -p <pid>` shows it)."
		} else {
			n += fmt.Sprintf(" In the saturated profile, system calls are %.0f%% of all CPU (socket writes %.0f%%,"+
				" frame reads %.0f%%).", profileShare(r.profile, false, "Syscall6"), profileShare(r.profileCum, true, "syscall.write"),
				profileShare(r.profileCum, true, "io.ReadFull"))
		}
		if R != nil {
			n += fmt.Sprintf(" The raw proxy (R) needs %.2f at the same rate: what is left is the cost of a gRPC hop"+
				" (two socket writes, reads and thread wake-ups per request), not of stamping.", R.Paced.CPUPerMillion)
		}
		notes = append(notes, n)
	}
	if !met["gzip in + out: CPU per million spans"] && r.profileGzip != "" && C != nil {
		g := r.profileGzip
		n := fmt.Sprintf("**gzip.** (C) spends %.2f CPU-s per million spans, (B) %.2f. The flate and CRC code is %.0f%% of"+
			" podstamp's CPU under gzip load (flat, top 20); compressing the upstream leg is %.0f%% (cumulative, encoder),"+
			" decompressing the client's requests %.0f%% (cumulative, decompressor).",
			C.Gzip.CPUPerMillion, B.Gzip.CPUPerMillion, profileShare(g, false, "/flate.", "hash/crc32"),
			profileShare(g, true, "flate.(*compressor).deflate", "flate.(*fastEncL", "flate.(*compressor).encSpeed"),
			profileShare(g, true, "flate.(*decompressor)"))
		if gr := profileShare(g, true, "huffmanGenericReader"); gr > 0 {
			n += fmt.Sprintf(" The decompressor takes its generic byte-at-a-time path (huffmanGenericReader, %.0f%% cumulative;"+
				" grpc mem.(*Reader).ReadByte %.0f%%): handing it a buffered reader would let it use its fast path.",
				gr, profileShare(g, true, "mem.(*Reader).ReadByte"))
		}
		notes = append(notes, n)
	}
	A := r.result("A")
	lat50, lat99 := met["Added latency p50 at paced rate"], met["Added latency p99 at paced rate"]
	if A != nil && C != nil && (!lat50 || !lat99) {
		add := func(t *targetResult) (float64, float64) {
			return t.Paced.Summary.LatencyMs.P50 - A.Paced.Summary.LatencyMs.P50, t.Paced.Summary.LatencyMs.P99 - A.Paced.Summary.LatencyMs.P99
		}
		b50, b99 := add(B)
		c50, c99 := add(C)
		n := fmt.Sprintf("**Latency.** Over (A), podstamp adds %+.2f ms p50 / %+.2f ms p99 and the Collector %+.2f / %+.2f.", b50, b99, c50, c99)
		if R != nil {
			r50, r99 := add(R)
			n += fmt.Sprintf(" The raw proxy adds %+.2f / %+.2f: podstamp's added latency is that of one more gRPC hop on"+
				" loopback, so the target needs a cheaper hop than grpc-go's defaults, not cheaper stamping.", r50, r99)
		}
		n += " Tail latencies move between runs on a shared 2-core machine by more than the margin to this target."
		notes = append(notes, n)
	}
	return notes
}

func binSize(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.0f MiB", float64(st.Size())/(1<<20))
}

func heapTotal(top string) string {
	m := regexp.MustCompile(`of ([0-9.]+[kMG]?B) total`).FindStringSubmatch(top)
	if m == nil {
		return "?"
	}
	return m[1]
}

// ratioRow writes a table row: name, base, v (both in format f) and v/base.
func ratioRow(w func(string, ...any), name string, base, v float64, f string) {
	q := "n/a"
	if base > 0 {
		q = fmt.Sprintf("%.2f", v/base)
	}
	w("| %s | "+f+" | "+f+" | %s |\n", name, base, v, q)
}
