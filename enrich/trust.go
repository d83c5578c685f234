package enrich

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// TrustedRelay is one rule of Config.TrustedRelays. A sender (the peer of a
// connection) matches the rule when every field the rule sets matches; a
// sender that matches no rule is untrusted and every resource it sends is
// stamped with its own pod.
type TrustedRelay struct {
	// Namespaces: the connection's pod is in one of these namespaces.
	Namespaces []string `json:"namespaces,omitempty"`
	// PodSelector: the connection's pod has all of these labels.
	PodSelector *PodSelector `json:"pod_selector,omitempty"`
	// CIDRs: the peer address is in one of these prefixes. A rule with only
	// CIDRs is decided without resolving the peer to a pod, so it is the
	// way to trust a relay on the host network (which resolves to no pod).
	CIDRs []string `json:"cidrs,omitempty"`
}

// PodSelector selects pods by their labels, like a Kubernetes label selector
// with matchLabels only.
type PodSelector struct {
	MatchLabels map[string]string `json:"match_labels,omitempty"`
}

// trustRule is a compiled TrustedRelay.
type trustRule struct {
	namespaces []string
	labels     map[string]string
	cidrs      []netip.Prefix
}

// needsPod reports whether the rule can only be decided with the sender's pod.
func (t *trustRule) needsPod() bool { return len(t.namespaces) > 0 || len(t.labels) > 0 }

func (t *trustRule) matchPeer(peer netip.Addr) bool {
	if len(t.cidrs) == 0 {
		return true
	}
	if !peer.IsValid() {
		return false
	}
	peer = peer.Unmap()
	for _, p := range t.cidrs {
		if p.Contains(peer) {
			return true
		}
	}
	return false
}

func (t *trustRule) matchPod(p *Pod) bool {
	if p == nil {
		return false
	}
	if len(t.namespaces) > 0 {
		found := false
		for _, ns := range t.namespaces {
			if ns == p.Namespace {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	for k, v := range t.labels {
		if pv, ok := p.Labels[k]; !ok || pv != v {
			return false
		}
	}
	return true
}

func compileTrust(in []TrustedRelay, bad func(format string, args ...any)) []trustRule {
	var out []trustRule
	for i, tr := range in {
		path := fmt.Sprintf("trusted_relays[%d]", i)
		r := trustRule{}
		ok := true
		for j, ns := range tr.Namespaces {
			if ns == "" {
				bad("%s.namespaces[%d]: empty namespace", path, j)
				ok = false
			}
		}
		r.namespaces = tr.Namespaces
		if tr.PodSelector != nil {
			if len(tr.PodSelector.MatchLabels) == 0 {
				bad("%s.pod_selector.match_labels: empty selector (it would match every pod)", path)
				ok = false
			}
			for k := range tr.PodSelector.MatchLabels {
				if k == "" {
					bad("%s.pod_selector.match_labels: empty label key", path)
					ok = false
				}
			}
			r.labels = tr.PodSelector.MatchLabels
		}
		for j, c := range tr.CIDRs {
			p, err := netip.ParsePrefix(strings.TrimSpace(c))
			switch {
			case err != nil:
				bad("%s.cidrs[%d]: %q is not a CIDR prefix (like 10.0.0.0/8 or fd00::/64)", path, j, c)
				ok = false
			case p.Addr().Is4In6():
				bad("%s.cidrs[%d]: %q is IPv4-mapped IPv6: write it as IPv4 (%s)", path, j, c,
					netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0)).Masked())
				ok = false
			case p != p.Masked():
				// A typo like 10.1.0.5/8 trusts a whole /8: make the
				// operator say which one was meant.
				bad("%s.cidrs[%d]: %q has bits set outside the prefix (did you mean %s?)", path, j, c, p.Masked())
				ok = false
			default:
				r.cidrs = append(r.cidrs, p)
			}
		}
		if len(tr.Namespaces) == 0 && tr.PodSelector == nil && len(tr.CIDRs) == 0 {
			bad("%s: empty rule: set namespaces, pod_selector or cidrs", path)
			ok = false
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

// Identity keys: the attributes that say which pod a resource is. From an
// untrusted sender they must agree with the connection's pod.
const (
	idNamespace = iota
	idPodName
	idPodUID
	idPodIP
	idNodeName
	idContainerID
	idWorkload      // then name and uid of each workloadOrder kind, interleaved
	numIdentityKeys = idWorkload + 2*len(workloadOrder)
)

// identityKeys are the identity keys, by index.
var identityKeys = func() [numIdentityKeys]string {
	k := [numIdentityKeys]string{AttrNamespaceName, AttrPodName, AttrPodUID, AttrPodIP, AttrNodeName, AttrContainerID}
	for i, w := range workloadOrder {
		k[idWorkload+2*i] = "k8s." + string(w) + ".name"
		k[idWorkload+2*i+1] = "k8s." + string(w) + ".uid"
	}
	return k
}()

// identityIndex is k's index in identityKeys, or -1. A switch of constants
// so that checking every client attribute costs no allocation and no hashing.
func identityIndex(k string) int {
	switch k {
	case AttrNamespaceName:
		return idNamespace
	case AttrPodName:
		return idPodName
	case AttrPodUID:
		return idPodUID
	case AttrPodIP:
		return idPodIP
	case AttrNodeName:
		return idNodeName
	case AttrContainerID:
		return idContainerID
	case "k8s.deployment.name":
		return idWorkload
	case "k8s.deployment.uid":
		return idWorkload + 1
	case "k8s.replicaset.name":
		return idWorkload + 2
	case "k8s.replicaset.uid":
		return idWorkload + 3
	case "k8s.statefulset.name":
		return idWorkload + 4
	case "k8s.statefulset.uid":
		return idWorkload + 5
	case "k8s.daemonset.name":
		return idWorkload + 6
	case "k8s.daemonset.uid":
		return idWorkload + 7
	case "k8s.job.name":
		return idWorkload + 8
	case "k8s.job.uid":
		return idWorkload + 9
	case "k8s.cronjob.name":
		return idWorkload + 10
	case "k8s.cronjob.uid":
		return idWorkload + 11
	}
	return -1
}

// identityValue is pod p's true value of identity key idx (empty: p has
// none), with container choice c and IP family fam as stamped.
func identityValue(p *Pod, idx, c int, fam family) string {
	switch idx {
	case idNamespace:
		return p.Namespace
	case idPodName:
		return p.Name
	case idPodUID:
		return p.UID
	case idPodIP:
		return podIP(p, fam)
	case idNodeName:
		return p.NodeName
	case idContainerID:
		return containerIDOf(p, c)
	}
	w := workload(p, workloadOrder[(idx-idWorkload)/2])
	switch {
	case w == nil:
		return ""
	case (idx-idWorkload)%2 == 0:
		return w.Name
	}
	return w.UID
}

// contradicts reports whether the client's value cv of key k is an identity
// claim that pod p is not: it returns k's identity index (or -1) and
// whether cv contradicts p. An absent or empty value claims nothing; a value
// that is not a string contradicts every identity key.
func (e *engine) contradicts(p *Pod, k string, cv clientValue) (int, bool) {
	idx := identityIndex(k)
	if idx < 0 || !cv.present {
		return idx, false
	}
	if !cv.isStr {
		return idx, true
	}
	switch idx {
	case idPodIP:
		a, err := netip.ParseAddr(cv.str)
		if err != nil {
			return idx, true
		}
		a = a.Unmap()
		for _, ip := range p.IPs {
			if ip.Unmap() == a {
				return idx, false
			}
		}
		return idx, true
	case idContainerID:
		for i := range p.Containers {
			for _, id := range p.Containers[i].IDs {
				if id == cv.str {
					return idx, false
				}
			}
		}
		// Only a container the cache knows to be another pod's is a
		// claim: an ID not in the cache may be this pod's container
		// whose status has not arrived yet.
		if e.res == nil {
			return idx, false
		}
		other := e.res.ByContainerID(strings.Clone(cv.str))
		return idx, other != nil && other.UID != p.UID
	}
	if idx >= idWorkload && (idx-idWorkload)%2 == 1 {
		// A workload UID the cache did not look up (no k8s.<kind>.uid in
		// metadata) cannot be checked; claiming a workload the pod does not
		// have can.
		w := workload(p, workloadOrder[(idx-idWorkload)/2])
		if w != nil && w.UID == "" {
			return idx, false
		}
	}
	return idx, identityValue(p, idx, noContainer, famAny) != cv.str
}

// Conflict is one resource from an untrusted sender whose identity
// attributes named another pod than the connection's. podstamp stamped it
// as the connection's pod. Every string is podstamp's own (never aliasing
// the request), so a Conflict may be kept.
type Conflict struct {
	Signal Signal
	// Peer is the connection's peer address.
	Peer netip.Addr
	// Namespace, Name and UID are the connection's pod.
	Namespace, Name, UID string
	// Claims are the contradicting attributes, in a fixed key order; for a
	// key sent more than once, the first contradicting value.
	Claims []Claim
}

// Claim is one contradicting attribute a client sent.
type Claim struct {
	Key string
	// Value is the claimed string; empty when NotString.
	Value string
	// NotString is set when the value was not a string (an int, a map...).
	NotString bool
}

func (c Claim) String() string {
	if c.NotString {
		return c.Key + "=(not a string)"
	}
	return c.Key + "=" + c.Value
}

// Option configures NewStamper.
type Option func(*engine)

// WithConflictHandler makes the stamper call f, synchronously, for every
// resource whose identity attributes contradict its untrusted sender's pod.
// f must be safe for concurrent use and quick: it runs on the request path.
// A conflict is reported when it is found, even if the request later turns
// out to be malformed.
func WithConflictHandler(f func(Conflict)) Option {
	return func(e *engine) { e.onConflict = f }
}

func newEngine(rs *rules, r Resolver, opts []Option) engine {
	e := engine{r: rs, res: r}
	for _, o := range opts {
		o(&e)
	}
	return e
}

func claimOf(idx int, cv clientValue) Claim {
	if !cv.isStr {
		return Claim{Key: identityKeys[idx], NotString: true}
	}
	return Claim{Key: identityKeys[idx], Value: strings.Clone(cv.str)}
}

func (e *engine) report(ps *peerState, p *Pod, claims []Claim) {
	if e.onConflict == nil {
		return
	}
	slices.SortFunc(claims, func(a, b Claim) int { return identityIndex(a.Key) - identityIndex(b.Key) })
	e.onConflict(Conflict{Signal: ps.sig, Peer: ps.peer.Addr, Namespace: p.Namespace, Name: p.Name, UID: p.UID, Claims: claims})
}
