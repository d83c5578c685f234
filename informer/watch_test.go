package informer

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/informer/kubetypes"
)

// TestWatchBreaksAndResumes: the first watch is one the test controls and
// then breaks; the next watch attempt fails (API server away); then watches
// work again. Events that happened while no watch was open are caught up by
// the relist, and the cache serves throughout.
func TestWatchBreaksAndResumes(t *testing.T) {
	t.Parallel()
	a := mkPod(podSpec{name: "a", ips: []string{"10.4.0.1"}})
	h := newHarness(t, Config{HoldTimeout: 20 * time.Second}, a)

	var mu sync.Mutex
	calls := 0
	first := newChanWatch()
	failed := make(chan struct{})
	h.api.Prepend("watch", "pods", func(fakeCall) (bool, any, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		switch calls {
		case 1:
			return true, first, nil
		case 2:
			close(failed)
			return true, nil, errors.New("dial tcp: API server unavailable")
		}
		return false, nil, nil // the fake's own watch from now on
	})
	// The relist after the failed watch waits until the test changed the
	// pods, so that it is the relist that finds the changes.
	changed := make(chan struct{})
	relist := sync.OnceFunc(func() { close(changed) })
	t.Cleanup(relist) // before the harness stops
	lists := 0
	h.api.Prepend("list", "pods", func(fakeCall) (bool, any, error) {
		mu.Lock()
		lists++
		n := lists
		mu.Unlock()
		if n == 2 {
			<-changed
		}
		return false, nil, nil
	})
	h.start()
	if lists := h.api.Calls("list", "pods"); len(lists) == 0 || lists[0].Opts.FieldSelector != "spec.nodeName="+testNode {
		t.Errorf("lists %+v", lists)
	}

	// The controlled watch delivers one event, then the connection breaks.
	b := mkPod(podSpec{name: "b", ips: []string{"10.4.0.2"}})
	first.send(t, Event{Type: kubetypes.Added, Pod: b})
	h.waitEvent("upsert", "uid-b")
	close(first.ch)
	<-failed

	// Meanwhile (no watch open): a is deleted, c is created. Nobody is told.
	ctx := context.Background()
	h.delete(mkPod(podSpec{name: "a"}))
	h.create(mkPod(podSpec{name: "c", ips: []string{"10.4.0.3"}}))
	// The cache keeps serving what it has while the watch is down.
	if p, res, _ := h.c.ResolvePeer(ctx, enrich.Peer{Addr: netip.MustParseAddr("10.4.0.2")}, 1); p == nil || res != enrich.ResultHit {
		t.Fatalf("during the outage: %v %v", p, res)
	}
	relist()

	// c is caught up by the relist, which also releases a request held for it.
	got := h.resolveAsync(ctx, "10.4.0.3", 1)
	if r := <-got; r.res != string(enrich.ResultHoldHit) && r.res != string(enrich.ResultHit) || r.pod != "default/c" {
		t.Fatalf("c after relist: %+v", r)
	}
	// The relist no longer has a: a is deleted (in grace).
	h.waitEvent("delete", "uid-a")
	h.c.mu.RLock()
	ea := h.c.byUID["uid-a"]
	h.c.mu.RUnlock()
	if ea == nil || ea.cls != classDeleted {
		t.Fatalf("a after relist: %+v", ea)
	}
	// And the watch works again.
	h.create(mkPod(podSpec{name: "d", ips: []string{"10.4.0.4"}}))
	h.waitEvent("upsert", "uid-d")

	if n := h.metric("podstamp_cache_watch_errors_total"); n < 1 {
		t.Errorf("watch errors = %v", n)
	}
	if !strings.Contains(h.logs.String(), "pod watch failed") {
		t.Errorf("watch failure not logged:\n%s", h.logs.String())
	}
}
