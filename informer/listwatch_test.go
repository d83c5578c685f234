package informer

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

// scriptAPI answers lists and watches with what a test queued, and records
// the options of every call. Its reads of nodes and metadata are not used
// (the cache needs none by default) except the node's.
type scriptAPI struct {
	API
	mu      sync.Mutex
	lists   []ListOptions
	watches []ListOptions
	listQ   chan listAnswer
	watchQ  chan watchAnswer
}

type listAnswer struct {
	l   *kubetypes.PodList
	err error
}

type watchAnswer struct {
	w   *chanWatch
	err error
}

func newScriptAPI() *scriptAPI {
	return &scriptAPI{listQ: make(chan listAnswer, 8), watchQ: make(chan watchAnswer, 8)}
}

func (s *scriptAPI) ListPods(ctx context.Context, o ListOptions) (*kubetypes.PodList, error) {
	s.mu.Lock()
	s.lists = append(s.lists, o)
	s.mu.Unlock()
	select {
	case a := <-s.listQ:
		return a.l, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *scriptAPI) WatchPods(ctx context.Context, o ListOptions) (Watcher, error) {
	if o.SendInitialEvents {
		// As a server with the WatchList feature off: these scripts are of
		// the LIST and WATCH path.
		return nil, &StatusError{Status: kubetypes.Status{Code: http.StatusUnprocessableEntity, Reason: "Invalid",
			Message: "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"}}
	}
	s.mu.Lock()
	s.watches = append(s.watches, o)
	s.mu.Unlock()
	select {
	case a := <-s.watchQ:
		if a.err != nil {
			return nil, a.err
		}
		return a.w, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// GetNode: the node is read once at start; it does not exist here.
func (s *scriptAPI) GetNode(context.Context, string) (*kubetypes.Node, error) {
	return nil, &StatusError{Status: kubetypes.Status{Code: 404, Reason: kubetypes.StatusReasonNotFound}}
}

func (s *scriptAPI) calls() (lists, watches []ListOptions) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ListOptions(nil), s.lists...), append([]ListOptions(nil), s.watches...)
}

// chanWatch is a Watcher whose events the test sends.
type chanWatch struct {
	ch   chan Event
	once sync.Once
	stop chan struct{}
}

func newChanWatch() *chanWatch {
	return &chanWatch{ch: make(chan Event), stop: make(chan struct{})}
}

func (w *chanWatch) ResultChan() <-chan Event { return w.ch }
func (w *chanWatch) Stop()                    { w.once.Do(func() { close(w.stop) }) }

// send delivers ev unless the cache stopped the watch.
func (w *chanWatch) send(t *testing.T, ev Event) {
	t.Helper()
	select {
	case w.ch <- ev:
	case <-w.stop:
		t.Fatalf("watch stopped before %s was delivered", ev.Type)
	case <-time.After(10 * time.Second):
		t.Fatalf("nobody read %s", ev.Type)
	}
}

func leanList(rv, cont string, pods ...*kubetypes.Pod) *kubetypes.PodList {
	l := &kubetypes.PodList{ListMeta: kubetypes.ListMeta{ResourceVersion: rv, Continue: cont}}
	for _, p := range pods {
		l.Items = append(l.Items, *p)
	}
	return l
}

// TestListWatchLoop drives the cache's list and watch through pages, a
// bookmark, a watch the server ends, a watch that expired (410) and a
// failed list, and checks what it asked for and what it did with the
// answers.
func TestListWatchLoop(t *testing.T) {
	t.Parallel()
	api := newScriptAPI()
	var logs syncBuffer
	c, err := New(api, Config{NodeName: testNode}, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.lw.backoffInitial = time.Millisecond
	events := make(chan string, 64)
	c.afterEvent = func(kind string, o *podObj) { events <- kind + " " + string(o.UID) }
	waitEvent := func(want string) {
		t.Helper()
		select {
		case got := <-events:
			if got != want {
				t.Fatalf("event %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event; want %q", want)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	a := mkPod(podSpec{name: "a", ips: []string{"10.7.0.1"}})
	b := mkPod(podSpec{name: "b", ips: []string{"10.7.0.2"}})
	cc := mkPod(podSpec{name: "c", ips: []string{"10.7.0.3"}})

	// Two pages, then a watch from the list's resource version.
	api.listQ <- listAnswer{l: leanList("5", "page2", a)}
	api.listQ <- listAnswer{l: leanList("7", "", b)}
	w1 := newChanWatch()
	api.watchQ <- watchAnswer{w: w1}
	waitEvent("upsert uid-a")
	waitEvent("upsert uid-b")
	select {
	case <-c.syncDone:
	case <-time.After(10 * time.Second):
		t.Fatal("not synced after the list")
	}
	// A bookmark moves the resource version on; an event is applied.
	w1.send(t, Event{Type: kubetypes.Bookmark, Pod: &kubetypes.Pod{ObjectMeta: kubetypes.ObjectMeta{ResourceVersion: "9"}}})
	w1.send(t, Event{Type: kubetypes.Added, Pod: cc})
	waitEvent("upsert uid-c")
	// The server ends the watch (its timeout): watched again from "c"'s
	// version, without a list.
	cc11 := *cc
	cc11.ResourceVersion = "11"
	w1.send(t, Event{Type: kubetypes.Modified, Pod: &cc11})
	waitEvent("upsert uid-c")
	w2 := newChanWatch()
	api.watchQ <- watchAnswer{w: w2}
	close(w1.ch)
	// The second watch expires: 410, listed again from scratch at once.
	w2.send(t, Event{Type: kubetypes.Error, Status: &kubetypes.Status{Code: 410, Reason: kubetypes.StatusReasonExpired, Message: "too old resource version: 11 (12)"}})
	// Meanwhile a was deleted and nobody said so: the list no longer has it.
	api.listQ <- listAnswer{l: leanList("20", "", b, cc)}
	waitEvent("upsert uid-b")
	waitEvent("upsert uid-c")
	waitEvent("delete uid-a")
	// The next watch cannot be opened (API server away): counted, and after
	// a backoff listed again; that list fails too, then works.
	api.watchQ <- watchAnswer{err: errors.New("dial tcp: connection refused")}
	api.listQ <- listAnswer{err: errors.New("dial tcp: connection refused")}
	w3 := newChanWatch()
	api.listQ <- listAnswer{l: leanList("30", "", b, cc)}
	api.watchQ <- watchAnswer{w: w3}
	waitEvent("upsert uid-b")
	waitEvent("upsert uid-c")
	w3.send(t, Event{Type: kubetypes.Deleted, Pod: b})
	waitEvent("delete uid-b")

	lists, watches := api.calls()
	type call struct{ rv, cont string }
	var gotLists []call
	for _, o := range lists {
		if o.FieldSelector != "spec.nodeName="+testNode || o.Limit != listPageSize {
			t.Errorf("list options %+v", o)
		}
		gotLists = append(gotLists, call{o.ResourceVersion, o.Continue})
	}
	// First list from the watch cache ("0"), its second page by token; after
	// the 410 the latest state (""); after the failed watch, the last list's
	// version "20", then again "20" after the failed list.
	wantLists := []call{{"0", ""}, {"", "page2"}, {"", ""}, {"20", ""}, {"20", ""}}
	if len(gotLists) != len(wantLists) {
		t.Fatalf("lists %+v, want %+v", gotLists, wantLists)
	}
	for i := range wantLists {
		if gotLists[i] != wantLists[i] {
			t.Errorf("list %d: %+v, want %+v", i, gotLists[i], wantLists[i])
		}
	}
	var gotRVs []string
	for _, o := range watches {
		if o.FieldSelector != "spec.nodeName="+testNode || !o.AllowWatchBookmarks || o.TimeoutSeconds < 300 || o.TimeoutSeconds > 600 {
			t.Errorf("watch options %+v", o)
		}
		gotRVs = append(gotRVs, o.ResourceVersion)
	}
	if want := []string{"7", "11", "20", "30"}; strings.Join(gotRVs, ",") != strings.Join(want, ",") {
		t.Errorf("watched from %q, want %q", gotRVs, want)
	}
	// The 410, the failed watch and the failed list.
	if n := testutil.ToFloat64(c.m.watchErrors); n != 3 {
		t.Errorf("watch errors %v, want 3", n)
	}
	if !strings.Contains(logs.String(), "pod watch failed") {
		t.Errorf("not logged:\n%s", logs.String())
	}
}

// TestResolveAfterListWatch: a pod the watch delivers resolves by address.
func TestResolveAfterListWatch(t *testing.T) {
	t.Parallel()
	api := newScriptAPI()
	c, err := New(api, Config{NodeName: testNode}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	applied := make(chan struct{}, 1)
	c.afterEvent = func(string, *podObj) { applied <- struct{}{} }
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	w := newChanWatch()
	api.listQ <- listAnswer{l: leanList("1", "")}
	api.watchQ <- watchAnswer{w: w}
	w.send(t, Event{Type: kubetypes.Added, Pod: mkPod(podSpec{name: "x", ips: []string{"10.8.0.1"}})})
	select {
	case <-applied:
	case <-time.After(10 * time.Second):
		t.Fatal("event not applied")
	}
	if p := c.ByIP(netip.MustParseAddr("10.8.0.1")); p == nil || p.Name != "x" {
		t.Fatalf("by address: %+v", p)
	}
}

// TestSilentWatchGivenUp: a watch that stays open past its timeout with
// nothing received is given up as a failure and the pods are listed again.
func TestSilentWatchGivenUp(t *testing.T) {
	t.Parallel()
	api := newScriptAPI()
	c, err := New(api, Config{NodeName: testNode}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	const minTimeout = 200 * time.Millisecond
	c.lw.watchMinTimeout, c.lw.watchSilence = minTimeout, 100*time.Millisecond
	c.lw.backoffInitial = time.Millisecond
	upserts := make(chan string, 4)
	c.afterEvent = func(kind string, o *podObj) { upserts <- kind + " " + o.Name }
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	start := time.Now()
	api.listQ <- listAnswer{l: leanList("1", "")}
	api.watchQ <- watchAnswer{w: newChanWatch()} // never says anything
	// The relist (after the watch was given up) brings pod y.
	api.listQ <- listAnswer{l: leanList("2", "", mkPod(podSpec{name: "y", ips: []string{"10.8.0.2"}}))}
	api.watchQ <- watchAnswer{w: newChanWatch()}
	select {
	case got := <-upserts:
		if got != "upsert y" {
			t.Fatalf("event %q", got)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the silent watch was not given up")
	}
	if waited := time.Since(start); waited < minTimeout {
		t.Errorf("watch given up after %v, before its timeout", waited)
	}
	if n := testutil.ToFloat64(c.m.watchErrors); n != 1 {
		t.Errorf("watch errors %v, want 1", n)
	}
}

// nsAPI answers namespace reads and counts them.
type nsAPI struct {
	API
	mu   sync.Mutex
	gets int
}

func (a *nsAPI) GetNamespaceMetadata(_ context.Context, name string) (*kubetypes.PartialObjectMetadata, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gets++
	return &kubetypes.PartialObjectMetadata{ObjectMeta: kubetypes.ObjectMeta{Name: name, UID: "ns-uid"}}, nil
}

// TestMetadataExpires: a metadata read is served from the cache for
// MetadataTTL by the cache's clock, then read again.
func TestMetadataExpires(t *testing.T) {
	t.Parallel()
	api := &nsAPI{}
	c, err := New(api, Config{NodeName: testNode, MetadataTTL: time.Minute}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fc := newFakeClock(time.Now())
	c.clock = fc
	c.meta = newMetaCache(time.Minute)
	for range 2 {
		if v, ok := c.lookup(t.Context(), kindNamespace, "", "team"); !ok || v.uid != "ns-uid" {
			t.Fatalf("lookup: %+v %v", v, ok)
		}
	}
	fc.Step(59 * time.Second)
	c.lookup(t.Context(), kindNamespace, "", "team")
	if api.gets != 1 {
		t.Errorf("%d reads within the TTL, want 1", api.gets)
	}
	fc.Step(2 * time.Second)
	c.lookup(t.Context(), kindNamespace, "", "team")
	if api.gets != 2 {
		t.Errorf("%d reads after the TTL, want 2", api.gets)
	}
}
