// Command sink is the OTLP/gRPC receiver behind the Collector in the
// one-node cluster. It keeps, for every resource it receives, the
// attributes that tell which pod sent it and which pod it was stamped with,
// and serves them as JSON on /results (GET; DELETE forgets them).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"net"
	"net/http"
	"sync"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // the Collector's exporter compresses with gzip
	"google.golang.org/grpc/peer"
)

// Resource is one resource of one export as the sink received it.
type Resource struct {
	Signal string            `json:"signal"`
	Peer   string            `json:"peer"`
	Attrs  map[string]string `json:"attrs"`
	Items  int               `json:"items"`
	// Seqs are the demo.seq attributes of its spans or log records.
	Seqs []int64 `json:"seqs,omitempty"`
}

type store struct {
	mu  sync.Mutex
	res []Resource
}

func (s *store) add(ctx context.Context, signal string, attrs pcommon.Map, items int, seqs []int64) {
	r := Resource{Signal: signal, Attrs: map[string]string{}, Items: items, Seqs: seqs}
	if p, ok := peer.FromContext(ctx); ok {
		r.Peer = p.Addr.String()
	}
	attrs.Range(func(k string, v pcommon.Value) bool {
		r.Attrs[k] = v.AsString()
		return true
	})
	s.mu.Lock()
	s.res = append(s.res, r)
	s.mu.Unlock()
}

func seqOf(m pcommon.Map) (int64, bool) {
	v, ok := m.Get("demo.seq")
	if !ok {
		return 0, false
	}
	return v.Int(), true
}

type traces struct {
	ptraceotlp.UnimplementedGRPCServer
	s *store
}

func (t traces) Export(ctx context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	rs := req.Traces().ResourceSpans()
	for i := 0; i < rs.Len(); i++ {
		n := 0
		var seqs []int64
		for j := 0; j < rs.At(i).ScopeSpans().Len(); j++ {
			spans := rs.At(i).ScopeSpans().At(j).Spans()
			n += spans.Len()
			for k := 0; k < spans.Len(); k++ {
				if q, ok := seqOf(spans.At(k).Attributes()); ok {
					seqs = append(seqs, q)
				}
			}
		}
		t.s.add(ctx, "traces", rs.At(i).Resource().Attributes(), n, seqs)
	}
	return ptraceotlp.NewExportResponse(), nil
}

type metrics struct {
	pmetricotlp.UnimplementedGRPCServer
	s *store
}

func (m metrics) Export(ctx context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	rm := req.Metrics().ResourceMetrics()
	for i := 0; i < rm.Len(); i++ {
		n := 0
		for j := 0; j < rm.At(i).ScopeMetrics().Len(); j++ {
			n += rm.At(i).ScopeMetrics().At(j).Metrics().Len()
		}
		m.s.add(ctx, "metrics", rm.At(i).Resource().Attributes(), n, nil)
	}
	return pmetricotlp.NewExportResponse(), nil
}

type logs struct {
	plogotlp.UnimplementedGRPCServer
	s *store
}

func (l logs) Export(ctx context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	rl := req.Logs().ResourceLogs()
	for i := 0; i < rl.Len(); i++ {
		n := 0
		var seqs []int64
		for j := 0; j < rl.At(i).ScopeLogs().Len(); j++ {
			recs := rl.At(i).ScopeLogs().At(j).LogRecords()
			n += recs.Len()
			for k := 0; k < recs.Len(); k++ {
				if q, ok := seqOf(recs.At(k).Attributes()); ok {
					seqs = append(seqs, q)
				}
			}
		}
		l.s.add(ctx, "logs", rl.At(i).Resource().Attributes(), n, seqs)
	}
	return plogotlp.NewExportResponse(), nil
}

func main() {
	grpcAddr := flag.String("grpc", ":4317", "OTLP/gRPC listen address")
	httpAddr := flag.String("http", ":8080", "results listen address")
	flag.Parse()
	s := &store{}
	l, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		log.Fatal(err)
	}
	g := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	ptraceotlp.RegisterGRPCServer(g, &traces{s: s})
	pmetricotlp.RegisterGRPCServer(g, &metrics{s: s})
	plogotlp.RegisterGRPCServer(g, &logs{s: s})
	go func() { log.Fatal(g.Serve(l)) }()
	http.HandleFunc("/results", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch r.Method {
		case http.MethodGet:
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(s.res) //nolint:errcheck
		case http.MethodDelete:
			s.res = nil
		default:
			http.Error(w, "GET or DELETE", http.StatusMethodNotAllowed)
		}
	})
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {})
	log.Printf("sink: OTLP/gRPC on %s, results on %s", *grpcAddr, *httpAddr)
	log.Fatal(http.ListenAndServe(*httpAddr, nil))
}
