package informer

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/informer/kubetypes"
)

// awaitPod waits until the cached pod ns/name satisfies ok, checking again
// after every pass of the metadata fill.
func awaitPod(t *testing.T, c *Cache, ns, name string, ok func(*enrich.Pod) bool) *enrich.Pod {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		next := c.meta.nextFill()
		p := c.ByName(ns, name)
		if p != nil && ok(p) {
			return p
		}
		select {
		case <-next:
		case <-deadline:
			t.Fatalf("pod %s/%s: %+v", ns, name, p)
			return nil
		}
	}
}

// slowMetaAPI answers namespace reads only when the test lets them
// through, and says when one is waiting.
type slowMetaAPI struct {
	*scriptAPI
	asked   chan string
	release chan struct{}
	mu      sync.Mutex
	gets    int
}

func (a *slowMetaAPI) GetNamespaceMetadata(ctx context.Context, name string) (*kubetypes.PartialObjectMetadata, error) {
	a.mu.Lock()
	a.gets++
	a.mu.Unlock()
	a.asked <- name
	select {
	case <-a.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &kubetypes.PartialObjectMetadata{ObjectMeta: kubetypes.ObjectMeta{Name: name, UID: "uid-" + name,
		Labels: map[string]string{"team": name}}}, nil
}

// TestMetadataReadOffTheWatchLoop: while a namespace read hangs, the watch
// loop goes on applying events, a request held for a pod of that namespace
// is released as soon as the pod is known (without the namespace's
// metadata), and the metadata is filled in once the read answers.
func TestMetadataReadOffTheWatchLoop(t *testing.T) {
	t.Parallel()
	api := &slowMetaAPI{scriptAPI: newScriptAPI(), asked: make(chan string, 8), release: make(chan struct{})}
	c, err := New(api, Config{NodeName: testNode, HoldTimeout: 20 * time.Second, Needs: enrich.Needs{NamespaceMetadata: true}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan string, 16)
	c.afterEvent = func(kind string, o *podObj) { events <- kind + " " + o.Name }
	held := make(chan netip.Addr, 1)
	c.onHold = func(ip netip.Addr) { held <- ip }
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	w := newChanWatch()
	api.listQ <- listAnswer{l: leanList("1", "")}
	api.watchQ <- watchAnswer{w: w}
	select {
	case <-c.syncDone:
	case <-time.After(10 * time.Second):
		t.Fatal("not synced")
	}

	type res struct {
		p   *enrich.Pod
		res enrich.Result
	}
	got := make(chan res, 1)
	go func() {
		p, r, _ := c.ResolvePeer(t.Context(), enrich.Peer{Addr: netip.MustParseAddr("10.9.0.1")}, 1)
		got <- res{p, r}
	}()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("request not held")
	}
	// The pod of the held request, in a namespace not read yet: its read
	// hangs.
	w.send(t, Event{Type: kubetypes.Added, Pod: mkPod(podSpec{ns: "slow", name: "a", ips: []string{"10.9.0.1"}})})
	select {
	case ns := <-api.asked:
		if ns != "slow" {
			t.Fatalf("read namespace %q", ns)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("namespace not read")
	}
	select {
	case r := <-got:
		if r.res != enrich.ResultHoldHit || r.p == nil || r.p.Name != "a" || r.p.NamespaceLabels != nil {
			t.Fatalf("held request: %+v (%s)", r.p, r.res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held request waits for the namespace read")
	}
	// Events of other pods are applied meanwhile.
	for _, name := range []string{"b", "c"} {
		w.send(t, Event{Type: kubetypes.Added, Pod: mkPod(podSpec{ns: "slow", name: name, ips: []string{"10.9.0.9"}})})
	}
	want := []string{"upsert a", "upsert b", "upsert c"}
	for _, wnt := range want {
		select {
		case e := <-events:
			if e != wnt {
				t.Fatalf("event %q, want %q", e, wnt)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %q not applied while a metadata read hangs", wnt)
		}
	}
	close(api.release)
	for _, name := range []string{"a", "b", "c"} {
		awaitPod(t, c, "slow", name, func(p *enrich.Pod) bool { return p.NamespaceLabels["team"] == "slow" })
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if api.gets != 1 {
		t.Errorf("%d namespace reads, want 1", api.gets)
	}
}
