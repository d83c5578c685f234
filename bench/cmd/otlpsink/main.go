package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/podstamp/podstamp/bench/sink"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("otlpsink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	grpcListen := fs.String("grpc-listen", "127.0.0.1:4317", "OTLP/gRPC listen address (empty disables)")
	httpListen := fs.String("http-listen", "127.0.0.1:4318", "OTLP/HTTP listen address, also serving the control paths (empty disables)")
	ctrlListen := fs.String("control-listen", "", "separate listen address for the control paths /stats /records /identity /fail /reset")
	maxRecords := fs.Int("max-records", 100000, "records kept for GET /records (-1 keeps none; counters are always kept)")
	print := fs.Bool("print", false, "print each received resource to stdout like the Collector's debug exporter")
	fail := fs.Bool("fail", false, "start failing every export (gRPC UNAVAILABLE / HTTP 503)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: otlpsink [flags]\n\nA counting OTLP receiver. Control paths (JSON):\n"+
			"  GET /stats  GET /records  GET /identity  POST /identity {src: {namespace,name,uid}}\n"+
			"  POST /fail?on=1|0[&grpc_code=14][&http_status=503]  POST /reset\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cfg := sink.Config{
		GRPCListen: *grpcListen, HTTPListen: *httpListen, ControlListen: *ctrlListen,
		MaxRecords: *maxRecords, Logger: log,
	}
	if *print {
		cfg.Print = stdout
	}
	s, err := sink.Start(cfg)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	s.SetFail(*fail)
	log.Info("otlpsink listening", "grpc", s.GRPCAddr(), "http", s.HTTPAddr(), "control", s.ControlAddr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	_ = s.Close()
	st := s.Stats()
	log.Info("otlpsink stopped", "items", st.TotalItems, "failed", st.Failed, "malformed", st.Malformed)
	return 0
}
