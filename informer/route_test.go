package informer

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
)

// routeTable is an injected routing table: a bridge CNI node with
// eth0 192.168.1.10/24, cni0 10.244.1.1/24, flannel to other nodes' pods and
// a default gateway, plus a Calico-style veth route outside the pod CIDR.
type routeTable struct {
	mu      sync.Mutex
	lookups map[netip.Addr]int
	fail    bool
}

func (rt *routeTable) lookup(ip netip.Addr) (Route, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.lookups == nil {
		rt.lookups = map[netip.Addr]int{}
	}
	rt.lookups[ip]++
	if rt.fail {
		return Route{}, errors.New("netlink: no")
	}
	eth0 := []netip.Addr{netip.MustParseAddr("192.168.1.10")}
	switch {
	case ip == netip.MustParseAddr("192.168.1.10"), ip == netip.MustParseAddr("10.244.1.1"):
		return Route{Local: true, Interface: "lo"}, nil
	case netip.MustParsePrefix("10.244.1.0/24").Contains(ip):
		return Route{Interface: "cni0", InterfaceAddrs: []netip.Addr{netip.MustParseAddr("10.244.1.1")}}, nil
	case netip.MustParsePrefix("10.244.0.0/16").Contains(ip):
		return Route{Gateway: netip.MustParseAddr("10.244.2.0"), Interface: "flannel.1"}, nil
	case netip.MustParsePrefix("192.168.1.0/24").Contains(ip):
		return Route{Interface: "eth0", InterfaceAddrs: eth0}, nil
	case netip.MustParsePrefix("172.16.5.0/26").Contains(ip): // a Calico block of this node
		return Route{Interface: "cali" + ip.String()}, nil
	}
	return Route{Gateway: netip.MustParseAddr("192.168.1.1"), Interface: "eth0", InterfaceAddrs: eth0}, nil
}

func (rt *routeTable) count(ip string) int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.lookups[netip.MustParseAddr(ip)]
}

func TestIsLocal(t *testing.T) {
	t.Parallel()
	rt := &routeTable{}
	node := testNodeObj() // pod CIDR 10.244.1.0/24, addresses 192.168.1.10 and 203.0.113.10
	h := newHarness(t, Config{HoldTimeout: 10 * time.Second, RouteLookup: rt.lookup,
		NodeIPs: []netip.Addr{netip.MustParseAddr("192.168.1.10")}},
		node, mkPod(podSpec{name: "odd", ips: []string{"100.64.0.7"}}))
	h.start()
	h.waitEvent("node", testNode)
	for _, tc := range []struct {
		ip    string
		local bool
	}{
		{"127.0.0.1", true},
		{"::1", true},
		{"192.168.1.10", true},       // a node address
		{"203.0.113.10", true},       // a node address from status.addresses
		{"10.244.1.77", true},        // inside the pod CIDR
		{"fd00:10:244:1::77", true},  // inside the IPv6 pod CIDR
		{"::ffff:10.244.1.77", true}, // mapped
		{"100.64.0.7", true},         // a pod cached on this node, whatever its route
		{"172.16.5.9", true},         // outside the pod CIDR, but behind a veth of this node
		{"10.244.2.5", false},        // another node's pod: through a gateway
		{"192.168.1.20", false},      // an off-node host on the node's subnet
		{"198.51.100.1", false},      // off-cluster, via the default gateway
		{"fe80::1%eth0", false},      // zone dropped; default route
	} {
		if got := h.c.IsLocal(netip.MustParseAddr(tc.ip)); got != tc.local {
			_, why := h.c.locality(netip.MustParseAddr(tc.ip))
			t.Errorf("IsLocal(%s) = %v (%s), want %v", tc.ip, got, why, tc.local)
		}
	}
	// Addresses the cache knows are never looked up (node addresses are: to
	// tell whether this is the node's network namespace).
	for _, ip := range []string{"127.0.0.1", "10.244.1.77", "100.64.0.7"} {
		if n := rt.count(ip); n != 0 {
			t.Errorf("%s looked up %d times", ip, n)
		}
	}
	if h.c.IsLocal(netip.Addr{}) {
		t.Error("IsLocal(invalid) = true")
	}
}

// A sender that is not on this node is answered unknown at once, never held;
// the debug handler says why.
func TestNotLocalNeverHeld(t *testing.T) {
	t.Parallel()
	rt := &routeTable{}
	h := newHarness(t, Config{HoldTimeout: 10 * time.Second, RouteLookup: rt.lookup,
		NodeIPs: []netip.Addr{netip.MustParseAddr("192.168.1.10")}})
	h.start()
	for _, ip := range []string{"10.244.2.5", "192.168.1.20", "198.51.100.1"} {
		start := time.Now()
		p, res, err := h.c.ResolvePeer(context.Background(), enrich.Peer{Addr: netip.MustParseAddr(ip)}, 100)
		if p != nil || res != enrich.ResultUnknown || err != nil {
			t.Errorf("%s: %v %v %v, want unknown", ip, p, res, err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("%s: took %v, must not be held", ip, d)
		}
	}
	if n := h.refused(refusedNotLocal); n != 3 {
		t.Errorf("not_local refusals = %v, want 3", n)
	}
	if n := h.metric("podstamp_hold_duration_seconds"); n != 0 {
		t.Errorf("%v holds, want none", n)
	}
	var r resolution
	getJSON(t, h.c.DebugHandler(), "/debug/pods?ip=10.244.2.5", &r)
	if r.Result != "unknown" || r.Local || r.LocalReason == "" {
		t.Errorf("debug of an off-node sender: %+v", r)
	}
	// A local sender (behind a veth) is still held, and released by its pod.
	got := h.resolveAsync(context.Background(), "172.16.5.9", 10)
	h.waitHeld("172.16.5.9")
	h.create(mkPod(podSpec{name: "calico", ips: []string{"172.16.5.9"}}))
	if r := <-got; r.res != string(enrich.ResultHoldHit) || r.pod != "default/calico" {
		t.Fatalf("got %+v, want hold_hit default/calico", r)
	}
}

// When the route cannot tell, a sender counts as local (it is held, as
// before the rule): no node address known, podstamp not in the node's network
// namespace, or a failed lookup.
func TestRouteCannotTellCountsAsLocal(t *testing.T) {
	t.Parallel()
	off := netip.MustParseAddr("198.51.100.1")
	// No node address known.
	rt := &routeTable{}
	c, _ := newDirect(t, time.Minute)
	c.cfg.RouteLookup = rt.lookup
	if !c.IsLocal(off) {
		t.Error("without node addresses: not local")
	}
	// A node address that is not local here: a pod network namespace.
	c.nodeIPs = map[netip.Addr]bool{netip.MustParseAddr("192.168.7.7"): true}
	if !c.IsLocal(off) {
		t.Error("outside the node's network namespace: not local")
	}
	// The node's namespace, but the lookup fails.
	c.nodeIPs = map[netip.Addr]bool{netip.MustParseAddr("192.168.1.10"): true}
	if c.IsLocal(off) {
		t.Fatal("off-node sender counted local") // the table works
	}
	c.routes.Purge()
	rt.mu.Lock()
	rt.fail = true
	rt.mu.Unlock()
	if !c.IsLocal(off) {
		t.Error("failed lookup: not local")
	}
}

// Route answers are reused for routeTTL and the cache of them is bounded.
func TestRouteCache(t *testing.T) {
	t.Parallel()
	rt := &routeTable{}
	c, clk := newDirect(t, time.Minute)
	c.cfg.RouteLookup = rt.lookup
	c.nodeIPs = map[netip.Addr]bool{netip.MustParseAddr("192.168.1.10"): true}
	for range 5 {
		c.IsLocal(netip.MustParseAddr("198.51.100.1"))
	}
	if n := rt.count("198.51.100.1"); n != 1 {
		t.Errorf("%d lookups within the TTL, want 1", n)
	}
	clk.Step(routeTTL)
	c.IsLocal(netip.MustParseAddr("198.51.100.1"))
	if n := rt.count("198.51.100.1"); n != 2 {
		t.Errorf("%d lookups after the TTL, want 2", n)
	}
	a := netip.MustParseAddr("198.18.0.0")
	for range routeCacheSize + 100 {
		a = a.Next()
		c.IsLocal(a)
	}
	if n := c.routes.Len(); n > routeCacheSize {
		t.Errorf("%d route answers cached, bound is %d", n, routeCacheSize)
	}
}

// The kernel's route on this machine: 127.0.0.1 is local; an address behind
// the default route goes through a gateway.
func TestKernelRoute(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("netlink is Linux only")
	}
	r, err := kernelRoute(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatalf("route to 127.0.0.1: %v", err)
	}
	if !r.Local || r.Interface != "lo" || r.Gateway.IsValid() {
		t.Errorf("route to 127.0.0.1: %+v, want local through lo", r)
	}
	if r6, err := kernelRoute(netip.MustParseAddr("::1")); err == nil && !r6.Local {
		t.Errorf("route to ::1: %+v, want local", r6)
	}

	// The routing rule itself, with 127.0.0.1 standing for the node address.
	c, _ := newDirect(t, time.Minute)
	c.cfg.RouteLookup = kernelRoute
	c.clock = newFakeClock(time.Now())
	nodeIPs := map[netip.Addr]bool{netip.MustParseAddr("127.0.0.1"): true}
	if local, why := c.routeLocal(netip.MustParseAddr("127.0.0.2"), nodeIPs); !local {
		t.Errorf("127.0.0.2: not local (%s)", why)
	}

	// A documentation address (TEST-NET) is only reachable through a default
	// route; no packet is sent, the kernel is only asked. The first one not
	// on a link of this machine is used.
	var off netip.Addr
	for _, s := range []string{"198.51.100.1", "203.0.113.1", "192.0.2.1"} {
		a := netip.MustParseAddr(s)
		if r, err = kernelRoute(a); err == nil && r.Gateway.IsValid() {
			off = a
			break
		}
	}
	if !off.IsValid() {
		if hasDefaultRoute4(t) {
			t.Fatalf("this machine has a default route, but no route through a gateway was read: last answer %+v, %v", r, err)
		}
		t.Skipf("no IPv4 default route on this machine: last answer %+v, %v", r, err)
	}
	if r.Interface == "" || r.Local {
		t.Errorf("route to %s: %+v", off, r)
	}
	if local, why := c.routeLocal(off, nodeIPs); local {
		t.Errorf("%s through gateway %s counted local (%s)", off, r.Gateway, why)
	}

	// The gateway itself is on the link of the node's interface: an off-node
	// host on the node's subnet, with that interface's addresses standing for
	// the node's.
	uplink := map[netip.Addr]bool{}
	for _, a := range r.InterfaceAddrs {
		uplink[a] = true
	}
	if len(uplink) == 0 {
		t.Skipf("interface %s carries no address", r.Interface)
	}
	if local, why := c.routeLocal(r.Gateway, uplink); local {
		t.Errorf("gateway %s on node interface %s counted local (%s)", r.Gateway, r.Interface, why)
	}
}

// hasDefaultRoute4 reports whether /proc/net/route lists an IPv4 default
// route with a gateway.
func hasDefaultRoute4(t *testing.T) bool {
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		t.Skipf("cannot read the routing table: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 2 && f[1] == "00000000" && f[2] != "00000000" {
			return true
		}
	}
	return false
}
