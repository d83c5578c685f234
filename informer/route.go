package informer

import (
	"net/netip"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Route is the kernel's route to an address, as far as IsLocal needs it.
type Route struct {
	// Local: the address is one of this host's own (RTN_LOCAL).
	Local bool
	// Gateway is the next hop; invalid when the address is on a directly
	// connected link.
	Gateway netip.Addr
	// Interface is the name of the outgoing interface.
	Interface string
	// InterfaceAddrs are the addresses the outgoing interface carries.
	InterfaceAddrs []netip.Addr
}

const (
	// routeTTL is how long a route answer is reused: a new pod's veth is
	// normally in place before its first export, and a stale answer costs at
	// most one unheld (or needlessly held) first export.
	routeTTL = 10 * time.Second
	// routeCacheSize bounds the cached route answers; only senders the pod
	// cache does not know are looked up.
	routeCacheSize = 1024
)

type routeEntry struct {
	r     Route
	err   error
	until time.Time
}

func newRouteCache() *lru.Cache[netip.Addr, routeEntry] {
	l, err := lru.New[netip.Addr, routeEntry](routeCacheSize)
	if err != nil {
		panic(err) // only for a size below 1
	}
	return l
}

// route returns the (cached) route to ip.
func (c *Cache) route(ip netip.Addr) (Route, error) {
	now := c.clock.Now()
	if e, ok := c.routes.Get(ip); ok && now.Before(e.until) {
		return e.r, e.err
	}
	r, err := c.cfg.RouteLookup(ip)
	c.routes.Add(ip, routeEntry{r: r, err: err, until: now.Add(routeTTL)})
	return r, err
}

// IsLocal reports whether peer is on this node; only such a sender can be a
// pod of this cache, so only such a sender is held. It is on this node when
// it is loopback, an address of this node (Config.NodeIPs and the node's
// status.addresses), inside one of the node's spec.podCIDRs, or an address
// of a pod cached on this node (hostNetwork pods included).
//
// Any other peer (a brand-new pod whose address the cache has not seen yet,
// on a node without a pod CIDR or with an IPAM that does not use it, such as
// Calico or the AWS VPC CNI) is looked up in the kernel's routing table
// (Config.RouteLookup): it is on this node when its route is local, or has
// no gateway and leaves through an interface that carries none of the
// node's addresses (a bridge such as cni0, a per-pod veth such as Calico's
// cali*). Off-node hosts on the node's own subnet leave through the node's
// interface; other nodes' pods are reached through a gateway (flannel,
// Calico IPIP, native routing). Answers are reused for routeTTL.
//
// The route can only tell in the node's network namespace (the chart's
// default hostNetwork mode). When no node address is known, when none of
// them is local here (podstamp runs in a pod's network namespace, where
// every peer leaves through eth0), or when the lookup fails, such a peer
// counts as on this node. A CNI that routes this node's pods through a
// gateway (Cilium with cluster-pool IPAM) is not recognised by the route:
// its new pods are only local once cached or inside a pod CIDR.
func (c *Cache) IsLocal(peer netip.Addr) bool {
	local, _ := c.locality(peer)
	return local
}

// locality is IsLocal with the reason, for /debug/pods.
func (c *Cache) locality(peer netip.Addr) (bool, string) {
	if !peer.IsValid() {
		return false, "no address"
	}
	peer = peer.Unmap().WithZone("")
	c.mu.RLock()
	local, why, decided := c.localKnownLocked(peer)
	nodeIPs := c.nodeIPs // replaced, never modified, by refreshNode: safe to read unlocked
	c.mu.RUnlock()
	if decided {
		return local, why
	}
	return c.routeLocal(peer, nodeIPs)
}

// localKnownLocked decides locality from what the cache knows. decided is
// false when only the kernel's route can tell.
func (c *Cache) localKnownLocked(peer netip.Addr) (local bool, why string, decided bool) {
	switch {
	case peer.IsLoopback():
		return true, "loopback", true
	case c.nodeIPs[peer]:
		return true, "address of this node", true
	case c.hostNet[peer] > 0:
		return true, "address of a hostNetwork pod on this node", true
	case len(c.byIP.cands[peer]) > 0:
		return true, "address of a pod cached on this node", true
	}
	for _, p := range c.podCIDRs {
		if p.Contains(peer) {
			return true, "inside this node's pod CIDR " + p.String(), true
		}
	}
	return false, "", false
}

// routeLocal decides locality by the kernel's route to peer. Only the node's
// own network namespace has the routes that tell: when no node address is
// known, or none is local here (podstamp runs in a pod network namespace,
// where every sender is reached through the pod's eth0), the route cannot
// tell and the sender counts as local, as it did before the rule existed.
// So does a sender whose route cannot be read.
func (c *Cache) routeLocal(peer netip.Addr, nodeIPs map[netip.Addr]bool) (bool, string) {
	if len(nodeIPs) == 0 {
		return true, "not known to the cache and no node address is known to tell the node's own interfaces by: counted as local"
	}
	hostNetns := false
	for ip := range nodeIPs {
		if r, err := c.route(ip); err == nil && r.Local {
			hostNetns = true
			break
		}
	}
	if !hostNetns {
		return true, "not known to the cache and no node address is local here (not the node's network namespace), so routes cannot tell: counted as local"
	}
	r, err := c.route(peer)
	if err != nil {
		if c.warnRoute.allow(c.clock.Now(), time.Minute) {
			c.log.Warn("route lookup failed; senders the pod cache does not know are held as if local (logged at most once a minute)",
				"peer", peer.String(), "err", err)
		}
		return true, "route lookup failed (" + err.Error() + "): counted as local"
	}
	switch {
	case r.Local:
		return true, "an address of this host (interface " + r.Interface + ")"
	case r.Gateway.IsValid():
		return false, "routed through gateway " + r.Gateway.String() + " (another node's pod or an off-node host)"
	}
	for _, a := range r.InterfaceAddrs {
		if nodeIPs[a.Unmap()] {
			return false, "on the link of node interface " + r.Interface + " (an off-node host on the node's subnet)"
		}
	}
	return true, "routed directly through interface " + r.Interface + ", which carries no node address (a pod interface)"
}
