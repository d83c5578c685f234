package enrichtest

import (
	"context"
	"net/netip"
	"sync"

	"github.com/podstamp/podstamp/enrich"
)

// PeerAnswer is what ResolvePeer returns for one peer.
type PeerAnswer struct {
	Pod    *enrich.Pod
	Result enrich.Result
}

// Resolver is a fake enrich.Resolver. The zero value is not usable; use New.
type Resolver struct {
	mu    sync.Mutex
	pods  []*enrich.Pod
	peers map[netip.Addr]PeerAnswer
	hold  chan struct{}
	calls int
	held  chan struct{}
}

// New returns a Resolver that knows pods.
func New(pods ...*enrich.Pod) *Resolver {
	r := &Resolver{peers: map[netip.Addr]PeerAnswer{}, held: make(chan struct{}, 1024)}
	r.pods = append(r.pods, pods...)
	return r
}

// Add makes p known.
func (r *Resolver) Add(p *enrich.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pods = append(r.pods, p)
}

// SetPeer fixes ResolvePeer's answer for peer (e.g. a NAT or host-network
// result), overriding the IP index.
func (r *Resolver) SetPeer(peer netip.Addr, a PeerAnswer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.peers[peer.Unmap()] = a
}

// Hold makes ResolvePeer wait until the returned release func is called or
// the request's context ends (then it returns ctx.Err()).
func (r *Resolver) Hold() (release func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan struct{})
	r.hold = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			if r.hold == ch {
				r.hold = nil
			}
			r.mu.Unlock()
			close(ch)
		})
	}
}

// Held is signalled each time a ResolvePeer call starts holding.
func (r *Resolver) Held() <-chan struct{} { return r.held }

// PeerCalls is the number of ResolvePeer calls so far.
func (r *Resolver) PeerCalls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func (r *Resolver) find(match func(p *enrich.Pod) bool) *enrich.Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.pods {
		if match(p) {
			return p
		}
	}
	return nil
}

// ByUID implements enrich.Lookup.
func (r *Resolver) ByUID(uid string) *enrich.Pod {
	return r.find(func(p *enrich.Pod) bool { return p.UID == uid })
}

// ByIP implements enrich.Lookup; host-network pods are not indexed by IP.
func (r *Resolver) ByIP(ip netip.Addr) *enrich.Pod {
	ip = ip.Unmap()
	return r.find(func(p *enrich.Pod) bool {
		if p.HostNetwork {
			return false
		}
		for _, a := range p.IPs {
			if a.Unmap() == ip {
				return true
			}
		}
		return false
	})
}

// ByName implements enrich.Lookup.
func (r *Resolver) ByName(namespace, name string) *enrich.Pod {
	return r.find(func(p *enrich.Pod) bool { return p.Namespace == namespace && p.Name == name })
}

// ByContainerID implements enrich.Lookup.
func (r *Resolver) ByContainerID(id string) *enrich.Pod {
	return r.find(func(p *enrich.Pod) bool {
		for _, c := range p.Containers {
			for _, cid := range c.IDs {
				if cid == id {
					return true
				}
			}
		}
		return false
	})
}

// ResolvePeer implements enrich.Resolver.
func (r *Resolver) ResolvePeer(ctx context.Context, p enrich.Peer, size int) (*enrich.Pod, enrich.Result, error) {
	peer := p.Addr
	r.mu.Lock()
	r.calls++
	hold := r.hold
	a, fixed := r.peers[peer.Unmap()]
	r.mu.Unlock()
	res := enrich.ResultHit
	if hold != nil {
		select {
		case r.held <- struct{}{}:
		default:
		}
		select {
		case <-hold:
			res = enrich.ResultHoldHit
		case <-ctx.Done():
			return nil, enrich.ResultHoldTimeout, ctx.Err()
		}
	}
	if fixed {
		return a.Pod, a.Result, nil
	}
	if p := r.ByIP(peer); p != nil {
		return p, res, nil
	}
	return nil, enrich.ResultUnknown, nil
}

var _ enrich.Resolver = (*Resolver)(nil)

// Rules compiles cfg for a test's Stamper; a bad cfg is the test's bug, so
// it panics with the compile error.
func Rules(cfg enrich.Config) *enrich.Rules {
	r, err := enrich.Compile(cfg)
	if err != nil {
		panic(err)
	}
	return r
}
