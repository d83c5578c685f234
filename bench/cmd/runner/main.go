package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type options struct {
	quick         bool
	out           string
	pods          int
	scalePods     int
	scaleNodes    int
	conns         int
	items, attrs  int
	rate          float64
	warmup        time.Duration
	saturated     time.Duration
	paced         time.Duration
	pacedRounds   int
	ingress       listFlag
	cpNodes       int
	cpPodsPerNode int
	cpSteady      time.Duration
	skipCP        bool
	skipCollector bool
	skipScale     bool
	skipProfile   bool
	keep          bool
	only          string
	podstampEnv   listFlag
	podstampArgs  listFlag
	variantArgs   string
	variantBuild  string
	variantEnv    listFlag
	variantBin    string
	rawArgs       string
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "short run (a few minutes): short phases, three ingresses, 2,000 pods in the scale run, 10 nodes in the control-plane run")
	flag.StringVar(&o.out, "out", "bench/RESULTS.md", "results file (relative to the repository root)")
	flag.IntVar(&o.pods, "pods", 250, "pods on the benchmark node")
	flag.IntVar(&o.scalePods, "scale-pods", 20000, "pods added on other nodes in the scale run")
	flag.IntVar(&o.scaleNodes, "scale-nodes", 100, "other nodes those pods are spread over")
	flag.IntVar(&o.conns, "conns", 8, "load generator connections, each from its own pod address")
	flag.IntVar(&o.items, "items", 512, "spans per request")
	flag.IntVar(&o.attrs, "attrs", 8, "attributes per span")
	flag.Float64Var(&o.rate, "rate", 100, "paced phase: requests per second")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "closed-loop warm-up before measuring, per set-up and ingress")
	flag.DurationVar(&o.saturated, "saturated", 5*time.Second, "saturated (closed-loop) phase length, per set-up and ingress")
	flag.DurationVar(&o.paced, "paced", 9*time.Second, "paced phase length, per set-up and ingress (split into --paced-rounds interleaved rounds)")
	flag.IntVar(&o.pacedRounds, "paced-rounds", 6, "interleaved rounds of the paced phase (A T R B C A T R B C ...); the targets table gives paced CPU ratios round by round too")
	flag.Var(&o.ingress, "ingress", "measure only this ingress (repeatable): grpc, grpc-gzip, http-proto, http-proto-gzip, http-json, http-json-gzip, http-proto-metrics, http-proto-logs")
	flag.IntVar(&o.cpNodes, "cp-nodes", 50, "control-plane run: simulated nodes, one podstamp (then one Collector) each")
	flag.IntVar(&o.cpPodsPerNode, "cp-pods-per-node", 30, "control-plane run: pods per simulated node")
	flag.DurationVar(&o.cpSteady, "cp-steady", 30*time.Second, "control-plane run: steady phase length per fleet")
	flag.BoolVar(&o.skipCP, "skip-control-plane", false, "leave out the control-plane run")
	flag.BoolVar(&o.skipCollector, "skip-collector", false, "leave out (C), the Collector")
	flag.BoolVar(&o.skipScale, "skip-scale", false, "leave out the scale run")
	flag.BoolVar(&o.skipProfile, "skip-profile", false, "do not take a CPU profile of podstamp")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (process logs, profiles)")
	flag.StringVar(&o.only, "only", "", "measure only these targets, e.g. ATB (default: ATRBC; S, the podstamp variant of --variant-args, only when named here)")
	flag.StringVar(&o.variantBin, "variant-bin", "", "(S) runs this podstamp binary instead of one built from this tree, e.g. an older build to measure a change across commits (a wrapper script that execs it can drop flags the older build lacks)")
	flag.StringVar(&o.rawArgs, "raw-args", "", "extra arguments of (R), the pass-through proxy, split at spaces, e.g. \"--transport lean\" (an HTTP/2 of its own instead of grpc-go's; plain gRPC only)")
	flag.Var(&o.variantEnv, "variant-env", "extra environment K=V for (S) only (repeatable), added after --podstamp-env, e.g. GOMAXPROCS=1")
	flag.Var(&o.podstampEnv, "podstamp-env", "extra environment K=V for podstamp (repeatable), e.g. GOMEMLIMIT=24MiB")
	flag.Var(&o.podstampArgs, "podstamp-arg", "extra podstamp argument (repeatable; B and S)")
	flag.StringVar(&o.variantArgs, "variant-args", "--timer-slack 0", "podstamp arguments of (S), split at spaces, added to those of (B) (and after --podstamp-arg): one run measures B and this variant in interleaved rounds, e.g. \"--timer-slack 50ms\"")
	flag.StringVar(&o.variantBuild, "variant-build", "", "extra go build flags of (S), split at spaces: (S) runs a binary of its own built with them, e.g. \"-pgo=bin/cpu.pprof\" (relative to the repository root) to measure a profile-guided build against the plain one")
	flag.Parse()
	if o.quick {
		o.warmup, o.saturated, o.paced = 500*time.Millisecond, 2*time.Second, 4*time.Second
		if !isSet("paced-rounds") {
			o.pacedRounds = 4
		}
		if !isSet("scale-pods") {
			o.scalePods = 2000
		}
		if !isSet("ingress") {
			o.ingress = listFlag{"grpc", "http-proto-gzip", "http-json"}
		}
		if !isSet("cp-nodes") {
			o.cpNodes = 10
		}
		if !isSet("cp-steady") {
			o.cpSteady = 10 * time.Second
		}
	}
	o.pacedRounds = max(1, o.pacedRounds)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 40*time.Minute)
	defer cancel()
	if err := run(ctx, o, log); err != nil {
		log.Error("bench failed", "err", err)
		os.Exit(1)
	}
}

func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "podstamp-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		log.Info("work directory kept", "dir", work)
	} else {
		defer os.RemoveAll(work)
	}
	r := &runner{o: o, log: log, root: root, work: work, started: time.Now(), loadStart: loadavg()}
	defer r.cleanup()
	if err := r.prepare(ctx); err != nil {
		return err
	}
	if err := r.measureAll(ctx); err != nil {
		return err
	}
	if !o.skipCP {
		if err := r.controlPlaneRun(ctx); err != nil {
			return fmt.Errorf("control-plane run: %w", err)
		}
	}
	if !o.skipScale {
		if err := r.scale(ctx); err != nil {
			return fmt.Errorf("scale run: %w", err)
		}
	}
	r.finished = time.Now()
	r.loadEnd = loadavg()
	out := o.out
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, []byte(r.report()), 0o644); err != nil {
		return err
	}
	log.Info("results written", "file", o.out, "took", r.finished.Sub(r.started).Round(time.Second))
	fmt.Print(r.headline())
	return nil
}

// loadavg is the first three fields of /proc/loadavg: other work on the
// machine shows up in every figure, so the report states it.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
