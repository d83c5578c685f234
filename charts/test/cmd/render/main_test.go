package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"--set", "upstream.endpoint=http://sink.e2e.svc:4317", "--namespace", "e2e", "--name", "ps", "--notes"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, s := range []string{"kind: DaemonSet", "kind: ClusterRole\n", "namespace: e2e", "name: ps-podstamp", "--upstream=http://sink.e2e.svc:4317"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q", s)
		}
	}
	if !strings.Contains(errb.String(), "OTEL_EXPORTER_OTLP_ENDPOINT") {
		t.Errorf("--notes did not print the NOTES: %q", errb.String())
	}
}

func TestRunFails(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(nil, &out, &errb); code != 1 {
		t.Fatalf("exit %d without upstream; want 1", code)
	}
	if !strings.Contains(errb.String(), "upstream.endpoint is required") || out.Len() != 0 {
		t.Errorf("stderr %q stdout %q", errb.String(), out.String())
	}
	if code := run([]string{"stray"}, &out, &errb); code != 2 {
		t.Errorf("exit %d for a stray argument; want 2", code)
	}
}
