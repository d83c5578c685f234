package informer

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podstamp/podstamp/enrich"
)

// TestWatchBreaksAndResumes: the first watch is one the test controls and
// then breaks; the next watch attempt fails (API server away); then watches
// work again. Events that happened while no watch was open are caught up by
// the relist, and the cache serves throughout.
func TestWatchBreaksAndResumes(t *testing.T) {
	a := mkPod(podSpec{name: "a", ips: []string{"10.4.0.1"}})
	h := newHarness(t, Config{HoldTimeout: 20 * time.Second}, a)

	var mu sync.Mutex
	calls := 0
	first := watch.NewFake()
	failed := make(chan struct{})
	h.cs.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
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
	var fieldSel string
	h.cs.PrependReactor("list", "pods", func(act k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		fieldSel = act.(k8stesting.ListAction).GetListRestrictions().Fields.String()
		mu.Unlock()
		return false, nil, nil
	})
	h.start()
	mu.Lock()
	if fieldSel != "spec.nodeName="+testNode {
		t.Errorf("list field selector %q", fieldSel)
	}
	mu.Unlock()

	// The controlled watch delivers one event, then the connection breaks.
	b := mkPod(podSpec{name: "b", ips: []string{"10.4.0.2"}})
	first.Add(b)
	h.waitEvent("upsert", "uid-b")
	first.Stop()
	<-failed

	// Meanwhile (no watch open): a is deleted, c is created. Nobody is told.
	ctx := context.Background()
	if err := h.cs.Tracker().Delete(podsGVR, "default", "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.cs.Tracker().Add(mkPod(podSpec{name: "c", ips: []string{"10.4.0.3"}})); err != nil {
		t.Fatal(err)
	}
	// The cache keeps serving what it has while the watch is down.
	if p, res, _ := h.c.ResolvePeer(ctx, enrich.Peer{Addr: netip.MustParseAddr("10.4.0.2")}, 1); p == nil || res != enrich.ResultHit {
		t.Fatalf("during the outage: %v %v", p, res)
	}

	// c is caught up by the relist, which also releases a request held for it.
	got := h.resolveAsync(ctx, "10.4.0.3", 1)
	if r := <-got; r.res != string(enrich.ResultHoldHit) && r.res != string(enrich.ResultHit) || r.pod != "default/c" {
		t.Fatalf("c after relist: %+v", r)
	}
	// The missed delete of a arrives as a tombstone: a is deleted (in grace).
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
