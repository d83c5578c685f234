package main

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"go.uber.org/goleak"

	"github.com/podstamp/podstamp/bench/loadgen"
	"github.com/podstamp/podstamp/bench/sink"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The relay carries gRPC and HTTP (protobuf, JSON, gzip) unchanged: the
// sink receives every item with the attributes sent, and failures come back.
func TestRelaysEveryIngress(t *testing.T) {
	s, err := sink.Start(sink.Config{GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		proto, enc string
		gzip       bool
	}{{"grpc", "proto", false}, {"grpc", "proto", true}, {"http", "proto", false}, {"http", "json", true}} {
		up := s.GRPCAddr()
		if c.proto == "http" {
			up = s.HTTPAddr()
		}
		r, err := start("127.0.0.1:0", up, log)
		if err != nil {
			t.Fatal(err)
		}
		s.Reset()
		sum, err := loadgen.Run(context.Background(), loadgen.Config{
			Endpoint: r.lis.Addr().String(), Protocol: c.proto, Encoding: c.enc, Gzip: c.gzip,
			Requests: 6, Items: 5, Conns: 2, ResourceAttrs: map[string]string{"x": "y"},
		})
		if err != nil || sum.Acked != 6 {
			r.stop()
			t.Fatalf("%+v: %v %+v", c, err, sum)
		}
		if st := s.Stats(); st.TotalItems != 30 {
			t.Fatalf("%+v: sink items %d", c, st.TotalItems)
		}
		for _, rec := range s.Records() {
			if rec.Attributes["x"] != "y" {
				t.Fatalf("%+v: record changed: %+v", c, rec)
			}
		}
		s.SetFail(true)
		sum, err = loadgen.Run(context.Background(), loadgen.Config{Endpoint: r.lis.Addr().String(), Protocol: c.proto,
			Encoding: c.enc, Requests: 2, Items: 1})
		s.SetFail(false)
		r.stop()
		if err != nil || sum.Failed != 2 {
			t.Fatalf("%+v: failures not relayed: %v %+v", c, err, sum)
		}
	}
}
