package informer

import (
	"context"
	"net/netip"
	"time"

	"github.com/podstamp/podstamp/enrich"
)

type waiter struct {
	ch chan struct{} // closed when the informer indexes the address
	n  int           // requests waiting on ch
}

// nonPodLocked classifies a known non-pod address; the caller holds c.mu.
// ok is false for an ordinary (pod) address. The rule:
//
//   - the gateway of one of the node's pod CIDRs (its first address, the .1
//     a bridge CNI gives the node side of the pod network): nat_suspected.
//     No pod sends from it; it is what a hostPort (portmap) masquerade
//     produces.
//   - an address of a live hostNetwork pod on this node (usually the node's
//     InternalIP): host_network. A hostNetwork sender and traffic masqueraded
//     to that same address cannot be told apart; the legitimate case wins.
//   - any other node address (Config.NodeIPs, the node's status.addresses):
//     nat_suspected, or host_network until the first sync, while hostNetwork
//     pods are not known yet.
//
// Until the node has been read, a gateway or node address not in
// Config.NodeIPs is not known here and is held like any other; the read
// releases such requests with their classification.
func (c *Cache) nonPodLocked(ip netip.Addr) (res enrich.Result, why string, ok bool) {
	switch {
	case c.gateways[ip]:
		return enrich.ResultNATSuspected, "pod-CIDR gateway of this node", true
	case c.hostNet[ip] > 0:
		return enrich.ResultHostNetwork, "address of a hostNetwork pod on this node", true
	case c.nodeIPs[ip]:
		if !c.isSynced() {
			return enrich.ResultHostNetwork, "node address (pod cache not synced yet)", true
		}
		return enrich.ResultNATSuspected, "node address that no hostNetwork pod on this node uses", true
	}
	return "", "", false
}

// ResolvePeer implements enrich.Resolver. peer may be IPv4-mapped IPv6.
//
// A peer found in the cache is a hit. A known non-pod address is answered at
// once (host_network or nat_suspected). A peer that recently timed out or
// gave up while held is unknown, and so is a peer that is not on this node
// (IsLocal): it cannot be a pod of this cache. Any other peer is held: the
// call waits, charging size bytes to the hold budget and to the peer's share
// of it, until the informer indexes the address (hold_hit), HoldTimeout
// passes (hold_timeout), or ctx ends (ctx.Err()). When the budget or the
// peer's share is spent the call returns no_budget at once.
func (c *Cache) ResolvePeer(ctx context.Context, p enrich.Peer, size int) (*enrich.Pod, enrich.Result, error) {
	if !p.Addr.IsValid() {
		return nil, enrich.ResultUnknown, nil // no address (e.g. a Unix socket): nothing to wait for
	}
	peer := p.Addr.Unmap().WithZone("")
	connAt := p.Accepted
	now := c.clock.Now()
	c.mu.RLock()
	if e := c.byIP.getConn(peer, now, c.cfg.PodDeleteGrace, connAt); e != nil {
		p := e.pod
		c.mu.RUnlock()
		return p, enrich.ResultHit, nil
	}
	if res, why, ok := c.nonPodLocked(peer); ok {
		c.mu.RUnlock()
		if res == enrich.ResultNATSuspected {
			c.warnNATSuspected(peer, why)
		}
		return nil, res, nil
	}
	until, negative := c.negative[peer]
	local, _, decided := c.localKnownLocked(peer)
	nodeIPs := c.nodeIPs // replaced, never modified: safe to read unlocked
	c.mu.RUnlock()
	if negative && now.Before(until) {
		return nil, enrich.ResultUnknown, nil
	}
	if !decided {
		local, _ = c.routeLocal(peer, nodeIPs)
	}
	if !local {
		c.m.holdRefused.WithLabelValues(refusedNotLocal).Inc()
		return nil, enrich.ResultUnknown, nil
	}

	n := int64(max(size, 0))
	if reason := c.reserve(peer, n); reason != "" {
		c.m.holdRefused.WithLabelValues(reason).Inc()
		return nil, enrich.ResultNoBudget, nil
	}
	defer c.release(peer, n)

	timer := c.clock.NewTimer(c.cfg.HoldTimeout)
	defer timer.Stop()
	start := time.Now()
	for {
		c.mu.Lock()
		if e := c.byIP.getConn(peer, c.clock.Now(), c.cfg.PodDeleteGrace, connAt); e != nil {
			p := e.pod
			c.mu.Unlock()
			c.m.holdLatency.WithLabelValues(string(enrich.ResultHoldHit)).Observe(time.Since(start).Seconds())
			return p, enrich.ResultHoldHit, nil
		}
		if res, why, ok := c.nonPodLocked(peer); ok {
			// The node was read while this request waited.
			c.mu.Unlock()
			if res == enrich.ResultNATSuspected {
				c.warnNATSuspected(peer, why)
			}
			return nil, res, nil
		}
		w := c.waiters[peer]
		fresh := w == nil
		if fresh {
			w = &waiter{ch: make(chan struct{})}
			c.waiters[peer] = w
		}
		w.n++
		c.mu.Unlock()
		if fresh && c.cfg.Kubelet != nil {
			c.wantPods() // the kubelet is asked, not told
		}
		if c.onHold != nil {
			c.onHold(peer)
		}

		var res enrich.Result
		var err error
		select {
		case <-w.ch:
		case <-timer.C():
			res = enrich.ResultHoldTimeout
		case <-ctx.Done():
			err = ctx.Err()
		}

		c.mu.Lock()
		if w.n--; w.n == 0 && c.waiters[peer] == w {
			delete(c.waiters, peer)
		}
		if res != "" || err != nil {
			// The address may have appeared just as the timer fired or the
			// caller gave up.
			if e := c.byIP.getConn(peer, c.clock.Now(), c.cfg.PodDeleteGrace, connAt); e != nil {
				p := e.pod
				c.mu.Unlock()
				if err != nil {
					c.m.holdLatency.WithLabelValues("canceled").Observe(time.Since(start).Seconds())
					return nil, "", err
				}
				c.m.holdLatency.WithLabelValues(string(enrich.ResultHoldHit)).Observe(time.Since(start).Seconds())
				return p, enrich.ResultHoldHit, nil
			}
			// A sender that gives up while held is not held again for a
			// while, like one that timed out: otherwise one that cancels
			// just before the timeout and sends again keeps its share of the
			// budget spent for good.
			c.negative[peer] = c.clock.Now().Add(c.cfg.HoldNegativeTTL)
		}
		c.mu.Unlock()
		switch {
		case err != nil:
			c.m.holdLatency.WithLabelValues("canceled").Observe(time.Since(start).Seconds())
			return nil, "", err
		case res != "":
			c.m.holdLatency.WithLabelValues(string(res)).Observe(time.Since(start).Seconds())
			return nil, res, nil
		}
		// Woken: loop to read the owner (normally found at once).
	}
}

// Reasons of podstamp_hold_refused_total.
const (
	refusedPeerRequests = "peer_requests" // the peer has HoldMaxPerPeerRequests held
	refusedPeerBytes    = "peer_bytes"    // the peer's held bytes would pass HoldMaxPerPeerBytes
	refusedBudget       = "budget"        // all held bytes would pass HoldMaxBytes
	refusedNotLocal     = "not_local"     // the peer is not on this node
)

// peerHold is what one peer has held.
type peerHold struct {
	reqs  int
	bytes int64
}

// reserve charges n bytes to peer's share and to the hold budget, or returns
// why it cannot (a refusedX reason).
func (c *Cache) reserve(peer netip.Addr, n int64) string {
	c.holdMu.Lock()
	defer c.holdMu.Unlock()
	ph := c.perPeer[peer]
	switch {
	case ph.reqs+1 > c.cfg.HoldMaxPerPeerRequests:
		return refusedPeerRequests
	case ph.bytes+n > c.cfg.HoldMaxPerPeerBytes:
		return refusedPeerBytes
	case c.held.Load()+n > c.cfg.HoldMaxBytes:
		return refusedBudget
	}
	ph.reqs++
	ph.bytes += n
	c.perPeer[peer] = ph
	c.held.Add(n)
	c.heldReqs.Add(1)
	return ""
}

// release returns what reserve charged.
func (c *Cache) release(peer netip.Addr, n int64) {
	c.holdMu.Lock()
	defer c.holdMu.Unlock()
	ph := c.perPeer[peer]
	ph.reqs--
	ph.bytes -= n
	if ph.reqs <= 0 {
		delete(c.perPeer, peer)
	} else {
		c.perPeer[peer] = ph
	}
	c.held.Add(-n)
	c.heldReqs.Add(-1)
}

// peerHeld returns what peer has held, for /debug/pods.
func (c *Cache) peerHeld(peer netip.Addr) peerHold {
	c.holdMu.Lock()
	defer c.holdMu.Unlock()
	return c.perPeer[peer]
}

func (c *Cache) warnNATSuspected(peer netip.Addr, why string) {
	if !c.warnNAT.allow(c.clock.Now(), time.Minute) {
		return
	}
	c.log.Warn("peer address is this node's, so the sender's traffic is being SNATed (typically a hostPort); pod attributes cannot be stamped",
		"peer", peer.String(), "why", why,
		"fix", "run podstamp with hostNetwork: true, or send through a Service with internalTrafficPolicy: Local")
}
