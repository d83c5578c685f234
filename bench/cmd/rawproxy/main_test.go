package main

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/podstamp/podstamp/bench/loadgen"
	"github.com/podstamp/podstamp/bench/sink"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestForwardsBytesUnchanged(t *testing.T) {
	s, err := sink.Start(sink.Config{GRPCListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, gz := range []bool{false, true} {
		s.Reset()
		p, err := start("127.0.0.1:0", s.GRPCAddr(), gz)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := loadgen.Run(context.Background(), loadgen.Config{
			Endpoint: p.lis.Addr().String(), Requests: 6, Items: 5, Conns: 2, Gzip: gz,
			SourceIPs: []string{"127.0.0.61", "127.0.0.62"}, ResourceAttrs: map[string]string{"x": "y"},
		})
		p.stop()
		if err != nil || sum.Acked != 6 {
			t.Fatalf("gzip=%v: %v %+v", gz, err, sum)
		}
		if st := s.Stats(); st.TotalItems != 30 {
			t.Fatalf("gzip=%v: sink items %d", gz, st.TotalItems)
		}
		for _, r := range s.Records() {
			if r.Attributes["x"] != "y" || len(r.Attributes) != 3 || r.Peer != "127.0.0.1" {
				t.Fatalf("record changed or wrong peer: %+v", r)
			}
		}
	}
	// Upstream failure codes come back unchanged.
	s.SetFail(true)
	p, err := start("127.0.0.1:0", s.GRPCAddr(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	sum, err := loadgen.Run(context.Background(), loadgen.Config{Endpoint: p.lis.Addr().String(), Requests: 2, Items: 1})
	if err != nil || sum.FailedByCode["Unavailable"] != 2 {
		t.Fatalf("%v %+v", err, sum)
	}
}

func TestHTTPFloorPassesBodiesThrough(t *testing.T) {
	s, err := sink.Start(sink.Config{HTTPListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, err := startHTTP("127.0.0.1:0", s.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer h.stop()
	for _, enc := range []string{"proto", "json"} {
		s.Reset()
		sum, err := loadgen.Run(context.Background(), loadgen.Config{Endpoint: h.lis.Addr().String(), Protocol: "http",
			Encoding: enc, Gzip: enc == "json", Requests: 4, Items: 3, Conns: 2, ResourceAttrs: map[string]string{"x": "y"}})
		if err != nil || sum.Acked != 4 {
			t.Fatalf("%s: %v %+v", enc, err, sum)
		}
		if st := s.Stats(); st.TotalItems != 12 {
			t.Fatalf("%s: sink items %d", enc, st.TotalItems)
		}
	}
	s.SetFail(true)
	sum, err := loadgen.Run(context.Background(), loadgen.Config{Endpoint: h.lis.Addr().String(), Protocol: "http", Requests: 2, Items: 1})
	if err != nil || sum.FailedByCode["http_503"] != 2 {
		t.Fatalf("%v %+v", err, sum)
	}
}

// The lean transport forwards unchanged too: many calls on few connections,
// requests far larger than the upstream's first 64 KiB windows, and the
// upstream's failure codes.
func TestLeanForwardsBytesUnchanged(t *testing.T) {
	s, err := sink.Start(sink.Config{GRPCListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lean, err := startLean("127.0.0.1:0", s.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer lean.stop()
	leanClient, err := startLeanClient("127.0.0.1:0", s.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer leanClient.stop()
	leanServer, err := startLeanServer("127.0.0.1:0", s.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer leanServer.stop()
	for _, addr := range []string{lean.lis.Addr().String(), leanClient.lis.Addr().String(), leanServer.lis.Addr().String()} {
		s.SetFail(false)
		s.Reset()
		leanForwards(t, s, addr)
	}
}

func leanForwards(t *testing.T, s *sink.Sink, addr string) {
	t.Helper()
	sum, err := loadgen.Run(context.Background(), loadgen.Config{
		Endpoint: addr, Requests: 40, Items: 2000, Conns: 3,
		SourceIPs: []string{"127.0.0.61", "127.0.0.62", "127.0.0.63"}, ResourceAttrs: map[string]string{"x": "y"},
	})
	if err != nil || sum.Acked != 40 {
		t.Fatalf("%v %+v", err, sum)
	}
	if st := s.Stats(); st.TotalItems != 80000 {
		t.Fatalf("sink items %d, want 80000", st.TotalItems)
	}
	for _, r := range s.Records() {
		if r.Attributes["x"] != "y" || r.Peer != "127.0.0.1" {
			t.Fatalf("record changed or wrong peer: %+v", r)
		}
	}
	s.SetFail(true)
	sum, err = loadgen.Run(context.Background(), loadgen.Config{Endpoint: addr, Requests: 2, Items: 1})
	if err != nil || sum.FailedByCode["Unavailable"] != 2 {
		t.Fatalf("%v %+v", err, sum)
	}
}

// OTLP/HTTP protobuf bodies forwarded as gRPC calls arrive whole, through
// grpc-go and through the lean pool, and an upstream failure is a 503.
func TestHTTPToGRPCForwards(t *testing.T) {
	s, err := sink.Start(sink.Config{GRPCListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, lean := range []bool{false, true} {
		s.SetFail(false)
		s.Reset()
		h, err := startHTTPToGRPC("127.0.0.1:0", s.GRPCAddr(), lean)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := loadgen.Run(context.Background(), loadgen.Config{Endpoint: h.lis.Addr().String(), Protocol: "http",
			Encoding: "proto", Requests: 20, Items: 2000, Conns: 3, ResourceAttrs: map[string]string{"x": "y"}})
		if err != nil || sum.Acked != 20 {
			h.stop()
			t.Fatalf("lean=%v: %v %+v", lean, err, sum)
		}
		if st := s.Stats(); st.TotalItems != 40000 {
			h.stop()
			t.Fatalf("lean=%v: sink items %d", lean, st.TotalItems)
		}
		s.SetFail(true)
		sum, err = loadgen.Run(context.Background(), loadgen.Config{Endpoint: h.lis.Addr().String(), Protocol: "http", Requests: 2, Items: 1})
		h.stop()
		if err != nil || sum.FailedByCode["http_503"] != 2 {
			t.Fatalf("lean=%v: %v %+v", lean, err, sum)
		}
	}
}
