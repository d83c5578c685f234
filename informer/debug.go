package informer

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/podstamp/podstamp/enrich"
)

// podView is one pod as /debug/pods shows it.
type podView struct {
	Namespace   string         `json:"namespace"`
	Name        string         `json:"name"`
	UID         string         `json:"uid"`
	IPs         []string       `json:"ips,omitempty"`
	HostNetwork bool           `json:"host_network,omitempty"`
	State       string         `json:"state"` // live, finished, deleted
	StartTime   time.Time      `json:"start_time"`
	DeletedAt   *time.Time     `json:"deleted_at,omitempty"`
	Workloads   []workloadView `json:"workloads,omitempty"`
	Owner       bool           `json:"owner,omitempty"` // owns the address asked about
	Expired     bool           `json:"expired,omitempty"`
}

type workloadView struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	UID  string `json:"uid,omitempty"`
}

// resolution explains how one address resolves.
type resolution struct {
	IP            string    `json:"ip"`
	Result        string    `json:"result"` // what ResolvePeer would answer now: hit, hold, nat_suspected, ...
	Reason        string    `json:"reason"`
	Pod           *podView  `json:"pod,omitempty"`
	Candidates    []podView `json:"candidates,omitempty"` // every cached pod listing the address
	HeldRequests  int       `json:"held_requests"`
	HeldBytes     int64     `json:"held_bytes"`
	Local         bool      `json:"local"`        // IsLocal: only local senders are held
	LocalReason   string    `json:"local_reason"` // why it is (not) local
	NegativeUntil time.Time `json:"negative_until,omitzero"`
	Synced        bool      `json:"synced"`
}

type listing struct {
	Node         string    `json:"node"`
	Synced       bool      `json:"synced"`
	HeldBytes    int64     `json:"held_bytes"`
	HeldRequests int64     `json:"held_requests"`
	NodeIPs      []string  `json:"node_ips"`
	Gateways     []string  `json:"pod_cidr_gateways"`
	PodCIDRs     []string  `json:"pod_cidrs,omitempty"`
	Negative     []string  `json:"negative,omitempty"`
	Pods         []podView `json:"pods"`
}

// DebugHandler serves /debug/pods: with ?ip=ADDR, how that address resolves
// and why (owner, competing pods, hold and negative-cache state); without it,
// every cached pod.
func (c *Cache) DebugHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v any
		if s := r.URL.Query().Get("ip"); s != "" {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				http.Error(w, "bad ip: "+err.Error(), http.StatusBadRequest)
				return
			}
			v = c.explain(ip)
		} else {
			v = c.list()
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	})
}

func view(e *entry, now time.Time, grace time.Duration) podView {
	p := e.obj.pod
	v := podView{Namespace: p.Namespace, Name: p.Name, UID: p.UID, HostNetwork: p.HostNetwork,
		State: e.cls.String(), StartTime: e.obj.start}
	for _, w := range e.pod.Workloads {
		v.Workloads = append(v.Workloads, workloadView{Kind: string(w.Kind), Name: w.Name, UID: w.UID})
	}
	for _, ip := range p.IPs {
		v.IPs = append(v.IPs, ip.String())
	}
	if e.cls == classDeleted {
		t := e.deletedAt
		v.DeletedAt = &t
		v.Expired = now.Sub(t) >= grace
	}
	return v
}

func (c *Cache) explain(ip netip.Addr) resolution {
	ip = ip.Unmap().WithZone("")
	now := c.clock.Now()
	local, localWhy := c.locality(ip) // may read a route: before the lock
	ph := c.peerHeld(ip)
	c.mu.RLock()
	defer c.mu.RUnlock()
	r := resolution{IP: ip.String(), Synced: c.isSynced(), Local: local, LocalReason: localWhy,
		HeldRequests: ph.reqs, HeldBytes: ph.bytes}
	owner := c.byIP.get(ip, now, c.cfg.PodDeleteGrace)
	for _, e := range c.byIP.cands[ip] {
		v := view(e, now, c.cfg.PodDeleteGrace)
		v.Owner = e == owner
		r.Candidates = append(r.Candidates, v)
	}
	if until, ok := c.negative[ip]; ok && now.Before(until) {
		r.NegativeUntil = until
	}
	switch res, why, nonPod := c.nonPodLocked(ip); {
	case owner != nil:
		v := view(owner, now, c.cfg.PodDeleteGrace)
		r.Pod, r.Result = &v, string(enrich.ResultHit)
		r.Reason = "owned by a " + owner.cls.String() + " pod"
		if len(r.Candidates) > 1 {
			r.Reason += "; it wins over the other claimants (live over finished or deleted, then newest start time)"
		}
	case nonPod:
		r.Result, r.Reason = string(res), why
	case !r.NegativeUntil.IsZero():
		r.Result, r.Reason = string(enrich.ResultUnknown), "a hold for this address timed out or was given up recently; not held again until negative_until unless a pod with it appears"
	case !local:
		r.Result, r.Reason = string(enrich.ResultUnknown), "not a sender on this node ("+localWhy+"): never held"
	case !r.Synced:
		r.Result, r.Reason = "hold", "pod cache not synced yet: requests are held until the address appears or the hold timeout"
	default:
		r.Result, r.Reason = "hold", "no pod on this node has this address (yet): requests are held until it appears or the hold timeout"
	}
	return r
}

func (c *Cache) list() listing {
	now := c.clock.Now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	l := listing{Node: c.cfg.NodeName, Synced: c.isSynced(), HeldBytes: c.held.Load(), HeldRequests: c.heldReqs.Load()}
	for ip := range c.nodeIPs {
		l.NodeIPs = append(l.NodeIPs, ip.String())
	}
	for ip := range c.gateways {
		l.Gateways = append(l.Gateways, ip.String())
	}
	for _, p := range c.podCIDRs {
		l.PodCIDRs = append(l.PodCIDRs, p.String())
	}
	for ip, until := range c.negative {
		if now.Before(until) {
			l.Negative = append(l.Negative, ip.String())
		}
	}
	for _, e := range c.byUID {
		l.Pods = append(l.Pods, view(e, now, c.cfg.PodDeleteGrace))
	}
	slices.Sort(l.NodeIPs)
	slices.Sort(l.Gateways)
	slices.Sort(l.Negative)
	slices.SortFunc(l.Pods, func(a, b podView) int {
		return strings.Compare(a.Namespace+"/"+a.Name+"/"+a.UID, b.Namespace+"/"+b.Name+"/"+b.UID)
	})
	return l
}
