package informer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podstamp/podstamp/enrich"
)

func (h *harness) refused(reason string) float64 {
	return testutil.ToFloat64(h.c.m.holdRefused.WithLabelValues(reason))
}

// answeredAtOnce resolves a request that must not be held. With a fake clock
// a held request would never time out, so it is given up after a second.
func (h *harness) answeredAtOnce(ip string, size int) enrich.Result {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := h.resolveAsync(ctx, ip, size)
	select {
	case r := <-got:
		return enrich.Result(r.res)
	case <-time.After(time.Second):
		cancel()
		h.t.Fatalf("%s (%d bytes) was held", ip, size)
	}
	return ""
}

// TestFairHoldCancelAttack is the attack of the bug report: one address sends
// a large request that is held, cancels it just before HoldTimeout and sends
// again, over and over, while in every cycle a new pod (whose address reaches
// the cache during its hold) sends its first export. That export must be held
// and stamped (hold_hit) in every cycle: the attacker gets no more than its
// per-peer share of the budget, and once it gave up a hold it is not held
// again for HoldNegativeTTL.
func TestFairHoldCancelAttack(t *testing.T) {
	const (
		budget  = 8000
		share   = budget / 8 // the default per-peer byte cap
		timeout = 3 * time.Second
		negTTL  = time.Minute
	)
	h := newHarness(t, Config{HoldTimeout: timeout, HoldNegativeTTL: negTTL, HoldMaxBytes: budget})
	clk := newFakeClock(t0)
	h.c.clock = clk
	h.start()
	if h.c.cfg.HoldMaxPerPeerBytes != share || h.c.cfg.HoldMaxPerPeerRequests != DefaultHoldMaxPerPeerRequests {
		t.Fatalf("per-peer defaults: %d bytes, %d requests", h.c.cfg.HoldMaxPerPeerBytes, h.c.cfg.HoldMaxPerPeerRequests)
	}
	attacker := "10.9.0.66"
	for cycle := range 5 {
		// The whole budget in one request: over the attacker's share, so
		// refused at once instead of starving everyone else.
		if res := h.answeredAtOnce(attacker, budget); res != enrich.ResultNoBudget {
			t.Fatalf("cycle %d: a request of the whole budget got %v, want no_budget", cycle, res)
		}
		// As much as its share allows is held.
		ctx, cancel := context.WithCancel(context.Background())
		var held []<-chan resolved
		for range 10 {
			held = append(held, h.resolveAsync(ctx, attacker, share/10))
			h.waitHeld(attacker)
		}
		if res := h.answeredAtOnce(attacker, 1); res != enrich.ResultNoBudget {
			t.Fatalf("cycle %d: a request past the attacker's share got %v, want no_budget", cycle, res)
		}

		// Just before the timeout, a new pod sends its first export; the
		// attacker gives up its holds.
		clk.Step(timeout - time.Millisecond)
		legit := fmt.Sprintf("10.9.1.%d", cycle+1)
		first := h.resolveAsync(context.Background(), legit, share)
		h.waitHeld(legit)
		cancel()
		for _, ch := range held {
			if r := <-ch; !errors.Is(r.err, context.Canceled) {
				t.Fatalf("cycle %d: attacker's hold ended with %+v, want canceled", cycle, r)
			}
		}
		// The attacker sends again at once: not held.
		if res := h.answeredAtOnce(attacker, share); res != enrich.ResultUnknown {
			t.Fatalf("cycle %d: attacker right after giving up got %v, want unknown (negatively cached)", cycle, res)
		}
		name := fmt.Sprintf("new-%d", cycle)
		h.create(mkPod(podSpec{name: name, ips: []string{legit}}))
		if r := <-first; r.err != nil || r.res != string(enrich.ResultHoldHit) || r.pod != "default/"+name {
			t.Fatalf("cycle %d: the new pod's first export got %+v, want hold_hit default/%s", cycle, r, name)
		}
		if b := h.metric("podstamp_held_bytes"); b != 0 {
			t.Fatalf("cycle %d: %v bytes still held", cycle, b)
		}
		// The negative entry expires: the attacker is held again next cycle.
		clk.Step(negTTL + time.Second)
	}
	if n := h.refused(refusedPeerBytes); n != 10 {
		t.Errorf("peer_bytes refusals = %v, want 10", n)
	}
	if n := h.refused(refusedBudget); n != 0 {
		t.Errorf("budget refusals = %v, want 0", n)
	}
}

// Each peer's share is bounded in requests and bytes; past it only that peer
// is refused, at once.
func TestHoldPerPeerCaps(t *testing.T) {
	h := newHarness(t, Config{HoldTimeout: 10 * time.Second, HoldMaxBytes: 800,
		HoldMaxPerPeerRequests: 3, HoldMaxPerPeerBytes: 300})
	h.start()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var chans []<-chan resolved
	for range 3 {
		chans = append(chans, h.resolveAsync(ctx, "10.7.0.1", 0))
		h.waitHeld("10.7.0.1")
	}
	start := time.Now()
	if _, res, _ := h.c.ResolvePeer(ctx, enrich.Peer{Addr: netip.MustParseAddr("10.7.0.1")}, 0); res != enrich.ResultNoBudget {
		t.Fatalf("4th request of one peer: %v, want no_budget", res)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("no_budget took %v; must be immediate", d)
	}
	if n := h.refused(refusedPeerRequests); n != 1 {
		t.Errorf("peer_requests refusals = %v, want 1", n)
	}
	// Bytes: 300 fit, one more byte does not.
	chans = append(chans, h.resolveAsync(ctx, "10.7.0.2", 300))
	h.waitHeld("10.7.0.2")
	if _, res, _ := h.c.ResolvePeer(ctx, enrich.Peer{Addr: netip.MustParseAddr("10.7.0.2")}, 1); res != enrich.ResultNoBudget {
		t.Fatalf("past a peer's bytes: %v, want no_budget", res)
	}
	if n := h.refused(refusedPeerBytes); n != 1 {
		t.Errorf("peer_bytes refusals = %v, want 1", n)
	}
	// Another peer is still held.
	third := h.resolveAsync(ctx, "10.7.0.3", 300)
	h.waitHeld("10.7.0.3")
	// The global budget still applies: 600 of 800 are held.
	if _, res, _ := h.c.ResolvePeer(ctx, enrich.Peer{Addr: netip.MustParseAddr("10.7.0.4")}, 300); res != enrich.ResultNoBudget {
		t.Fatalf("past the global budget: %v, want no_budget", res)
	}
	if n := h.refused(refusedBudget); n != 1 {
		t.Errorf("budget refusals = %v, want 1", n)
	}
	var r resolution
	getJSON(t, h.c.DebugHandler(), "/debug/pods?ip=10.7.0.1", &r)
	if r.HeldRequests != 3 || r.HeldBytes != 0 || r.Result != "hold" || !r.Local {
		t.Errorf("debug of a peer at its cap: %+v", r)
	}
	h.create(mkPod(podSpec{name: "p1", ips: []string{"10.7.0.1"}}))
	h.create(mkPod(podSpec{name: "p2", ips: []string{"10.7.0.2"}}))
	h.create(mkPod(podSpec{name: "p3", ips: []string{"10.7.0.3"}}))
	for _, ch := range append(chans, third) {
		if r := <-ch; r.res != string(enrich.ResultHoldHit) {
			t.Errorf("got %+v, want hold_hit", r)
		}
	}
	h.c.holdMu.Lock()
	left := len(h.c.perPeer)
	h.c.holdMu.Unlock()
	if left != 0 || h.metric("podstamp_held_bytes") != 0 || h.metric("podstamp_held_requests") != 0 {
		t.Errorf("after release: %d peers, %v bytes, %v requests held", left,
			h.metric("podstamp_held_bytes"), h.metric("podstamp_held_requests"))
	}
}

func TestPerPeerConfig(t *testing.T) {
	d := Config{NodeName: "n", HoldMaxBytes: 800}.withDefaults()
	if d.HoldMaxPerPeerBytes != 100 || d.HoldMaxPerPeerRequests != 16 {
		t.Errorf("defaults: %d bytes, %d requests", d.HoldMaxPerPeerBytes, d.HoldMaxPerPeerRequests)
	}
	err := Config{NodeName: "n", HoldMaxPerPeerRequests: -1, HoldMaxPerPeerBytes: -1}.Validate()
	if err == nil {
		t.Fatal("negative per-peer caps accepted")
	}
	for _, want := range []string{"per-peer requests", "per-peer bytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// Live fails when the cache's lock is wedged, fast and without piling up
// probes, and recovers once the lock is free.
func TestLive(t *testing.T) {
	c, _ := newDirect(t, time.Minute)
	c.liveTimeout = 50 * time.Millisecond
	if err := c.Live(); err != nil {
		t.Fatalf("Live on an idle cache: %v", err)
	}
	for _, wedge := range []struct {
		name         string
		lock, unlock func()
	}{
		{"writer", c.mu.Lock, c.mu.Unlock},
		{"reader", c.mu.RLock, c.mu.RUnlock},
	} {
		wedge.lock()
		if err := c.Live(); err == nil {
			t.Fatalf("Live with a stuck %s: nil", wedge.name)
		}
		c.liveMu.Lock()
		probe := c.liveProbe
		c.liveMu.Unlock()
		if err := c.Live(); err == nil {
			t.Fatalf("Live with a stuck %s (second call): nil", wedge.name)
		}
		c.liveMu.Lock()
		same := c.liveProbe == probe
		c.liveMu.Unlock()
		if !same {
			t.Errorf("%s: a second probe was started while the first is stuck", wedge.name)
		}
		wedge.unlock()
		<-probe // the stuck probe gets the lock and goes
		if err := c.Live(); err != nil {
			t.Fatalf("Live after the %s let go: %v", wedge.name, err)
		}
	}
}
