package informer_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/podstamp/podstamp/informer"
)

// TestProxyFairHold attacks the per-peer hold share through the proxy's real
// HTTP listener. An address without a pod (127.0.0.60) sends many large
// requests at once; only its share (HoldMaxBytes/8) is held, the rest is
// forwarded unstamped at once. A new pod (127.0.0.61) then sends its first
// export before its pod object reaches the cache: it is held and stamped,
// although the attacker alone would have spent the whole budget had it been
// allowed to. The attacker gives up its held request; its next one is not
// held at all.
func TestProxyFairHold(t *testing.T) {
	const (
		budget   = 64 << 10
		bigAttr  = 7000 // one attacker request: about 7 kB
		attacks  = 12   // 12 x 7 kB would spend the whole budget
		legitPad = 4000 // the new pod's export: more than the budget minus 9 attacker requests
	)
	e := newChurnEnv(t, informer.Config{NodeName: "node-a", HoldTimeout: 10 * time.Second, HoldMaxBytes: budget})

	attacker := netip.MustParseAddr("127.0.0.60")
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: attacker.AsSlice()}}
	// One connection per request, so that each held request can be given up
	// by closing its connection.
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	defer hc.CloseIdleConnections()
	ac := &churnClient{e: e, uid: "", name: "attacker", hc: hc}

	body := func(c *churnClient, id string, pad int) []byte {
		tr := c.traces(id, 1)
		tr.Traces().ResourceSpans().At(0).Resource().Attributes().PutStr("pad", strings.Repeat("x", pad))
		b, err := tr.MarshalProto()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	heldCtx, giveUp := context.WithCancel(context.Background())
	defer giveUp()
	results := make(chan error, attacks)
	for i := range attacks {
		b := body(ac, "attack-"+string(rune('a'+i)), bigAttr)
		go func() { results <- ac.post(heldCtx, "/v1/traces", "application/x-protobuf", b) }()
	}
	// All but the one request that fits in the attacker's share come back at
	// once (forwarded unstamped); the last one is held.
	timeout := time.After(10 * time.Second)
	for range attacks - 1 {
		select {
		case err := <-results:
			if err != nil {
				t.Fatalf("attacker request past its share: %v, want forwarded unstamped", err)
			}
		case <-timeout:
			t.Fatal("attacker requests past its share were held")
		}
	}
	if n := gauge(t, e, "podstamp_held_requests"); n != 1 {
		t.Fatalf("%v requests held, want the attacker's one", n)
	}
	if n := refused(t, e, "peer_bytes"); n != attacks-1 {
		t.Errorf("peer_bytes refusals = %v, want %d", n, attacks-1)
	}

	// A new pod's first export, before its pod object exists: held, then
	// stamped.
	pod := churnPod("default", "newcomer", "uid-newcomer", netip.MustParseAddr("127.0.0.61"), 1)
	lc := e.newClient(pod, 1)
	defer lc.tr.CloseIdleConnections()
	defer lc.cc.Close()
	first := make(chan error, 1)
	go func() {
		first <- lc.post(context.Background(), "/v1/traces", "application/x-protobuf", body(lc, "newcomer-1", legitPad))
	}()
	awaitGauge(t, e, "podstamp_held_requests", 2)

	// The attacker gives up its held request: its next one is not held.
	giveUp()
	select {
	case err := <-results:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the attacker's held request: %v, want canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the attacker's held request did not end")
	}
	awaitGauge(t, e, "podstamp_held_requests", 1)
	again := make(chan error, 1)
	go func() {
		again <- ac.post(context.Background(), "/v1/traces", "application/x-protobuf", body(ac, "attack-again", bigAttr))
	}()
	select {
	case err := <-again:
		if err != nil {
			t.Fatalf("attacker after giving up: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the attacker was held again right after giving up a hold")
	}

	e.create(pod)
	select {
	case err := <-first:
		if err != nil {
			t.Fatalf("the new pod's first export: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the new pod's first export was not released by its pod")
	}
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	if e.rec.resources["newcomer-1"] != 1 || e.rec.right != 1 || e.rec.wrong != 0 {
		t.Errorf("upstream: %d resources of the new pod's export, %d stamped right, %d wrong; want it stamped",
			e.rec.resources["newcomer-1"], e.rec.right, e.rec.wrong)
	}
}

func metricValue(t *testing.T, e *churnEnv, name, label, value string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				match = match || l.GetName() == label && l.GetValue() == value
			}
			if match {
				if m.Gauge != nil {
					return m.GetGauge().GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func gauge(t *testing.T, e *churnEnv, name string) float64 { return metricValue(t, e, name, "", "") }

func refused(t *testing.T, e *churnEnv, reason string) float64 {
	return metricValue(t, e, "podstamp_hold_refused_total", "reason", reason)
}

// awaitGauge waits until a gauge of the cache reads want. The cache's hooks
// are internal to the package, so the gauge is what this test can watch.
func awaitGauge(t *testing.T, e *churnEnv, name string, want float64) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	timeout := time.After(10 * time.Second)
	for gauge(t, e, name) != want {
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatalf("%s = %v, want %v", name, gauge(t, e, name), want)
		}
	}
}
