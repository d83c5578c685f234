package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"go.uber.org/goleak"

	"github.com/podstamp/podstamp/bench/loadgen"
	"github.com/podstamp/podstamp/bench/sink"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestExitCodesAndJSONSummary(t *testing.T) {
	s, err := sink.Start(sink.Config{GRPCListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	args := []string{"--endpoint", s.GRPCAddr(), "--requests", "3", "--items", "4", "--attrs", "2",
		"--source-ip", "127.0.0.71", "--resource-attr", "k8s.pod.name=x"}
	var out, errb bytes.Buffer
	if code := run(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var sum loadgen.Summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil || sum.Acked != 3 || sum.Items != 12 {
		t.Fatalf("summary %v: %s", err, out.String())
	}
	if r := s.Records(); len(r) != 3 || r[0].Attributes["k8s.pod.name"] != "x" || r[0].Peer != "127.0.0.71" {
		t.Fatalf("records: %+v", r)
	}
	s.SetFail(true)
	out.Reset()
	if code := run(context.Background(), args, &out, &errb); code != 1 {
		t.Fatalf("failures: exit %d, want 1", code)
	}
	if code := run(context.Background(), append(args, "--allow-failures"), &out, &errb); code != 0 {
		t.Fatalf("--allow-failures: exit %d, want 0", code)
	}
	if code := run(context.Background(), []string{"--resource-attr", "novalue"}, &out, &errb); code != 2 {
		t.Fatalf("bad flag: exit %d, want 2", code)
	}
}
