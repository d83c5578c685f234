package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/podstamp/podstamp/bench/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type kvFlag map[string]string

func (k kvFlag) String() string { return fmt.Sprint(map[string]string(k)) }
func (k kvFlag) Set(v string) error {
	key, val, ok := strings.Cut(v, "=")
	if !ok || key == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	k[key] = val
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadgen.Config
	fs.StringVar(&cfg.Endpoint, "endpoint", "127.0.0.1:4317", "host:port (gRPC) or host:port / http://host:port (HTTP)")
	fs.StringVar(&cfg.Protocol, "protocol", "grpc", "grpc or http")
	fs.StringVar(&cfg.Encoding, "encoding", "proto", "proto or json (json needs --protocol http)")
	fs.BoolVar(&cfg.Gzip, "gzip", false, "gzip-compress requests")
	fs.StringVar(&cfg.Signal, "signal", "traces", "traces, metrics or logs")
	fs.IntVar(&cfg.Requests, "requests", 0, "total requests (0: bounded by --duration only; default 100 when neither is set)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "run duration (0: bounded by --requests only)")
	fs.IntVar(&cfg.Items, "items", 512, "spans / data points / log records per request")
	fs.IntVar(&cfg.Attrs, "attrs", 8, "attributes per item")
	fs.IntVar(&cfg.Conns, "conns", 1, "connections")
	fs.Float64Var(&cfg.Rate, "rate", 0, "total requests per second (0: closed loop, as fast as acks come back)")
	srcs := fs.String("source-ip", "", "comma-separated local addresses to bind, one per connection round robin (e.g. 127.0.0.11,127.0.0.12)")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "per-request timeout")
	allow := fs.Bool("allow-failures", false, "exit 0 even when requests failed")
	ra := kvFlag{}
	fs.Var(ra, "resource-attr", "extra resource attribute key=value (repeatable)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if cfg.Requests == 0 && cfg.Duration == 0 {
		cfg.Requests = 100
	}
	for _, s := range strings.Split(*srcs, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.SourceIPs = append(cfg.SourceIPs, s)
		}
	}
	if len(ra) > 0 {
		cfg.ResourceAttrs = ra
	}
	sum, err := loadgen.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(sum)
	if sum.Failed > 0 && !*allow {
		fmt.Fprintf(stderr, "loadgen: %d of %d requests failed\n", sum.Failed, sum.Sent)
		return 1
	}
	if sum.Sent == 0 {
		fmt.Fprintln(stderr, "loadgen: nothing was sent")
		return 1
	}
	return 0
}
