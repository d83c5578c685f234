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

// nonPod classifies an address that is not a pod's. See the package
// documentation for the rule. ok is false for an ordinary (pod) address.
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
// once (host_network or nat_suspected). A peer that recently timed out is
// unknown. Any other peer is held: the call waits, charging size bytes to the
// hold budget, until the informer indexes the address (hold_hit), HoldTimeout
// passes (hold_timeout), or ctx ends (ctx.Err()). When the budget is spent the
// call returns no_budget at once.
func (c *Cache) ResolvePeer(ctx context.Context, peer netip.Addr, size int) (*enrich.Pod, enrich.Result, error) {
	if !peer.IsValid() {
		return nil, enrich.ResultUnknown, nil // no address (e.g. a Unix socket): nothing to wait for
	}
	peer = peer.Unmap().WithZone("")
	connAt := enrich.ConnTime(ctx)
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
	c.mu.RUnlock()
	if negative && now.Before(until) {
		return nil, enrich.ResultUnknown, nil
	}

	size = max(size, 0)
	if !c.reserve(int64(size)) {
		return nil, enrich.ResultNoBudget, nil
	}
	c.heldReqs.Add(1)
	defer func() {
		c.held.Add(-int64(size))
		c.heldReqs.Add(-1)
	}()

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
		if w == nil {
			w = &waiter{ch: make(chan struct{})}
			c.waiters[peer] = w
		}
		w.n++
		c.mu.Unlock()
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
		if res == enrich.ResultHoldTimeout {
			// The address may have appeared just as the timer fired.
			if e := c.byIP.getConn(peer, c.clock.Now(), c.cfg.PodDeleteGrace, connAt); e != nil {
				p := e.pod
				c.mu.Unlock()
				c.m.holdLatency.WithLabelValues(string(enrich.ResultHoldHit)).Observe(time.Since(start).Seconds())
				return p, enrich.ResultHoldHit, nil
			}
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

// reserve charges n bytes to the hold budget, or reports that it is spent.
func (c *Cache) reserve(n int64) bool {
	for {
		cur := c.held.Load()
		if cur+n > c.cfg.HoldMaxBytes {
			return false
		}
		if c.held.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

func (c *Cache) warnNATSuspected(peer netip.Addr, why string) {
	if !c.warnNAT.allow(c.clock.Now(), time.Minute) {
		return
	}
	c.log.Warn("peer address is this node's, so the sender's traffic is being SNATed (typically a hostPort); pod attributes cannot be stamped",
		"peer", peer.String(), "why", why,
		"fix", "run podstamp with hostNetwork: true, or send through a Service with internalTrafficPolicy: Local")
}
