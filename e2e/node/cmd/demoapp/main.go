// Command demoapp is the application pod of the one-node cluster: it
// exports traces, metrics and logs with the OpenTelemetry Go SDK, over
// OTLP/gRPC or OTLP/HTTP (DEMO_PROTOCOL, default grpc), to the endpoint of
// OTEL_EXPORTER_OTLP_ENDPOINT, configured only by the SDK's standard
// environment variables. Every DEMO_INTERVAL (default 100ms) it ends one
// span and emits one log record, both with the attribute demo.seq counting
// from 0, and adds 1 to a counter.
//
// It counts, after the SDK's own retries, the items each export delivered
// and the items of exports that failed, and serves them as JSON on
// :8080/stats; POST /stop stops sending, flushes and answers with the final
// counts.
package main

import (
	"context"
	"encoding/json"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Stats are the counts /stats serves.
type Stats struct {
	Protocol      string `json:"protocol"`
	Seq           int64  `json:"seq"`
	SpansOK       int64  `json:"spans_ok"`
	SpansFailed   int64  `json:"spans_failed"`
	LogsOK        int64  `json:"logs_ok"`
	LogsFailed    int64  `json:"logs_failed"`
	MetricsOK     int64  `json:"metric_exports_ok"`
	MetricsFailed int64  `json:"metric_exports_failed"`
	LastError     string `json:"last_error,omitempty"`
}

var (
	spansOK, spansFailed, logsOK, logsFailed, metricsOK, metricsFailed atomic.Int64
	lastErr                                                            atomic.Value
)

func noteErr(err error) {
	lastErr.Store(err.Error())
	log.Printf("export failed: %v", err)
}

type spanCounter struct{ sdktrace.SpanExporter }

func (e spanCounter) ExportSpans(ctx context.Context, s []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, s)
	if err != nil {
		spansFailed.Add(int64(len(s)))
		noteErr(err)
	} else {
		spansOK.Add(int64(len(s)))
	}
	return err
}

type logCounter struct{ sdklog.Exporter }

func (e logCounter) Export(ctx context.Context, r []sdklog.Record) error {
	err := e.Exporter.Export(ctx, r)
	if err != nil {
		logsFailed.Add(int64(len(r)))
		noteErr(err)
	} else {
		logsOK.Add(int64(len(r)))
	}
	return err
}

type metricCounter struct{ sdkmetric.Exporter }

func (e metricCounter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	err := e.Exporter.Export(ctx, rm)
	if err != nil {
		metricsFailed.Add(1)
		noteErr(err)
	} else {
		metricsOK.Add(1)
	}
	return err
}

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	proto := os.Getenv("DEMO_PROTOCOL")
	if proto == "" {
		proto = "grpc"
	}
	interval := 100 * time.Millisecond
	if v := os.Getenv("DEMO_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			log.Fatalf("DEMO_INTERVAL: %v", err)
		}
		interval = d
	}
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		log.Fatalf("resource: %v", err)
	}
	var (
		se sdktrace.SpanExporter
		le sdklog.Exporter
		me sdkmetric.Exporter
	)
	switch proto {
	case "grpc":
		if se, err = otlptracegrpc.New(ctx); err == nil {
			if le, err = otlploggrpc.New(ctx); err == nil {
				me, err = otlpmetricgrpc.New(ctx)
			}
		}
	case "http/protobuf", "http":
		if se, err = otlptracehttp.New(ctx); err == nil {
			if le, err = otlploghttp.New(ctx); err == nil {
				me, err = otlpmetrichttp.New(ctx)
			}
		}
	default:
		log.Fatalf("DEMO_PROTOCOL %q: want grpc or http/protobuf", proto)
	}
	if err != nil {
		log.Fatalf("exporter: %v", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res),
		sdktrace.WithBatcher(spanCounter{se}, sdktrace.WithBatchTimeout(200*time.Millisecond)))
	lp := sdklog.NewLoggerProvider(sdklog.WithResource(res),
		sdklog.WithProcessor(sdklog.NewBatchProcessor(logCounter{le}, sdklog.WithExportInterval(200*time.Millisecond))))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(metricCounter{me}, sdkmetric.WithInterval(time.Second))))
	tracer := tp.Tracer("demoapp")
	logger := lp.Logger("demoapp")
	counter, err := mp.Meter("demoapp").Int64Counter("demo.ticks")
	if err != nil {
		log.Fatal(err)
	}

	var seq atomic.Int64
	stopSending := make(chan struct{})
	var stopOnce sync.Once
	sending := make(chan struct{})
	go func() {
		defer close(sending)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			n := seq.Load()
			_, span := tracer.Start(ctx, "tick")
			span.SetAttributes(attribute.Int64("demo.seq", n))
			span.End()
			var rec otellog.Record
			rec.SetBody(otellog.StringValue("tick"))
			rec.SetTimestamp(time.Now())
			rec.AddAttributes(otellog.Int64("demo.seq", n))
			logger.Emit(ctx, rec)
			counter.Add(ctx, 1)
			seq.Add(1)
			select {
			case <-ctx.Done():
				return
			case <-stopSending:
				return
			case <-t.C:
			}
		}
	}()
	flush := func() {
		fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer fcancel()
		for _, f := range []func(context.Context) error{tp.ForceFlush, lp.ForceFlush, mp.ForceFlush} {
			if err := f(fctx); err != nil {
				log.Printf("flush: %v", err)
			}
		}
	}
	stats := func() Stats {
		s := Stats{Protocol: proto, Seq: seq.Load(),
			SpansOK: spansOK.Load(), SpansFailed: spansFailed.Load(),
			LogsOK: logsOK.Load(), LogsFailed: logsFailed.Load(),
			MetricsOK: metricsOK.Load(), MetricsFailed: metricsFailed.Load()}
		if e, ok := lastErr.Load().(string); ok {
			s.LastError = e
		}
		return s
	}
	http.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(stats()) //nolint:errcheck
	})
	http.HandleFunc("/stop", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST", http.StatusMethodNotAllowed)
			return
		}
		stopOnce.Do(func() { close(stopSending) })
		<-sending
		flush()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(stats()) //nolint:errcheck
	})
	srv := &http.Server{Addr: ":8080"}
	go func() {
		if err := srv.ListenAndServe(); err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()
	log.Printf("demoapp: %s every %s to %s", proto, interval, os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	<-ctx.Done()
	<-sending
	flush()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	tp.Shutdown(sctx)  //nolint:errcheck
	lp.Shutdown(sctx)  //nolint:errcheck
	mp.Shutdown(sctx)  //nolint:errcheck
	srv.Shutdown(sctx) //nolint:errcheck
}
