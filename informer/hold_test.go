package informer

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

func TestHoldReleasedByPodEvent(t *testing.T) {
	h := newHarness(t, Config{HoldTimeout: 10 * time.Second})
	h.start()

	got := h.resolveAsync(context.Background(), "10.1.0.7", 1000)
	h.waitHeld("10.1.0.7")
	if b := h.metric("podstamp_held_bytes"); b != 1000 {
		t.Errorf("held bytes = %v, want 1000", b)
	}
	if n := h.metric("podstamp_held_requests"); n != 1 {
		t.Errorf("held requests = %v, want 1", n)
	}
	created := time.Now()
	h.create(mkPod(podSpec{name: "late", ips: []string{"10.1.0.7"}}))
	r := <-got
	released := time.Since(created)
	if r.err != nil || r.res != string(enrich.ResultHoldHit) || r.pod != "default/late" {
		t.Fatalf("got %+v, want hold_hit default/late", r)
	}
	// Released by the informer event, not by the 10s timeout.
	if released > time.Second {
		t.Errorf("released %v after the pod appeared; want well under the 10s hold timeout", released)
	}
	if b := h.metric("podstamp_held_bytes"); b != 0 {
		t.Errorf("held bytes after release = %v", b)
	}
	if n := h.metric("podstamp_hold_duration_seconds"); n != 1 {
		t.Errorf("hold latency samples = %v, want 1", n)
	}
	// Now a plain hit.
	if p, res, _ := h.c.ResolvePeer(context.Background(), enrich.Peer{Addr: netip.MustParseAddr("10.1.0.7")}, 10); p == nil || res != enrich.ResultHit {
		t.Errorf("second resolve: %v %v, want hit", p, res)
	}
}

func TestHoldManyRequestsOneAddress(t *testing.T) {
	h := newHarness(t, Config{HoldTimeout: 10 * time.Second})
	h.start()
	var chans []<-chan resolved
	for range 5 {
		chans = append(chans, h.resolveAsync(context.Background(), "10.1.0.8", 10))
		h.waitHeld("10.1.0.8")
	}
	h.create(mkPod(podSpec{name: "p8", ips: []string{"10.1.0.8"}}))
	for _, ch := range chans {
		if r := <-ch; r.res != string(enrich.ResultHoldHit) || r.pod != "default/p8" {
			t.Errorf("got %+v", r)
		}
	}
	h.c.mu.RLock()
	defer h.c.mu.RUnlock()
	if len(h.c.waiters) != 0 {
		t.Errorf("waiters left: %d", len(h.c.waiters))
	}
}

func TestHoldTimeoutThenNegativeCache(t *testing.T) {
	h := newHarness(t, Config{HoldTimeout: 50 * time.Millisecond, HoldNegativeTTL: time.Hour})
	h.start()
	r := <-h.resolveAsync(context.Background(), "10.1.0.9", 100)
	if r.err != nil || r.res != string(enrich.ResultHoldTimeout) || r.pod != "" {
		t.Fatalf("got %+v, want hold_timeout without pod", r)
	}
	if r.elapsed < 50*time.Millisecond {
		t.Errorf("returned after %v, before the hold timeout", r.elapsed)
	}
	// Negatively cached: answered at once, not held.
	start := time.Now()
	p, res, err := h.c.ResolvePeer(context.Background(), enrich.Peer{Addr: netip.MustParseAddr("10.1.0.9")}, 100)
	if p != nil || res != enrich.ResultUnknown || err != nil {
		t.Fatalf("negative: %v %v %v, want unknown", p, res, err)
	}
	if d := time.Since(start); d > 40*time.Millisecond {
		t.Errorf("negative answer took %v", d)
	}
	// The informer seeing the address clears the negative entry.
	h.create(mkPod(podSpec{name: "p9", ips: []string{"10.1.0.9"}}))
	h.waitEvent("upsert", "uid-p9")
	if p, res, _ := h.c.ResolvePeer(context.Background(), enrich.Peer{Addr: netip.MustParseAddr("10.1.0.9")}, 100); p == nil || p.Name != "p9" || res != enrich.ResultHit {
		t.Fatalf("after the pod appeared: %v %v, want hit p9", p, res)
	}
	h.c.mu.RLock()
	_, neg := h.c.negative[netip.MustParseAddr("10.1.0.9")]
	h.c.mu.RUnlock()
	if neg {
		t.Error("negative entry not cleared by the informer event")
	}
}

func TestNegativeCacheExpires(t *testing.T) {
	h := newHarness(t, Config{HoldTimeout: 20 * time.Millisecond, HoldNegativeTTL: 200 * time.Millisecond})
	h.start()
	if r := <-h.resolveAsync(context.Background(), "10.1.0.10", 1); r.res != string(enrich.ResultHoldTimeout) {
		t.Fatalf("got %+v", r)
	}
	if _, res, _ := h.c.ResolvePeer(context.Background(), enrich.Peer{Addr: netip.MustParseAddr("10.1.0.10")}, 1); res != enrich.ResultUnknown {
		t.Fatalf("got %v, want unknown", res)
	}
	h.c.mu.Lock()
	h.c.negative[netip.MustParseAddr("10.1.0.10")] = time.Now().Add(-time.Millisecond) // TTL passed
	h.c.mu.Unlock()
	if r := <-h.resolveAsync(context.Background(), "10.1.0.10", 1); r.res != string(enrich.ResultHoldTimeout) {
		t.Fatalf("after the negative TTL: %+v, want held again (hold_timeout)", r)
	}
}

func TestHoldBudget(t *testing.T) {
	// The per-peer share is the whole budget here: this test is about the
	// global budget (TestHoldPerPeerCaps is about the shares).
	h := newHarness(t, Config{HoldTimeout: 10 * time.Second, HoldMaxBytes: 100, HoldMaxPerPeerBytes: 100})
	h.start()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := h.resolveAsync(ctx, "10.1.0.11", 80)
	h.waitHeld("10.1.0.11")

	start := time.Now()
	p, res, err := h.c.ResolvePeer(context.Background(), enrich.Peer{Addr: netip.MustParseAddr("10.1.0.12")}, 30)
	if p != nil || res != enrich.ResultNoBudget || err != nil {
		t.Fatalf("over budget: %v %v %v, want no_budget", p, res, err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("no_budget took %v; must be immediate", d)
	}
	// A request that fits in what is left is still held.
	second := h.resolveAsync(ctx, "10.1.0.12", 20)
	h.waitHeld("10.1.0.12")
	if b := h.metric("podstamp_held_bytes"); b != 100 {
		t.Errorf("held bytes = %v, want 100", b)
	}
	h.create(mkPod(podSpec{name: "p11", ips: []string{"10.1.0.11"}}))
	h.create(mkPod(podSpec{name: "p12", ips: []string{"10.1.0.12"}}))
	if r := <-first; r.res != string(enrich.ResultHoldHit) {
		t.Errorf("first: %+v", r)
	}
	if r := <-second; r.res != string(enrich.ResultHoldHit) {
		t.Errorf("second: %+v", r)
	}
	// A request larger than the whole budget is never held.
	if _, res, _ := h.c.ResolvePeer(context.Background(), enrich.Peer{Addr: netip.MustParseAddr("10.1.0.13")}, 101); res != enrich.ResultNoBudget {
		t.Errorf("oversized: %v, want no_budget", res)
	}
}

func TestCancelWhileHeld(t *testing.T) {
	h := newHarness(t, Config{HoldTimeout: 10 * time.Second})
	h.start()
	ctx, cancel := context.WithCancel(context.Background())
	got := h.resolveAsync(ctx, "10.1.0.14", 500)
	h.waitHeld("10.1.0.14")
	cancel()
	r := <-got
	if !errors.Is(r.err, context.Canceled) || r.pod != "" || r.res != "" {
		t.Fatalf("got %+v, want context.Canceled and nothing else", r)
	}
	if r.elapsed > time.Second {
		t.Errorf("cancel took %v", r.elapsed)
	}
	if b := h.metric("podstamp_held_bytes"); b != 0 {
		t.Errorf("held bytes after cancel = %v", b)
	}
	// A canceled hold marks the address negative, like a timed-out one: a
	// sender that gives up just before the timeout and sends again must not
	// keep its share of the hold budget spent.
	h.c.mu.RLock()
	_, neg := h.c.negative[netip.MustParseAddr("10.1.0.14")]
	nw := len(h.c.waiters)
	h.c.mu.RUnlock()
	if !neg || nw != 0 {
		t.Errorf("negative=%v waiters=%d after cancel, want negative and no waiters", neg, nw)
	}
	if p, res, err := h.c.ResolvePeer(context.Background(), enrich.Peer{Addr: netip.MustParseAddr("10.1.0.14")}, 500); p != nil || res != enrich.ResultUnknown || err != nil {
		t.Errorf("after the cancel: %v %v %v, want unknown at once", p, res, err)
	}
}

// A hold canceled after its pod appeared does not mark the address negative.
func TestCancelAfterPodAppearedNotNegative(t *testing.T) {
	h := newHarness(t, Config{HoldTimeout: 10 * time.Second})
	h.start()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	peer := netip.MustParseAddr("10.1.0.16")
	got := h.resolveAsync(ctx, peer.String(), 10)
	h.waitHeld(peer.String())
	// Take the lock so that the pod's event and the cancel are both seen by
	// the waiter only after the pod is indexed.
	h.c.mu.Lock()
	h.c.byIP.add(peer, &entry{obj: toPodObj(mkPod(podSpec{name: "p16", ips: []string{peer.String()}})), cls: classLive})
	cancel()
	h.c.mu.Unlock()
	r := <-got
	if r.err == nil && r.res != string(enrich.ResultHoldHit) {
		t.Fatalf("got %+v, want canceled or hold_hit", r)
	}
	h.c.mu.RLock()
	_, neg := h.c.negative[peer]
	h.c.mu.RUnlock()
	if neg {
		t.Error("address marked negative although its pod appeared")
	}
}

func TestHoldBeforeFirstSync(t *testing.T) {
	h := newHarness(t, Config{HoldTimeout: 10 * time.Second}, mkPod(podSpec{name: "early", ips: []string{"10.1.0.15"}}))
	if err := h.c.Ready(); err == nil {
		t.Fatal("Ready before Run")
	}
	got := h.resolveAsync(context.Background(), "10.1.0.15", 1)
	h.waitHeld("10.1.0.15") // not started: the address is unknown, so it is held
	h.start()
	r := <-got
	if r.res != string(enrich.ResultHoldHit) || r.pod != "default/early" {
		t.Fatalf("got %+v, want hold_hit default/early", r)
	}
	if err := h.c.Ready(); err != nil {
		t.Fatalf("Ready after sync: %v", err)
	}
	if s := h.metric("podstamp_cache_synced"); s != 1 {
		t.Errorf("synced gauge = %v", s)
	}
	if n := h.metric("podstamp_cache_pods"); n != 1 {
		t.Errorf("pods gauge = %v", n)
	}
}

func TestLoopbackAddressesAreOrdinary(t *testing.T) {
	h := newHarness(t, Config{HoldTimeout: 10 * time.Second})
	h.start()
	got := h.resolveAsync(context.Background(), "127.0.0.11", 1)
	h.waitHeld("127.0.0.11")
	h.create(mkPod(podSpec{name: "lo", ips: []string{"127.0.0.11"}}))
	if r := <-got; r.res != string(enrich.ResultHoldHit) || r.pod != "default/lo" {
		t.Fatalf("got %+v", r)
	}
}

// TestHoldReleasedByStatusUpdate is the usual start-up race: the pod exists
// (pending, no address yet) when its first export arrives; the kubelet's
// status update with the address releases the request.
func TestHoldReleasedByStatusUpdate(t *testing.T) {
	h := newHarness(t, Config{HoldTimeout: 10 * time.Second})
	h.start()
	s := podSpec{name: "starting", phase: "Pending"}
	h.create(mkPod(s))
	h.waitEvent("upsert", "uid-starting")
	got := h.resolveAsync(context.Background(), "10.1.0.30", 100)
	h.waitHeld("10.1.0.30")
	s.ips, s.phase = []string{"10.1.0.30"}, "Running"
	updated := time.Now()
	h.update(mkPod(s))
	r := <-got
	if r.res != string(enrich.ResultHoldHit) || r.pod != "default/starting" {
		t.Fatalf("got %+v", r)
	}
	if d := time.Since(updated); d > time.Second {
		t.Errorf("released %v after the update; want well under the 10s timeout", d)
	}
}

// A connection accepted after a pod's deletion was seen cannot be that pod's:
// its address may already belong to a new pod whose status has not arrived.
// Such a request is held until the new pod appears, instead of being stamped
// with the deleted pod during its grace period. A connection accepted before
// the deletion still resolves to the deleted pod (late data).
func TestDeletedPodOnlyOwnsOlderConnections(t *testing.T) {
	h := newHarness(t, Config{HoldTimeout: 10 * time.Second, PodDeleteGrace: time.Hour})
	h.start()
	old := mkPod(podSpec{name: "old", ips: []string{"10.1.0.30"}})
	h.create(old)
	h.waitEvent("upsert", string(old.UID))
	oldConn := time.Now()
	h.delete(old)
	h.waitEvent("delete", string(old.UID))

	if r := <-h.resolveConnAsync(context.Background(), oldConn, "10.1.0.30", 10); r.res != string(enrich.ResultHit) || r.pod != "default/old" {
		t.Fatalf("connection from before the delete: got %+v, want hit default/old", r)
	}
	if r := <-h.resolveAsync(context.Background(), "10.1.0.30", 10); r.res != string(enrich.ResultHit) || r.pod != "default/old" {
		t.Fatalf("unknown connection time: got %+v, want hit default/old (grace)", r)
	}

	newConn := time.Now()
	got := h.resolveConnAsync(context.Background(), newConn, "10.1.0.30", 10)
	h.waitHeld("10.1.0.30")
	h.create(mkPod(podSpec{name: "new", ips: []string{"10.1.0.30"}}))
	if r := <-got; r.err != nil || r.res != string(enrich.ResultHoldHit) || r.pod != "default/new" {
		t.Fatalf("connection from after the delete: got %+v, want hold_hit default/new", r)
	}
}

func TestDeletedPodNewConnectionTimesOutUnstamped(t *testing.T) {
	h := newHarness(t, Config{HoldTimeout: 50 * time.Millisecond, PodDeleteGrace: time.Hour})
	h.start()
	old := mkPod(podSpec{name: "old", ips: []string{"10.1.0.31"}})
	h.create(old)
	h.waitEvent("upsert", string(old.UID))
	h.delete(old)
	h.waitEvent("delete", string(old.UID))
	r := <-h.resolveConnAsync(context.Background(), time.Now(), "10.1.0.31", 10)
	if r.res != string(enrich.ResultHoldTimeout) || r.pod != "" {
		t.Fatalf("got %+v, want hold_timeout and no pod", r)
	}
}

// The same rule for a pod that finished (Succeeded/Failed) and stays in the
// API, as Job pods do: it owns its address only for connections accepted
// before the cache saw it finish.
func TestFinishedPodOnlyOwnsOlderConnections(t *testing.T) {
	h := newHarness(t, Config{HoldTimeout: 10 * time.Second})
	h.start()
	spec := podSpec{name: "job", ips: []string{"10.1.0.32"}}
	job := mkPod(spec)
	h.create(job)
	h.waitEvent("upsert", string(job.UID))
	oldConn := time.Now()
	spec.phase = kubetypes.PodSucceeded
	h.update(mkPod(spec))
	h.waitEvent("upsert", string(job.UID))

	if r := <-h.resolveConnAsync(context.Background(), oldConn, "10.1.0.32", 10); r.res != string(enrich.ResultHit) || r.pod != "default/job" {
		t.Fatalf("connection from before it finished: got %+v, want hit default/job", r)
	}
	got := h.resolveConnAsync(context.Background(), time.Now(), "10.1.0.32", 10)
	h.waitHeld("10.1.0.32")
	h.create(mkPod(podSpec{name: "next", ips: []string{"10.1.0.32"}}))
	if r := <-got; r.err != nil || r.res != string(enrich.ResultHoldHit) || r.pod != "default/next" {
		t.Fatalf("connection from after it finished: got %+v, want hold_hit default/next", r)
	}
}
