package proxy_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/proxy"
	"github.com/prometheus/client_golang/prometheus"
)

// A pass-through OTLP proxy from the standard ports to a collector, with an
// admin listener, draining on SIGTERM.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()

	cfg := proxy.DefaultConfig()
	cfg.GRPCListen, cfg.HTTPListen, cfg.AdminListen = ":4317", ":4318", ":10291"
	for _, sig := range enrich.Signals {
		cfg.Upstream[sig] = proxy.Target{
			Endpoint: "http://otel-collector.observability.svc:4317",
			Protocol: proxy.ProtocolGRPC,
			Timeout:  10 * time.Second,
		}
	}
	cfg.ForwardHeaders = []string{"authorization"}

	reg := prometheus.NewRegistry()
	p, err := proxy.New(cfg, proxy.Options{
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Registerer: reg,
		Gatherer:   reg,
		// Enricher: an *enrich.Stamper stamps pod attributes; nil passes through.
	})
	if err != nil {
		panic(err)
	}
	if err := p.Serve(ctx); err != nil {
		panic(err)
	}
}
