package enrich

import (
	"context"
	"net/netip"
	"strings"
)

// engine is the rule set and the pod lookup shared by both encoders.
type engine struct {
	r          *rules
	res        Resolver // nil: no pod is ever found
	onConflict func(Conflict)
}

// resKeys are the client's non-empty string values of the keys association
// and container selection read. The strings may alias request bytes: they
// are cloned before they leave the engine.
type resKeys struct {
	uid, ip, name, namespace, containerID, containerName string
	// restart is the resource's k8s.container.restart_count, when restartSet.
	restart    int64
	restartSet bool
}

// peerState resolves the connection's peer, and decides whether it is a
// trusted relay, at most once per request.
type peerState struct {
	sig       Signal
	peer      Peer // Addr unmapped
	size      int
	needed    bool
	done      bool
	pod       *Pod
	res       Result
	trustDone bool
	trusted   bool
}

func (p *peerState) resolve(ctx context.Context, r Resolver) (*Pod, error) {
	p.needed = true
	if p.done {
		return p.pod, nil
	}
	p.done = true
	if r == nil || !p.peer.Addr.IsValid() {
		p.res = ResultUnknown
		return nil, nil
	}
	pod, res, err := r.ResolvePeer(ctx, p.peer, p.size)
	if err != nil {
		return nil, err
	}
	p.pod, p.res = pod, res
	return pod, nil
}

// result is the Result of a whole request.
func (p *peerState) result() Result {
	if !p.needed {
		return ResultResourceAttribute
	}
	return p.res
}

// podOf finds the pod of one resource: for a trusted relay by association,
// for any other sender the connection's pod. untrusted is set when the
// resource's identity attributes must then be checked against the pod.
func (e *engine) podOf(ctx context.Context, k *resKeys, ps *peerState) (pod *Pod, fam family, untrusted bool, err error) {
	trusted, err := e.isTrusted(ctx, ps)
	if err != nil {
		return nil, famAny, false, err
	}
	if trusted {
		pod, fam, err = e.associate(ctx, k, ps)
	} else {
		pod, err = ps.resolve(ctx, e.res)
		fam = peerFamily(ps.peer.Addr)
	}
	if pod != nil && !e.r.admits(pod) {
		// Filtered or excluded: as if the pod were unknown.
		return nil, famAny, false, err
	}
	return pod, fam, !trusted, err
}

// isTrusted reports whether the sender matches a trusted_relays rule. Rules
// that only name CIDRs are decided by the peer address alone; the others
// resolve the peer (once per request) and look at its pod.
func (e *engine) isTrusted(ctx context.Context, ps *peerState) (bool, error) {
	if ps.trustDone {
		return ps.trusted, nil
	}
	rules := e.r.trust
	for i := range rules {
		if !rules[i].needsPod() && rules[i].matchPeer(ps.peer.Addr) {
			ps.trustDone, ps.trusted = true, true
			return true, nil
		}
	}
	for i := range rules {
		if !rules[i].needsPod() || !rules[i].matchPeer(ps.peer.Addr) {
			continue
		}
		pod, err := ps.resolve(ctx, e.res)
		if err != nil {
			return false, err
		}
		if rules[i].matchPod(pod) {
			ps.trustDone, ps.trusted = true, true
			return true, nil
		}
	}
	ps.trustDone = true
	return false, nil
}

// associate finds the pod of one resource of a trusted relay: the first
// association source the resource can use decides. A resource attribute that is present but names no
// known pod does not fall through to later sources (its data is another
// pod's; stamping the sender's identity would be wrong).
func (e *engine) associate(ctx context.Context, k *resKeys, ps *peerState) (*Pod, family, error) {
	for _, a := range e.r.association {
		switch a {
		case assocUID:
			if k.uid != "" {
				return e.byUID(k.uid), famAny, nil
			}
		case assocIP:
			if k.ip == "" {
				continue
			}
			ip, err := netip.ParseAddr(k.ip)
			if err != nil {
				continue
			}
			if e.res == nil {
				return nil, famAny, nil
			}
			return e.res.ByIP(ip.Unmap()), famAny, nil
		case assocName:
			if k.name != "" && k.namespace != "" {
				if e.res == nil {
					return nil, famAny, nil
				}
				return e.res.ByName(strings.Clone(k.namespace), strings.Clone(k.name)), famAny, nil
			}
		case assocContainerID:
			if k.containerID != "" {
				if e.res == nil {
					return nil, famAny, nil
				}
				return e.res.ByContainerID(strings.Clone(k.containerID)), famAny, nil
			}
		case assocConnection:
			pod, err := ps.resolve(ctx, e.res)
			return pod, peerFamily(ps.peer.Addr), err
		}
	}
	return nil, famAny, nil
}

func (e *engine) byUID(uid string) *Pod {
	if e.res == nil {
		return nil
	}
	return e.res.ByUID(strings.Clone(uid))
}
