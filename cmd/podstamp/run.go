package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/proxy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// run is podstamp's whole life: configuration, wiring, serving, draining.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := ParseConfig(args, getenv, stdout)
	if err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	if cfg.Help {
		Usage(stdout)
		return nil
	}
	if cfg.Version {
		fmt.Fprintf(stdout, "podstamp %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	}
	set, err := cfg.resolve(getenv)
	if err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}

	log := newLogger(cfg, stdout)
	if getenv("GOMAXPROCS") == "" && cfg.MaxProcs > 0 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(cfg.MaxProcs))
	}
	if getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(cfg.GCPercent))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	opts := proxy.Options{
		Logger:     log,
		Registerer: reg,
		Gatherer:   reg,
		Version:    version,
		// /debug/pods lists every pod of the node: debug listener only.
		DebugHandlers: map[string]http.Handler{},
	}
	cache, err := newCache(cfg, set, log, reg)
	if err != nil {
		return err
	}
	var pods podCache // nil without a pod cache
	if cache != nil {
		conflicts, err := newConflicts(log, reg)
		if err != nil {
			return err
		}
		opts.Enricher = enrich.NewStamper(set.rules, cache, enrich.WithConflictHandler(conflicts.observe))
		opts.Checks = append(opts.Checks, proxy.Check{Name: "pod-cache", Check: cache.Ready})
		opts.LiveChecks = append(opts.LiveChecks, proxy.Check{Name: "pod-cache", Check: cache.Live})
		opts.DebugHandlers["/debug/pods"] = cache.DebugHandler()
		pods = cache
	} else {
		log.Info("no node name and no Kubernetes configuration: passing data through without pod attributes")
	}

	if err := wireAdmission(set, pods, &opts); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}

	p, err := proxy.New(proxy.Config{
		GRPCListen:      cfg.GRPCListen,
		GRPCTransport:   cfg.GRPCTransport,
		HTTPListen:      cfg.HTTPListen,
		AdminListen:     cfg.AdminListen,
		DebugListen:     cfg.DebugListen,
		Upstream:        set.upstreams,
		ForwardHeaders:  cfg.ForwardHeaders,
		MaxRequestBytes: cfg.MaxRequestBytes,
		ShutdownTimeout: cfg.ShutdownTimeout,
		DrainDelay:      cfg.DrainDelay,
		EnablePprof:     cfg.EnablePprof,

		MaxGRPCRequestBytes:     cfg.MaxGRPCRequestBytes,
		MaxJSONRequestBytes:     cfg.MaxJSONRequestBytes,
		MaxInflightBytes:        cfg.MaxInflightBytes,
		MaxInflightBytesPerPeer: cfg.MaxInflightBytesPerPeer,
		MaxConnections:          cfg.MaxConnections,
		MaxConnectionsPerPeer:   cfg.MaxConnectionsPerPeer,
		MaxRequestsPerPeer:      cfg.MaxRequestsPerPeer,
		MaxStreamsPerConnection: cfg.MaxStreamsPerConnection,
	}, opts)
	if err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	if err := p.Listen(); err != nil {
		p.Close()
		return err
	}
	log.Info("starting", "version", version, "upstream", describeUpstream(set.upstreams), "grpc_server", cfg.GRPCTransport, "node", cfg.NodeName, "procs", runtime.GOMAXPROCS(0), "gc_percent", gcPercent(), "timer_slack", slackString())

	// The pod cache outlives the ingress: requests in flight during the
	// drain may still be held for a pod.
	kubeCtx, stopKube := context.WithCancel(context.Background())
	kubeDone := make(chan error, 1)
	if cache != nil {
		go func() { kubeDone <- cache.Run(kubeCtx) }()
		go releaseStartupPages(ctx, cache.Synced(), log)
	} else {
		kubeDone <- nil
	}

	serveErr := p.Serve(ctx)
	stopKube()
	kubeErr := <-kubeDone
	if kubeErr != nil && !errors.Is(kubeErr, context.Canceled) {
		log.Error("pod cache stopped", "err", kubeErr)
	}
	if serveErr != nil {
		return serveErr
	}
	log.Info("stopped")
	return nil
}

func describeUpstream(ts [4]proxy.Target) string {
	seen := map[string]bool{}
	var parts []string
	for _, sig := range enrich.Signals {
		s := ts[sig].Protocol + " " + ts[sig].Endpoint
		if c := ts[sig].GRPCClient(); c != "" {
			s += " (" + c + " client)"
		}
		if !seen[s] {
			seen[s] = true
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, ", ")
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
	}
	return l, nil
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	level, _ := parseLevel(cfg.LogLevel)
	ho := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// gcPercent reads the garbage collection target in effect, from GOGC or
// --gc-percent.
func gcPercent() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// slackString is the timer slack of the calling thread, for the start-up log.
func slackString() string {
	d, ok := timerSlack()
	if !ok {
		return "unknown"
	}
	return d.String()
}
