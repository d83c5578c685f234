package main

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/proxy"
)

// podCache is what admission and identity headers ask the pod cache
// (*informer.Cache).
type podCache interface {
	// IsLocal tells whether an address is on this node.
	IsLocal(peer netip.Addr) bool
	// ByIP is the pod behind an address, or nil.
	ByIP(peer netip.Addr) *enrich.Pod
}

// admission is who may send OTLP through podstamp: loopback, this node's
// --node-ip addresses, --allow-cidr, and, with a pod cache, whatever the
// cache says is on this node (its pods, including brand-new ones). Anyone
// else could otherwise forward data upstream with the cluster's upstream
// credentials and have it stamped as they like.
type admission struct {
	nodeIPs []netip.Addr
	allow   []netip.Prefix
	local   podCache // nil without a pod cache
}

func (a admission) admit(peer netip.Addr) error {
	peer = peer.Unmap()
	switch {
	case !peer.IsValid():
		return errors.New("the sender's address is unknown")
	case peer.IsLoopback(), slices.Contains(a.nodeIPs, peer):
		return nil
	}
	for _, p := range a.allow {
		if p.Contains(peer) {
			return nil
		}
	}
	if a.local != nil {
		if a.local.IsLocal(peer) {
			return nil
		}
		return errors.New("not a pod of this node, an address of this node, or inside --allow-cidr (admit its network with --allow-cidr)")
	}
	return errors.New("not loopback, --node-ip, or inside --allow-cidr (admit its network with --allow-cidr)")
}

// parseCIDRs parses --allow-cidr values; each bad one is an error.
func parseCIDRs(ss []string) ([]netip.Prefix, []error) {
	out := make([]netip.Prefix, 0, len(ss))
	var errs []error
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q is not a CIDR (e.g. 10.0.0.0/8, fd00::/8; 0.0.0.0/0,::/0 admits everyone)", s))
			continue
		}
		out = append(out, p.Masked())
	}
	return out, errs
}

// identityAttributes are the pod attributes an upstream header may be set
// from (--upstream-header-from-identity).
var identityAttributes = map[string]func(*enrich.Pod) string{
	"k8s.namespace.name": func(p *enrich.Pod) string { return p.Namespace },
	"k8s.pod.name":       func(p *enrich.Pod) string { return p.Name },
	"k8s.pod.uid":        func(p *enrich.Pod) string { return p.UID },
	"k8s.node.name":      func(p *enrich.Pod) string { return p.NodeName },
}

// identityHeader is one --upstream-header-from-identity name=attribute.
type identityHeader struct {
	name  string // lower-case
	value func(*enrich.Pod) string
}

// parseIdentityHeaders parses --upstream-header-from-identity values; each
// bad one is an error.
func parseIdentityHeaders(ss []string) ([]identityHeader, []error) {
	var out []identityHeader
	var errs []error
	for _, s := range ss {
		name, attr, ok := strings.Cut(s, "=")
		name, attr = strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(attr)
		value := identityAttributes[attr]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%q is not name=attribute (e.g. x-scope-orgid=k8s.namespace.name)", s))
		case !validHeaderName(name) || !proxy.ForwardableHeader(name):
			errs = append(errs, fmt.Errorf("%q is not a header podstamp can set", name))
		case value == nil:
			errs = append(errs, fmt.Errorf("%q: attribute %q is not one of k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.node.name", s, attr))
		case slices.ContainsFunc(out, func(h identityHeader) bool { return h.name == name }):
			errs = append(errs, fmt.Errorf("header %q is given twice", name))
		default:
			out = append(out, identityHeader{name: name, value: value})
		}
	}
	return out, errs
}

// identityHook returns the proxy's IdentityHeaders hook: the headers of the
// peer's pod as the cache knows it (after stamping, so a held request's pod
// is in). An unknown pod, or an empty value, sets nothing.
func identityHook(hs []identityHeader, byIP func(netip.Addr) *enrich.Pod) func(netip.Addr) []string {
	return func(peer netip.Addr) []string {
		pod := byIP(peer)
		if pod == nil {
			return nil
		}
		out := make([]string, 0, 2*len(hs))
		for _, h := range hs {
			if v := h.value(pod); v != "" {
				out = append(out, h.name, v)
			}
		}
		return out
	}
}

func identityNames(hs []identityHeader) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.name
	}
	return out
}

// wireAdmission sets the proxy's admission and identity-header hooks from
// the resolved configuration; pods is nil without a pod cache.
func wireAdmission(set settings, pods podCache, opts *proxy.Options) error {
	opts.Admit = admission{nodeIPs: set.nodeIPs, allow: set.allow, local: pods}.admit

	ids := set.identity
	if len(ids) == 0 {
		return nil
	}
	if pods == nil {
		return errors.New("--upstream-header-from-identity: needs the pod cache (--node-name)")
	}
	for _, h := range ids {
		for _, t := range set.upstreams {
			if _, ok := t.Headers[h.name]; ok {
				return fmt.Errorf("--upstream-header-from-identity: %q is also a static upstream header (--upstream-header or OTEL_EXPORTER_OTLP_*HEADERS), which would override it", h.name)
			}
		}
	}
	opts.IdentityHeaders = identityHook(ids, pods.ByIP)
	opts.IdentityHeaderNames = identityNames(ids)
	return nil
}
