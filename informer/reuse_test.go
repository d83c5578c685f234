package informer

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

// directClient is shared by caches that are never run: nothing is ever
// read from it.
var directClient = NewFakeAPI()

// newDirect returns a Cache whose handlers the test calls itself, with a fake clock.
func newDirectB(b *testing.B) (*Cache, *fakeClock) {
	c, err := New(directClient, Config{NodeName: testNode}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	return c, nil
}

func newDirect(t *testing.T, grace time.Duration) (*Cache, *fakeClock) {
	t.Helper()
	c, err := New(directClient, Config{NodeName: testNode, PodDeleteGrace: grace}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	clk := newFakeClock(t0.Add(time.Hour))
	c.clock = clk
	return c, clk
}

func owner(c *Cache, ip string) string {
	if p := c.ByIP(netip.MustParseAddr(ip)); p != nil {
		return p.Name
	}
	return ""
}

// event is one informer event of the permutation test.
type event struct {
	pod  int    // index into the test's pods
	kind string // add, finish, delete, relist (a list that no longer has the pod)
}

// interleavings returns every merge of the per-pod event sequences that keeps
// each pod's own order.
func interleavings(seqs [][]event) [][]event {
	total := 0
	for _, s := range seqs {
		total += len(s)
	}
	var out [][]event
	pos := make([]int, len(seqs))
	cur := make([]event, 0, total)
	var rec func()
	rec = func() {
		if len(cur) == total {
			out = append(out, append([]event(nil), cur...))
			return
		}
		for i, s := range seqs {
			if pos[i] < len(s) {
				cur = append(cur, s[pos[i]])
				pos[i]++
				rec()
				pos[i]--
				cur = cur[:len(cur)-1]
			}
		}
	}
	rec()
	return out
}

// model is an independent statement of the rules in the issue, over what the
// test knows happened to each pod.
type modelPod struct {
	name             string
	start            time.Time
	added, fin, gone bool
}

func modelOwner(ps []*modelPod) string {
	best := func(filter func(*modelPod) bool) string {
		var b *modelPod
		for _, p := range ps {
			if filter(p) && (b == nil || p.start.After(b.start)) {
				b = p
			}
		}
		if b == nil {
			return ""
		}
		return b.name
	}
	// A running pod always wins. Pods that released the address (finished,
	// or deleted and in grace) answer only when no running pod lists it, the
	// one that held it last (newest start) first.
	if n := best(func(p *modelPod) bool { return p.added && !p.gone && !p.fin }); n != "" {
		return n
	}
	return best(func(p *modelPod) bool { return p.fin || p.gone })
}

func TestIPReuseEveryEventOrder(t *testing.T) {
	t.Parallel()
	const ip = "10.2.0.5"
	specs := []podSpec{
		{name: "old", start: t0},
		{name: "mid", start: t0.Add(time.Minute)},
		{name: "new", start: t0.Add(2 * time.Minute)},
	}
	// The pods as the cache keeps them, running and finished: built once,
	// as the cache never changes a podObj.
	running, finished := make([]*podObj, len(specs)), make([]*podObj, len(specs))
	for i, s := range specs {
		s.ips = []string{ip}
		running[i] = toPodObj(mkPod(s))
		s.phase = kubetypes.PodSucceeded
		finished[i] = toPodObj(mkPod(s))
	}
	for _, delKind := range []string{"delete", "relist"} {
		seqs := make([][]event, len(specs))
		for i := range specs {
			seqs[i] = []event{{i, "add"}, {i, "finish"}, {i, delKind}}
		}
		orders := interleavings(seqs)
		if len(orders) != 1680 {
			t.Fatalf("%d interleavings, want 9!/(3!3!3!) = 1680", len(orders))
		}
		for _, order := range orders {
			c, _ := newDirect(t, time.Hour)
			ms := make([]*modelPod, len(specs))
			for i, s := range specs {
				ms[i] = &modelPod{name: s.name, start: s.start}
			}
			var trace []string
			for _, ev := range order {
				s := specs[ev.pod]
				m := ms[ev.pod]
				trace = append(trace, ev.kind+":"+s.name)
				switch ev.kind {
				case "add":
					m.added = true
					c.onUpsert(running[ev.pod])
				case "finish":
					m.fin = true
					c.onUpsert(finished[ev.pod])
				case "delete":
					m.gone = true
					c.onDelete(finished[ev.pod])
				case "relist":
					m.gone = true
					// A relist that no longer has the pod deletes it with
					// what the cache last saw of it.
					c.onDelete(c.byUID["uid-"+s.name].obj)
				}
				want := modelOwner(ms)
				if got := owner(c, ip); got != want {
					t.Fatalf("after %s: owner %q, want %q", strings.Join(trace, " "), got, want)
				}
				// Invariants stated directly: never a finished or deleted pod while a
				// running one lists the address; never an older running pod over a newer one.
				if got := c.ByIP(netip.MustParseAddr(ip)); got != nil {
					e := c.byUID[got.UID]
					for _, o := range c.byUID {
						if o.cls == classLive && e.cls != classLive {
							t.Fatalf("after %s: %s (%s) shadows live %s", strings.Join(trace, " "), got.Name, e.cls, o.obj.Name)
						}
						if o.cls == classLive && e.cls == classLive && o.obj.start.After(e.obj.start) {
							t.Fatalf("after %s: older %s owns over newer %s", strings.Join(trace, " "), got.Name, o.obj.Name)
						}
					}
				}
			}
		}
	}
}

func TestIPReuseSameStartTimeLatestSeenWins(t *testing.T) {
	t.Parallel()
	c, _ := newDirect(t, time.Hour)
	a := podSpec{name: "a", ips: []string{"10.2.0.6"}}
	b := podSpec{name: "b", ips: []string{"10.2.0.6"}}
	c.onUpsert(toPodObj(mkPod(a)))
	c.onUpsert(toPodObj(mkPod(b)))
	if got := owner(c, "10.2.0.6"); got != "b" {
		t.Fatalf("owner %q, want b (same start time, seen later)", got)
	}
	// An update of a does not take the address back.
	c.onUpsert(toPodObj(mkPod(a)))
	if got := owner(c, "10.2.0.6"); got != "b" {
		t.Fatalf("after update of a: owner %q, want b", got)
	}
}

func TestDeleteChecksUID(t *testing.T) {
	t.Parallel()
	c, _ := newDirect(t, time.Hour)
	// A StatefulSet pod recreated with the same name and address, new UID.
	old := podSpec{name: "web-0", uid: "u1", ips: []string{"10.2.0.7"}, start: t0}
	nw := podSpec{name: "web-0", uid: "u2", ips: []string{"10.2.0.7"}, start: t0.Add(time.Minute)}
	c.onUpsert(toPodObj(mkPod(nw)))
	c.onDelete(toPodObj(mkPod(old))) // late delete of the old incarnation
	if p := c.ByIP(netip.MustParseAddr("10.2.0.7")); p == nil || p.UID != "u2" {
		t.Fatalf("ByIP = %v, want u2", p)
	}
	if p := c.ByName("default", "web-0"); p == nil || p.UID != "u2" {
		t.Fatalf("ByName = %v, want u2", p)
	}
	if p := c.ByUID("u1"); p == nil {
		t.Fatal("deleted u1 should stay resolvable by UID during the grace period")
	}
}

func TestDeletedPodGrace(t *testing.T) {
	t.Parallel()
	c, clk := newDirect(t, 2*time.Minute)
	a := podSpec{name: "a", ips: []string{"10.2.0.8"}}
	c.onUpsert(toPodObj(mkPod(a)))
	c.onDelete(toPodObj(mkPod(a)))
	if got := owner(c, "10.2.0.8"); got != "a" {
		t.Fatalf("within grace: owner %q, want a", got)
	}
	if c.ByContainerID("containerd://cid-uid-a") == nil || c.ByName("default", "a") == nil {
		t.Fatal("within grace: container ID and name lookups should still find a")
	}
	// A new pod with the address shadows the deleted one at once.
	b := podSpec{name: "b", ips: []string{"10.2.0.8"}, start: t0.Add(-time.Hour)} // even with an older start time
	c.onUpsert(toPodObj(mkPod(b)))
	if got := owner(c, "10.2.0.8"); got != "b" {
		t.Fatalf("live pod must win over a deleted one: owner %q", got)
	}
	clk.Step(time.Minute)
	c.onDelete(toPodObj(mkPod(b)))
	// b deleted later than a: both in grace; the newer start time (a) wins.
	if got := owner(c, "10.2.0.8"); got != "a" {
		t.Fatalf("both deleted: owner %q, want a", got)
	}
	clk.Step(time.Minute + time.Second) // a past grace, b not yet
	if got := owner(c, "10.2.0.8"); got != "b" {
		t.Fatalf("a expired: owner %q, want b", got)
	}
	clk.Step(time.Minute)
	if got := owner(c, "10.2.0.8"); got != "" {
		t.Fatalf("all expired: owner %q", got)
	}
	c.sweep()
	if len(c.byUID) != 0 || len(c.byIP.cands) != 0 || len(c.byName.cands) != 0 || len(c.byCID.cands) != 0 {
		t.Fatalf("sweep left %d pods, %d ips, %d names, %d ids", len(c.byUID), len(c.byIP.cands), len(c.byName.cands), len(c.byCID.cands))
	}
}

func TestFinishedHolderReplacedByOlderPod(t *testing.T) {
	t.Parallel()
	c, _ := newDirect(t, time.Hour)
	done := podSpec{name: "job", ips: []string{"10.2.0.9"}, start: t0.Add(time.Hour), phase: kubetypes.PodFailed}
	c.onUpsert(toPodObj(mkPod(done)))
	older := podSpec{name: "svc", ips: []string{"10.2.0.9"}, start: t0}
	c.onUpsert(toPodObj(mkPod(older)))
	if got := owner(c, "10.2.0.9"); got != "svc" {
		t.Fatalf("owner %q, want svc (holder finished)", got)
	}
}

func TestUpdateReleasesAddress(t *testing.T) {
	t.Parallel()
	c, _ := newDirect(t, time.Hour)
	a := podSpec{name: "a", ips: []string{"10.2.0.10"}}
	c.onUpsert(toPodObj(mkPod(a)))
	a.ips = nil
	c.onUpsert(toPodObj(mkPod(a)))
	if got := owner(c, "10.2.0.10"); got != "" {
		t.Fatalf("owner %q after the pod lost the address", got)
	}
	if c.ByName("default", "a") == nil {
		t.Fatal("pod without address still found by name")
	}
}

// TestOtherNodesIgnored: the cache lists and watches with the field
// selector of its node, so the pods of other nodes never reach it, listed
// or created later.
func TestOtherNodesIgnored(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{}, mkPod(podSpec{name: "elsewhere", node: "node-b", ips: []string{"10.2.0.11"}}))
	h.start()
	h.create(mkPod(podSpec{name: "later", node: "node-b", ips: []string{"10.2.0.12"}}))
	h.create(mkPod(podSpec{name: "here", ips: []string{"10.2.0.13"}}))
	h.waitEvent("upsert", "uid-here")
	for _, ip := range []string{"10.2.0.11", "10.2.0.12"} {
		if got := owner(h.c, ip); got != "" {
			t.Fatalf("pod of another node indexed: %q", got)
		}
	}
	if n := h.c.podCount(); n != 1 {
		t.Errorf("%d pods cached, want 1", n)
	}
}
