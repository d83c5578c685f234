package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/podstamp/podstamp/e2e/proc"
)

// ingress is one way load reaches a forwarder: protocol, encoding,
// compression and signal.
type ingress struct {
	Key      string // short name, used in file names
	Name     string // the report's title
	Protocol string // grpc or http
	Encoding string // proto or json
	Gzip     bool   // client → forwarder and forwarder → sink
	Signal   string // traces, metrics or logs
}

// ingresses is the matrix: every OTLP ingress the SDKs send, plain and
// gzip, with traces; metrics and logs once each over OTLP/HTTP protobuf,
// the SDKs' default protocol. ingresses[0] is the gRPC reference the
// scale run and the floor targets use.
var ingresses = []ingress{
	{"grpc", "OTLP/gRPC, traces", "grpc", "proto", false, "traces"},
	{"grpc-gzip", "OTLP/gRPC gzip, traces", "grpc", "proto", true, "traces"},
	{"http-proto", "OTLP/HTTP protobuf, traces", "http", "proto", false, "traces"},
	{"http-proto-gzip", "OTLP/HTTP protobuf gzip, traces", "http", "proto", true, "traces"},
	{"http-json", "OTLP/HTTP JSON, traces", "http", "json", false, "traces"},
	{"http-json-gzip", "OTLP/HTTP JSON gzip, traces", "http", "json", true, "traces"},
	{"http-proto-metrics", "OTLP/HTTP protobuf, metrics", "http", "proto", false, "metrics"},
	{"http-proto-logs", "OTLP/HTTP protobuf, logs", "http", "proto", false, "logs"},
}

// ingressResult is one ingress's measurements, one entry per target.
type ingressResult struct {
	Ing     ingress
	Targets []*targetResult
}

func (ir *ingressResult) result(key string) *targetResult {
	for _, t := range ir.Targets {
		if t.Key == key && t.Err == "" {
			return t
		}
	}
	return nil
}

// items names what the signal counts.
func (ing ingress) items() string {
	switch ing.Signal {
	case "metrics":
		return "data points"
	case "logs":
		return "log records"
	}
	return "spans"
}

var targetNames = map[string]string{
	"A": "direct to the sink",
	"T": "TCP relay (bytes only)",
	"R": "raw pass-through proxy",
	"B": "podstamp",
	"S": "podstamp with --variant-args", // named by targetName
	"C": "Collector + k8sattributes",
}

// targetOrder is the order of set-ups in every phase and table. S is
// measured only when --only names it.
var targetOrder = []string{"A", "T", "R", "B", "S", "C"}

// instance is one running forwarder (nil proc for (A)).
type instance struct {
	res      *targetResult
	p        *proc.Proc
	endpoint string
	debug    string // podstamp's debug listener (pprof)
}

// startAll starts every target of ir at once; a target that fails to
// start is reported and left out.
func (r *runner) startAll(ctx context.Context, ir *ingressResult) []*instance {
	ins := make([]*instance, len(ir.Targets))
	var wg sync.WaitGroup
	for i, res := range ir.Targets {
		if res.Err != "" {
			continue
		}
		in := &instance{res: res, endpoint: r.sink.GRPCAddr()}
		if ir.Ing.Protocol == "http" {
			in.endpoint = r.sink.HTTPAddr()
		}
		ins[i] = in
		if !res.HasProcess {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, ep, debug, err := r.start(ctx, res.Key, ir.Ing, ir.Ing.Key)
			if err != nil {
				res.Err = fmt.Sprintf("start: %v", err)
				r.log.Error("target failed", "target", res.Key, "ingress", ir.Ing.Key, "err", err)
				if p != nil {
					r.untrack(p)
				}
				return
			}
			in.p, in.endpoint, in.debug = p, ep, debug
			res.Command = commandLine(p.Env(), p.Argv(), r.cmdRepl)
		}()
	}
	wg.Wait()
	var out []*instance
	for _, in := range ins {
		if in != nil && in.res.Err == "" {
			out = append(out, in)
		}
	}
	return out
}

// measureAll runs the matrix: per ingress, fresh instances of every
// forwarder (so peak RSS is that ingress's), each loaded saturated in turn,
// then paced in interleaved rounds (A T R B C A T R B C ...) so that every
// set-up sees the same minutes of the machine.
func (r *runner) measureAll(ctx context.Context) error {
	for _, ing := range ingresses {
		if !r.wantIngress(ing.Key) {
			continue
		}
		ir := &ingressResult{Ing: ing}
		for _, key := range targetOrder {
			if !r.want(key) || (key == "S" && !r.wantS()) {
				continue
			}
			res := &targetResult{Key: key, Name: r.targetName(key), HasProcess: key != "A"}
			if key == "C" && r.collectorErr != nil {
				res.Err = "build: " + r.collectorErr.Error()
			}
			ir.Targets = append(ir.Targets, res)
		}
		r.matrix = append(r.matrix, ir)
		if err := r.measureIngress(ctx, ir); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (r *runner) measureIngress(ctx context.Context, ir *ingressResult) error {
	ing := ir.Ing
	r.log.Info("ingress", "ingress", ing.Name)
	start := time.Now()
	ins := r.startAll(ctx, ir)
	defer func() {
		for _, in := range ins {
			if in.p != nil {
				r.untrack(in.p)
			}
		}
	}()
	for _, in := range ins {
		if _, err := r.phase(ctx, in.p, in.endpoint, ing, 0, r.o.warmup); err != nil {
			r.fail(in, "warm-up", err)
			continue
		}
		ph, err := r.phase(ctx, in.p, in.endpoint, ing, 0, r.o.saturated)
		if err != nil {
			r.fail(in, "saturated", err)
			continue
		}
		in.res.Saturated = ph
	}
	each := r.o.paced / time.Duration(r.o.pacedRounds)
	for range r.o.pacedRounds {
		for _, in := range ins {
			if in.res.Err != "" {
				continue
			}
			ph, err := r.phase(ctx, in.p, in.endpoint, ing, r.o.rate, each)
			if err != nil {
				r.fail(in, "paced", err)
				continue
			}
			in.res.Paced = mergePhase(in.res.Paced, ph)
		}
	}
	for _, in := range ins {
		if in.p != nil && in.res.Err == "" {
			m, _ := readMemory(in.p.PID())
			in.res.PeakRSSKiB, in.res.Mem = m.HWM, m
		}
	}
	// Profiles are taken after the measured phases.
	for _, in := range ins {
		if in.res.Key != "B" || in.res.Err != "" || r.o.skipProfile {
			continue
		}
		var err error
		switch ing.Key {
		case "grpc":
			err = r.takeProfile(ctx, in.p, in.endpoint, in.debug, ing)
		case "grpc-gzip":
			r.profileGzip, err = r.flatProfile(ctx, in.p, in.endpoint, in.debug, ing)
		case "http-json":
			r.profileJSON, r.profileJSONCum, err = r.flatCumProfile(ctx, in.p, in.endpoint, in.debug, ing)
		}
		if err != nil {
			r.log.Warn("profile", "ingress", ing.Key, "err", err)
		}
	}
	for _, res := range ir.Targets {
		r.log.Info("measured", "ingress", ing.Key, "target", res.Key, "err", res.Err,
			"items_per_s", res.Saturated.Summary.ItemsPerSec, "cpu_s_per_M", round2(res.Saturated.CPUPerMillion),
			"paced_cpu_s_per_M", round2(res.Paced.CPUPerMillion), "p50_ms", res.Paced.Summary.LatencyMs.P50,
			"p99_ms", res.Paced.Summary.LatencyMs.P99, "peak_rss_MiB", round2(mib(res.PeakRSSKiB)),
			"stamped", res.Paced.Identity.Share)
	}
	r.log.Info("ingress done", "ingress", ing.Key, "took", time.Since(start).Round(time.Second))
	return ctx.Err()
}

// targetName is the set-up's name in the report; (S) is named by its
// arguments.
func (r *runner) targetName(key string) string {
	if key == "S" {
		name := "podstamp " + strings.Join(strings.Fields(r.o.variantArgs), " ")
		if r.o.variantBin != "" {
			name += " (" + filepath.Base(r.o.variantBin) + ")"
		} else if r.o.variantBuild != "" {
			name += " (built with " + r.o.variantBuild + ")"
		}
		if len(r.o.variantEnv) > 0 {
			name += " (" + strings.Join(r.o.variantEnv, " ") + ")"
		}
		return name
	}
	if key == "R" && r.o.rawArgs != "" {
		return targetNames[key] + " " + r.o.rawArgs
	}
	return targetNames[key]
}

// wantS: (S) is measured only when --only names it.
func (r *runner) wantS() bool { return r.o.only != "" && r.want("S") }

// wantIngress: --ingress limits the matrix (comma-separated keys).
func (r *runner) wantIngress(key string) bool {
	if len(r.o.ingress) == 0 {
		return true
	}
	for _, k := range r.o.ingress {
		if k == key {
			return true
		}
	}
	return false
}
