package informer

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/informer/kubetypes"
)

const testNode = "node-a"

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// podSpec describes a test pod.
type podSpec struct {
	ns, name, uid string
	ips           []string
	start         time.Time
	hostNetwork   bool
	phase         kubetypes.PodPhase
	node          string
	owners        []kubetypes.OwnerReference
	labels        map[string]string
}

func mkPod(s podSpec) *kubetypes.Pod {
	if s.ns == "" {
		s.ns = "default"
	}
	if s.uid == "" {
		s.uid = "uid-" + s.name
	}
	if s.node == "" {
		s.node = testNode
	}
	if s.phase == "" {
		s.phase = kubetypes.PodRunning
	}
	if s.start.IsZero() {
		s.start = t0
	}
	p := &kubetypes.Pod{
		ObjectMeta: kubetypes.ObjectMeta{Namespace: s.ns, Name: s.name, UID: s.uid,
			OwnerReferences: s.owners, Labels: s.labels, CreationTimestamp: kubetypes.Time{Time: s.start}},
		Spec: kubetypes.PodSpec{NodeName: s.node, HostNetwork: s.hostNetwork,
			Containers: []kubetypes.Container{{Name: "app", Image: "registry.example:5000/team/app:1.2"}}},
		Status: kubetypes.PodStatus{Phase: s.phase, StartTime: &kubetypes.Time{Time: s.start},
			ContainerStatuses: []kubetypes.ContainerStatus{{Name: "app", ContainerID: "containerd://cid-" + s.uid}}},
	}
	for i, ip := range s.ips {
		if i == 0 {
			p.Status.PodIP = ip
		}
		p.Status.PodIPs = append(p.Status.PodIPs, kubetypes.PodIP{IP: ip})
	}
	return p
}

// harness runs a Cache against a FakeAPI and reports every applied event.
type harness struct {
	t      *testing.T
	api    *FakeAPI
	c      *Cache
	reg    *prometheus.Registry
	logs   *syncBuffer
	events chan string // "upsert/<uid>", "delete/<uid>"
	held   chan netip.Addr
	cancel context.CancelFunc
	done   chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newHarness builds the harness's Cache on a FakeAPI holding objs (see
// NewFakeAPI).
func newHarness(t *testing.T, cfg Config, objs ...any) *harness {
	t.Helper()
	h := &harness{t: t, api: NewFakeAPI(objs...), reg: prometheus.NewRegistry(), logs: &syncBuffer{},
		events: make(chan string, 4096), held: make(chan netip.Addr, 4096)}
	if cfg.NodeName == "" {
		cfg.NodeName = testNode
	}
	if cfg.RouteLookup == nil {
		cfg.RouteLookup = podRoutes
	}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := New(h.api, cfg, log, h.reg)
	if err != nil {
		t.Fatal(err)
	}
	c.lw.backoffInitial = 10 * time.Millisecond // relists after a failure need not wait
	c.afterEvent = func(kind string, o *podObj) {
		select {
		case h.events <- kind + "/" + string(o.UID):
		default:
		}
	}
	c.onHold = func(ip netip.Addr) { h.held <- ip }
	c.afterNode = func() {
		select {
		case h.events <- "node/" + cfg.NodeName:
		default:
		}
	}
	h.c = c
	t.Cleanup(h.stop)
	return h
}

// start runs the cache and waits for the first sync.
func (h *harness) start() {
	h.t.Helper()
	h.startNoWait()
	h.waitSynced()
}

func (h *harness) startNoWait() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	go func() {
		defer close(h.done)
		if err := h.c.Run(ctx); err != nil {
			h.t.Errorf("Run: %v", err)
		}
	}()
}

func (h *harness) waitSynced() {
	h.t.Helper()
	select {
	case <-h.c.syncDone:
	case <-time.After(10 * time.Second):
		h.t.Fatal("cache did not sync")
	}
	select {
	case <-h.c.nodeRead:
	case <-time.After(10 * time.Second):
		h.t.Fatal("node not read")
	}
	if err := h.c.Ready(); err != nil {
		h.t.Fatalf("Ready after sync: %v", err)
	}
}

func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
		h.cancel = nil
	}
}

// waitEvent waits until the cache applied the event kind/uid.
func (h *harness) waitEvent(kind, uid string) {
	h.t.Helper()
	want := kind + "/" + uid
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-h.events:
			if got == want {
				return
			}
		case <-timeout:
			h.t.Fatalf("event %s not seen", want)
		}
	}
}

func (h *harness) waitHeld(ip string) {
	h.t.Helper()
	want := netip.MustParseAddr(ip)
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-h.held:
			if got == want {
				return
			}
		case <-timeout:
			h.t.Fatalf("no request held for %s", ip)
		}
	}
}

func (h *harness) create(p *kubetypes.Pod) {
	h.t.Helper()
	if err := h.api.CreatePod(p); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) update(p *kubetypes.Pod) {
	h.t.Helper()
	if err := h.api.UpdatePod(p); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) delete(p *kubetypes.Pod) {
	h.t.Helper()
	if err := h.api.DeletePod(p.Namespace, p.Name); err != nil {
		h.t.Fatal(err)
	}
}

// gauge reads a gauge of the harness registry.
func (h *harness) metric(name string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			switch {
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
		return sum
	}
	return 0
}

type resolved struct {
	pod     string
	res     string
	err     error
	elapsed time.Duration
}

func (h *harness) resolveAsync(ctx context.Context, ip string, size int) <-chan resolved {
	return h.resolveConnAsync(ctx, time.Time{}, ip, size)
}

// resolveConnAsync resolves ip for a connection accepted at accepted (zero:
// unknown).
func (h *harness) resolveConnAsync(ctx context.Context, accepted time.Time, ip string, size int) <-chan resolved {
	ch := make(chan resolved, 1)
	go func() {
		start := time.Now()
		p, res, err := h.c.ResolvePeer(ctx, enrich.Peer{Addr: netip.MustParseAddr(ip), Accepted: accepted}, size)
		r := resolved{res: string(res), err: err, elapsed: time.Since(start)}
		if p != nil {
			r.pod = p.Namespace + "/" + p.Name
		}
		ch <- r
	}()
	return ch
}

// podRoutes is the harness's routing table: the addresses of testNodeObj
// are this host's, every other address is reached directly through a pod
// interface. So every test peer counts as a sender on this node (IsLocal),
// and is held, whatever the node object says.
func podRoutes(ip netip.Addr) (Route, error) {
	switch ip.String() {
	case "192.168.1.10", "203.0.113.10":
		return Route{Local: true, Interface: "lo"}, nil
	}
	return Route{Interface: "veth-test", InterfaceAddrs: []netip.Addr{netip.MustParseAddr("fe80::1")}}, nil
}

// gateWatch makes the nth watch of pods the cache asks for (counting only
// plain watches when plainOnly, not streaming lists) wait until open is
// called; open is also called before the harness stops.
func (h *harness) gateWatch(nth int, plainOnly bool) (open func()) {
	var mu sync.Mutex
	n := 0
	gate := make(chan struct{})
	open = sync.OnceFunc(func() { close(gate) })
	h.t.Cleanup(open) // before the harness stops
	h.api.Prepend("watch", "pods", func(c fakeCall) (bool, any, error) {
		if plainOnly && c.Opts.SendInitialEvents {
			return false, nil, nil
		}
		mu.Lock()
		n++
		k := n
		mu.Unlock()
		if k == nth {
			<-gate
		}
		return false, nil, nil
	})
	return open
}
