package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podstamp/podstamp/enrich"
)

func TestConflictsCountedEveryTimeLoggedEveryTenSeconds(t *testing.T) {
	var buf bytes.Buffer
	reg := prometheus.NewRegistry()
	c, err := newConflicts(slog.New(slog.NewJSONHandler(&buf, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	cf := enrich.Conflict{
		Signal: enrich.Logs, Peer: netip.MustParseAddr("10.1.0.5"),
		Namespace: "shop", Name: "cart", UID: "uid-cart",
		Claims: []enrich.Claim{{Key: "k8s.namespace.name", Value: "kube-system"}, {Key: "k8s.node.name", NotString: true}},
	}
	lines := func() []map[string]any {
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if l == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
		return out
	}

	c.observe(cf)
	for range 5 {
		now = now.Add(time.Second)
		c.observe(cf)
	}
	if got := lines(); len(got) != 1 {
		t.Fatalf("%d warnings within 10s, want 1: %v", len(got), got)
	}
	first := lines()[0]
	if first["level"] != "WARN" || first["pod"] != "shop/cart" || first["pod_uid"] != "uid-cart" || first["peer"] != "10.1.0.5" ||
		first["signal"] != "logs" || first["claimed"] != "k8s.namespace.name=kube-system, k8s.node.name=(not a string)" || first["suppressed"] != 0.0 {
		t.Errorf("warning %v", first)
	}
	now = now.Add(5 * time.Second) // 10s after the first warning
	c.observe(cf)
	got := lines()
	if len(got) != 2 || got[1]["suppressed"] != 5.0 {
		t.Fatalf("second warning %v, want one reporting 5 suppressed", got)
	}
	if n := testutil.ToFloat64(c.total); n != 7 {
		t.Errorf("podstamp_identity_conflicts_total = %v, want 7", n)
	}
	if _, err := newConflicts(slog.Default(), reg); err == nil {
		t.Error("registering the counter twice succeeded")
	}
}
