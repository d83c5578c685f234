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
	h.api.RefuseStreamingLists() // the LIST and WATCH path

	var mu sync.Mutex
	calls := 0
	first := newChanWatch()
	failed := make(chan struct{})
	h.api.Prepend("watch", "pods", func(c fakeCall) (bool, any, error) {
		if c.Opts.SendInitialEvents {
			return false, nil, nil
		}
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

// TestWatchResumesAndRelistsOnFakeServer runs the cache against FakeAPI's
// own resource versions: a bookmark moves the version the cache resumes
// from; a broken stream is resumed from there without a list; a watch from
// a version the server has compacted away (410 Expired) makes the cache
// list again from the latest state, which brings what it missed.
func TestWatchResumesAndRelistsOnFakeServer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{}, mkPod(podSpec{name: "a", ips: []string{"10.4.1.1"}}))
	h.api.RefuseStreamingLists() // the LIST and WATCH path; the refused streaming list is not counted
	open := h.gateWatch(3, true) // the third watch opens only once the test let it
	h.start()
	// awaitWatches waits until the cache asked for n watches and, if open,
	// one of them is open.
	plainWatches := func() []fakeCall {
		var ws []fakeCall
		for _, c := range h.api.Calls("watch", "pods") {
			if !c.Opts.SendInitialEvents {
				ws = append(ws, c)
			}
		}
		return ws
	}
	awaitWatches := func(n int, open bool) {
		t.Helper()
		if !h.api.waitFor(10*time.Second, func() bool {
			return len(plainWatches()) >= n && (!open || h.api.OpenWatches() > 0)
		}) {
			t.Fatalf("%d watches asked for, %d open; want %d", len(plainWatches()), h.api.OpenWatches(), n)
		}
	}
	awaitWatches(1, true)
	h.create(mkPod(podSpec{name: "b", ips: []string{"10.4.1.2"}}))
	h.waitEvent("upsert", "uid-b")
	// Unrelated changes (another node's pod) move the server's version;
	// the bookmark tells the cache.
	h.create(mkPod(podSpec{name: "elsewhere", node: "node-b", ips: []string{"10.4.9.9"}}))
	h.api.Bookmark()
	bookmarked := h.api.rvNow()
	h.api.BreakWatches()
	awaitWatches(2, true)
	ws := plainWatches()
	if rv := ws[1].Opts.ResourceVersion; rv != bookmarked {
		t.Errorf("resumed from %q, want the bookmark's %q", rv, bookmarked)
	}
	if n := len(h.api.Calls("list", "pods")); n != 1 {
		t.Errorf("%d lists after a broken stream, want 1 (resumed, not listed)", n)
	}

	// The server ends the watch; before the cache watches again, c is
	// created and the history compacted.
	h.api.EndWatches()
	awaitWatches(3, false)
	h.create(mkPod(podSpec{name: "c", ips: []string{"10.4.1.3"}}))
	h.api.Compact()
	open()
	h.waitEvent("upsert", "uid-c")
	lists := h.api.Calls("list", "pods")
	if len(lists) != 2 || lists[1].Opts.ResourceVersion != "" {
		t.Errorf("lists %+v, want a second one from the latest state", lists)
	}
	if n := h.metric("podstamp_cache_watch_errors_total"); n != 2 {
		t.Errorf("watch errors %v, want 2 (the broken stream and the 410)", n)
	}
	if p := h.c.ByIP(netip.MustParseAddr("10.4.1.3")); p == nil || p.Name != "c" {
		t.Errorf("c after the relist: %+v", p)
	}
}

// TestFakeAPIPages: FakeAPI pages a list as the server does, refuses a
// continue token older than a compaction (410) and a field selector it does
// not know (400) instead of ignoring it, and the cache's paged list reads
// every page.
func TestFakeAPIPages(t *testing.T) {
	t.Parallel()
	api := NewFakeAPI(mkPod(podSpec{name: "a"}), mkPod(podSpec{name: "b"}), mkPod(podSpec{name: "c"}),
		mkPod(podSpec{name: "d", node: "node-b"}))
	ctx := t.Context()
	sel := "spec.nodeName=" + testNode
	var names []string
	opts := ListOptions{FieldSelector: sel, Limit: 2}
	for {
		l, err := api.ListPods(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range l.Items {
			names = append(names, p.Name)
		}
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
	}
	if strings.Join(names, ",") != "a,b,c" {
		t.Errorf("pages %q, want a,b,c", names)
	}
	l, err := api.ListPods(ctx, ListOptions{FieldSelector: sel, Limit: 1})
	if err != nil || l.Continue == "" {
		t.Fatalf("first page: %+v %v", l, err)
	}
	if err := api.CreatePod(mkPod(podSpec{name: "e"})); err != nil {
		t.Fatal(err)
	}
	api.Compact()
	if _, err := api.ListPods(ctx, ListOptions{FieldSelector: sel, Limit: 1, Continue: l.Continue}); !IsGone(err) {
		t.Errorf("continue after compaction: %v, want 410", err)
	}
	if _, err := api.ListPods(ctx, ListOptions{FieldSelector: "metadata.name=a"}); err == nil {
		t.Error("an unknown field selector was ignored")
	}

	c, err := New(api, Config{NodeName: testNode}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	all, err := c.listAll(ctx, sel, "0")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(all.Items); got != 4 {
		t.Errorf("listAll read %d pods, want 4", got)
	}
}
