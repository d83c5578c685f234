package informer

import (
	"context"
	"encoding/json"
	"github.com/podstamp/podstamp/enrich"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

func getJSON(t *testing.T, h http.Handler, url string, v any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, url, nil))
	if rec.Code == http.StatusOK {
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("content type %q", ct)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			t.Fatalf("%s: %v\n%s", url, err, rec.Body)
		}
	}
	return rec.Code
}

func TestDebugHandler(t *testing.T) {
	t.Parallel()
	old := mkPod(podSpec{name: "old", ips: []string{"10.5.0.1"}, start: t0, phase: kubetypes.PodSucceeded})
	nw := mkPod(podSpec{name: "new", ips: []string{"10.5.0.1", "fd00::5:1"}, start: t0.Add(time.Minute),
		labels: map[string]string{"pod-template-hash": "7f9"},
		owners: []kubetypes.OwnerReference{{Kind: "ReplicaSet", Name: "new-7f9", UID: "rs"}}})
	hn := mkPod(podSpec{name: "hn", hostNetwork: true, ips: []string{"192.168.1.10"}})
	h := newHarness(t, Config{HoldTimeout: 30 * time.Millisecond, HoldNegativeTTL: time.Hour}, testNodeObj(), old, nw, hn)
	h.start()
	h.waitEvent("node", testNode)
	dh := h.c.DebugHandler()

	var r resolution
	getJSON(t, dh, "/debug/pods?ip=::ffff:10.5.0.1", &r)
	if r.Result != "hit" || r.Pod == nil || r.Pod.Name != "new" || len(r.Candidates) != 2 || !r.Synced {
		t.Fatalf("owned address: %+v", r)
	}
	rec := httptest.NewRecorder()
	dh.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pods?ip=10.5.0.1", nil))
	for _, key := range []string{`"result": "hit"`, `"state": "live"`, `"owner": true`, `"kind": "replicaset"`, `"kind": "deployment"`} {
		if !strings.Contains(rec.Body.String(), key) {
			t.Errorf("JSON lacks %s:\n%s", key, rec.Body)
		}
	}
	for _, c := range r.Candidates {
		if c.Owner != (c.Name == "new") {
			t.Errorf("candidate %s owner=%v", c.Name, c.Owner)
		}
	}

	r = resolution{}
	getJSON(t, dh, "/debug/pods?ip=10.244.1.1", &r)
	if r.Result != "nat_suspected" || r.Reason == "" {
		t.Errorf("gateway: %+v", r)
	}
	r = resolution{}
	getJSON(t, dh, "/debug/pods?ip=192.168.1.10", &r)
	if r.Result != "host_network" {
		t.Errorf("hostNetwork address: %+v", r)
	}

	// Held, then negatively cached.
	ctx, cancel := context.WithCancel(context.Background())
	got := h.resolveAsync(ctx, "10.5.0.9", 1)
	h.waitHeld("10.5.0.9")
	r = resolution{}
	getJSON(t, dh, "/debug/pods?ip=10.5.0.9", &r)
	// The hold may already have timed out (30ms); either state must be shown.
	if !(r.Result == "hold" && r.HeldRequests == 1) && r.Result != "unknown" {
		t.Errorf("held address: %+v", r)
	}
	<-got
	cancel()
	r = resolution{}
	getJSON(t, dh, "/debug/pods?ip=10.5.0.9", &r)
	if r.Result != "unknown" || r.NegativeUntil.IsZero() {
		t.Errorf("negative address: %+v", r)
	}

	var l listing
	getJSON(t, dh, "/debug/pods", &l)
	if len(l.Pods) != 3 || l.Node != testNode || !l.Synced || len(l.Gateways) != 2 || len(l.Negative) != 1 {
		t.Errorf("listing: %+v", l)
	}
	if code := getJSON(t, dh, "/debug/pods?ip=nope", &r); code != http.StatusBadRequest {
		t.Errorf("bad ip: %d", code)
	}
}

func TestMetadataRefresh(t *testing.T) {
	t.Parallel()
	ns := namespaceObj(kubetypes.ObjectMeta{Name: "default", Labels: map[string]string{"team": "a"}})
	h := newHarness(t, Config{Needs: enrich.Needs{NamespaceMetadata: true}}, ns, mkPod(podSpec{name: "p", ips: []string{"10.5.1.1"}}))
	h.start()
	// Read off the watch loop, then published again.
	awaitPod(t, h.c, "default", "p", func(p *enrich.Pod) bool { return p.NamespaceLabels["team"] == "a" })
	ns.meta.Labels = map[string]string{"team": "b"}
	h.api.PutMeta(ns)
	h.c.meta.lru.Purge() // as if MetadataTTL passed
	h.c.republish(context.Background(), false)
	if p := h.c.ByIP(netip.MustParseAddr("10.5.1.1")); p == nil || p.NamespaceLabels["team"] != "b" {
		t.Fatalf("after refresh: %+v", p)
	}
}
