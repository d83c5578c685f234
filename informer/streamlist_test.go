package informer

import (
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

// streamingWatches are the streaming lists (sendInitialEvents) among calls.
func streamingWatches(calls []fakeCall) (stream, plain []fakeCall) {
	for _, c := range calls {
		if c.Opts.SendInitialEvents {
			stream = append(stream, c)
		} else {
			plain = append(plain, c)
		}
	}
	return stream, plain
}

// TestStreamingList: against a server that streams lists (the fake, as
// Kubernetes 1.34), the cache syncs from one watch with sendInitialEvents
// and no LIST; a broken stream is resumed from the last resource version
// without another streaming list; a 410 makes it stream the list again,
// which deletes the pods that went away meanwhile and brings the new ones.
func TestStreamingList(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{},
		mkPod(podSpec{name: "a", ips: []string{"10.4.2.1"}}), mkPod(podSpec{name: "b", ips: []string{"10.4.2.2"}}),
		mkPod(podSpec{name: "elsewhere", node: "node-b", ips: []string{"10.4.9.1"}}))
	open := h.gateWatch(3, false) // the third watch opens only once the test let it
	h.start()
	if lists := h.api.Calls("list", "pods"); len(lists) != 0 {
		t.Fatalf("%d lists; a server that streams lists needs none", len(lists))
	}
	stream, plain := streamingWatches(h.api.Calls("watch", "pods"))
	if len(stream) != 1 || len(plain) != 0 {
		t.Fatalf("watches %+v", h.api.Calls("watch", "pods"))
	}
	if o := stream[0].Opts; o.ResourceVersion != "" || !o.AllowWatchBookmarks || o.FieldSelector != "spec.nodeName="+testNode {
		t.Errorf("streaming list asked with %+v", o)
	}
	for _, ip := range []string{"10.4.2.1", "10.4.2.2"} {
		if p := h.c.ByIP(netip.MustParseAddr(ip)); p == nil {
			t.Errorf("%s not cached after the streaming list", ip)
		}
	}
	if p := h.c.ByIP(netip.MustParseAddr("10.4.9.1")); p != nil {
		t.Errorf("another node's pod cached: %+v", p)
	}

	// Changes follow on the same watch.
	h.create(mkPod(podSpec{name: "c", ips: []string{"10.4.2.3"}}))
	h.waitEvent("upsert", "uid-c")
	// A broken stream is resumed from where it broke, not listed again.
	at := h.api.rvNow()
	h.api.BreakWatches()
	if !h.api.waitFor(10*time.Second, func() bool { return len(h.api.Calls("watch", "pods")) >= 2 && h.api.OpenWatches() > 0 }) {
		t.Fatal("no watch after the broken stream")
	}
	stream, plain = streamingWatches(h.api.Calls("watch", "pods"))
	if len(stream) != 1 || len(plain) != 1 || plain[0].Opts.ResourceVersion != at {
		t.Fatalf("after a broken stream: streaming %+v, plain %+v; want one plain watch from %s", stream, plain, at)
	}

	// The server ends that watch; meanwhile a is deleted, d created and the
	// history compacted: the resume gets 410 and the list is streamed again.
	h.api.EndWatches()
	if !h.api.waitFor(10*time.Second, func() bool { return len(h.api.Calls("watch", "pods")) >= 3 }) {
		t.Fatal("no third watch")
	}
	h.delete(mkPod(podSpec{name: "a"}))
	h.create(mkPod(podSpec{name: "d", ips: []string{"10.4.2.4"}}))
	h.api.Compact()
	open()
	h.waitEvent("upsert", "uid-d")
	h.waitEvent("delete", "uid-a")
	stream, _ = streamingWatches(h.api.Calls("watch", "pods"))
	if len(stream) != 2 {
		t.Errorf("%d streaming lists, want 2 (the second after the 410)", len(stream))
	}
	if lists := h.api.Calls("list", "pods"); len(lists) != 0 {
		t.Errorf("%d lists", len(lists))
	}
	h.c.mu.RLock()
	ea := h.c.byUID["uid-a"]
	h.c.mu.RUnlock()
	if ea == nil || ea.cls != classDeleted {
		t.Errorf("a after the second streaming list: %+v, want deleted (in grace)", ea)
	}
}

// TestStreamingListRefused: a server that refuses streaming lists (422, the
// WatchList feature off) gets a LIST and a WATCH instead, and is not asked
// to stream again when the cache lists again later.
func TestStreamingListRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{}, mkPod(podSpec{name: "a", ips: []string{"10.4.3.1"}}))
	h.api.RefuseStreamingLists()
	open := h.gateWatch(2, true) // the second plain watch opens only once the test let it
	h.start()
	if p := h.c.ByIP(netip.MustParseAddr("10.4.3.1")); p == nil {
		t.Fatal("a not cached")
	}
	if lists := h.api.Calls("list", "pods"); len(lists) != 1 {
		t.Fatalf("%d lists, want 1", len(lists))
	}
	if !strings.Contains(h.logs.String(), "does not stream lists") {
		t.Errorf("the fallback is not logged:\n%s", h.logs.String())
	}
	if n := h.metric("podstamp_cache_watch_errors_total"); n != 0 {
		t.Errorf("the refusal counted as %v watch errors", n)
	}
	// A 410 makes the cache list again: a LIST, not a streaming watch.
	if !h.api.waitFor(10*time.Second, func() bool { return h.api.OpenWatches() > 0 }) {
		t.Fatal("no watch open")
	}
	h.create(mkPod(podSpec{name: "b", ips: []string{"10.4.3.2"}}))
	h.waitEvent("upsert", "uid-b")
	h.api.EndWatches()
	if !h.api.waitFor(10*time.Second, func() bool { _, p := streamingWatches(h.api.Calls("watch", "pods")); return len(p) >= 2 }) {
		t.Fatal("no second watch")
	}
	h.create(mkPod(podSpec{name: "c", ips: []string{"10.4.3.3"}}))
	h.api.Compact()
	open()
	h.waitEvent("upsert", "uid-c")
	if lists := h.api.Calls("list", "pods"); len(lists) != 2 {
		t.Errorf("%d lists, want 2", len(lists))
	}
	if stream, _ := streamingWatches(h.api.Calls("watch", "pods")); len(stream) != 1 {
		t.Errorf("%d streaming lists asked, want only the first", len(stream))
	}
}

// TestStreamingListWithoutEndBookmark: a server too old to know
// sendInitialEvents ignores it and never sends the end-of-list bookmark;
// after initialEvents the cache lists instead, and serves from then on.
// Before that it is not synced, and a streaming list that breaks before its
// bookmark is streamed again, not resumed.
func TestStreamingListWithoutEndBookmark(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{}, mkPod(podSpec{name: "a", ips: []string{"10.4.4.1"}}))
	h.c.lw.initialEvents = 300 * time.Millisecond
	first, second := newChanWatch(), newChanWatch()
	var mu sync.Mutex
	n := 0
	h.api.Prepend("watch", "pods", func(c fakeCall) (bool, any, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		switch n {
		case 1:
			return true, first, nil
		case 2:
			return true, second, nil
		}
		return false, nil, nil
	})
	h.startNoWait()
	// The first streaming list breaks before its bookmark.
	first.send(t, Event{Type: kubetypes.Added, Pod: mkPod(podSpec{name: "a", ips: []string{"10.4.4.1"}})})
	close(first.ch)
	// The second never sends one: an old server's plain watch.
	second.send(t, Event{Type: kubetypes.Added, Pod: mkPod(podSpec{name: "a", ips: []string{"10.4.4.1"}})})
	select {
	case <-h.c.syncDone:
		t.Fatal("synced without an end-of-list bookmark")
	default:
	}
	h.waitSynced()
	h.api.waitFor(10*time.Second, func() bool { _, p := streamingWatches(h.api.Calls("watch", "pods")); return len(p) >= 1 })
	stream, plain := streamingWatches(h.api.Calls("watch", "pods"))
	if len(stream) != 2 || len(plain) != 1 {
		t.Errorf("streaming %d, plain %d; want 2 and then a plain watch after the list", len(stream), len(plain))
	}
	if lists := h.api.Calls("list", "pods"); len(lists) != 1 {
		t.Errorf("%d lists, want 1", len(lists))
	}
	if !strings.Contains(h.logs.String(), "does not stream lists") {
		t.Errorf("the fallback is not logged:\n%s", h.logs.String())
	}
}

// TestStreamingListErrors: a streaming list the server cannot take for now
// (503) is asked again after the backoff; one it answers with an ERROR
// event of its own (500, as Kubernetes 1.34 on an etcd without progress
// requests) makes the cache list instead, and the errors are counted.
func TestStreamingListErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{}, mkPod(podSpec{name: "a", ips: []string{"10.4.5.1"}}))
	refusal := newChanWatch()
	var mu sync.Mutex
	n := 0
	h.api.Prepend("watch", "pods", func(c fakeCall) (bool, any, error) {
		if !c.Opts.SendInitialEvents {
			return false, nil, nil
		}
		mu.Lock()
		defer mu.Unlock()
		n++
		switch n {
		case 1:
			return true, nil, apiError(http.StatusServiceUnavailable, "ServiceUnavailable", "the server is currently unable to handle the request")
		case 2:
			return true, refusal, nil
		}
		t.Errorf("streaming list asked %d times", n)
		return false, nil, nil
	})
	h.startNoWait()
	refusal.send(t, Event{Type: kubetypes.Error, Status: &kubetypes.Status{Status: "Failure", Code: http.StatusInternalServerError,
		Reason: "InternalError", Message: "a watch stream was requested by the client but the required storage feature RequestWatchProgress is disabled"}})
	close(refusal.ch)
	h.waitSynced()
	if p := h.c.ByIP(netip.MustParseAddr("10.4.5.1")); p == nil {
		t.Fatal("a not cached")
	}
	if lists := h.api.Calls("list", "pods"); len(lists) != 1 {
		t.Errorf("%d lists, want 1", len(lists))
	}
	if !strings.Contains(h.logs.String(), "RequestWatchProgress") {
		t.Errorf("the server's reason is not logged:\n%s", h.logs.String())
	}
	if n := h.metric("podstamp_cache_watch_errors_total"); n != 1 {
		t.Errorf("watch errors %v, want 1 (the 503)", n)
	}
}
