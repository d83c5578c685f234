package informer

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/podstamp/podstamp/enrich"
)

// Defaults of Config, applied by New to zero fields.
const (
	DefaultHoldTimeout     = 3 * time.Second
	DefaultHoldMaxBytes    = 64 << 20
	DefaultHoldNegativeTTL = 60 * time.Second
	DefaultPodDeleteGrace  = 2 * time.Minute
	DefaultMetadataTTL     = 5 * time.Minute
	// DefaultHoldMaxPerPeerRequests bounds the requests of one peer held at
	// once. The per-peer byte bound defaults to HoldMaxBytes/8.
	DefaultHoldMaxPerPeerRequests = 16
)

// Config configures a Cache. Zero durations and sizes take the defaults above.
type Config struct {
	// NodeName is the node whose pods are cached (field selector spec.nodeName).
	NodeName string
	// NodeIPs are known non-pod addresses of this node (--node-ip). A peer
	// with one of them is never held (ResolvePeer answers host_network or
	// nat_suspected; nonPodLocked in resolve.go says which).
	NodeIPs []netip.Addr

	// HoldTimeout bounds how long a request whose peer is unknown is held.
	HoldTimeout time.Duration
	// HoldMaxBytes bounds the bytes of all requests held at once.
	HoldMaxBytes int64
	// HoldMaxPerPeerRequests and HoldMaxPerPeerBytes bound what one peer
	// address may have held at once, so that one sender cannot spend the
	// whole HoldMaxBytes and leave a new pod's first export unstamped.
	// Defaults: 16 requests and HoldMaxBytes/8.
	HoldMaxPerPeerRequests int
	HoldMaxPerPeerBytes    int64
	// HoldNegativeTTL is how long an address whose hold timed out is not held
	// again, unless the informer sees it.
	HoldNegativeTTL time.Duration
	// PodDeleteGrace is how long a deleted pod stays resolvable.
	PodDeleteGrace time.Duration
	// MetadataTTL is how long namespace, node and workload lookups are cached.
	MetadataTTL time.Duration

	// Needs says what the stamping rules need beyond the pod itself
	// (enrich.Config.Needs). Each one costs on-demand GETs of namespaces,
	// nodes, ReplicaSets and Jobs.
	Needs enrich.Needs

	// SkipNodeRead: the node object is never read. Its addresses are then
	// only NodeIPs, and its pod-CIDR gateways are not known, so SNAT through
	// a gateway is not recognised as such (nat_suspected). For a service
	// account without get on nodes, whose read would only be refused.
	// Refused with Needs.NodeMetadata.
	SkipNodeRead bool

	// Kubelet, when set, is where the node's pods are read: the kubelet's
	// /pods (NewKubelet), read every KubeletPollInterval and, while a
	// request is held for an address the cache does not know, again at most
	// KubeletRefreshGap after the last read, instead of a list and watch on
	// the API server. The API is still read for the node (at start, then
	// hourly, or every MetadataTTL when Needs asks for node metadata) and for
	// the metadata Needs asks for.
	Kubelet             KubeletPods
	KubeletPollInterval time.Duration // default DefaultKubeletPollInterval
	KubeletRefreshGap   time.Duration // default DefaultKubeletRefreshGap

	// RouteLookup returns the kernel's route to an address (see Route). It
	// decides whether a sender the cache knows nothing about is on this node
	// (IsLocal). nil: the kernel's routing table, read over netlink
	// (RTM_GETROUTE) on Linux; elsewhere every such sender counts as local.
	RouteLookup func(netip.Addr) (Route, error)
}

func (c Config) withDefaults() Config {
	if c.HoldTimeout == 0 {
		c.HoldTimeout = DefaultHoldTimeout
	}
	if c.HoldMaxBytes == 0 {
		c.HoldMaxBytes = DefaultHoldMaxBytes
	}
	if c.HoldNegativeTTL == 0 {
		c.HoldNegativeTTL = DefaultHoldNegativeTTL
	}
	if c.PodDeleteGrace == 0 {
		c.PodDeleteGrace = DefaultPodDeleteGrace
	}
	if c.MetadataTTL == 0 {
		c.MetadataTTL = DefaultMetadataTTL
	}
	if c.HoldMaxPerPeerRequests == 0 {
		c.HoldMaxPerPeerRequests = DefaultHoldMaxPerPeerRequests
	}
	if c.HoldMaxPerPeerBytes == 0 {
		c.HoldMaxPerPeerBytes = max(c.HoldMaxBytes/8, 1)
	}
	if c.KubeletPollInterval == 0 {
		c.KubeletPollInterval = DefaultKubeletPollInterval
	}
	if c.KubeletRefreshGap == 0 {
		c.KubeletRefreshGap = DefaultKubeletRefreshGap
	}
	if c.RouteLookup == nil {
		c.RouteLookup = kernelRoute
	}
	return c
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("informer: node name is required"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"hold timeout", c.HoldTimeout}, {"hold negative TTL", c.HoldNegativeTTL},
		{"pod delete grace", c.PodDeleteGrace}, {"metadata TTL", c.MetadataTTL},
		{"kubelet poll interval", c.KubeletPollInterval}, {"kubelet refresh gap", c.KubeletRefreshGap},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("informer: %s must not be negative, got %s", d.name, d.v))
		}
	}
	if c.HoldMaxBytes < 0 {
		errs = append(errs, fmt.Errorf("informer: hold max bytes must not be negative, got %d", c.HoldMaxBytes))
	}
	if c.HoldMaxPerPeerRequests < 0 {
		errs = append(errs, fmt.Errorf("informer: hold max per-peer requests must not be negative, got %d", c.HoldMaxPerPeerRequests))
	}
	if c.HoldMaxPerPeerBytes < 0 {
		errs = append(errs, fmt.Errorf("informer: hold max per-peer bytes must not be negative, got %d", c.HoldMaxPerPeerBytes))
	}
	for i, ip := range c.NodeIPs {
		if !ip.IsValid() {
			errs = append(errs, fmt.Errorf("informer: node IP #%d is not a valid address", i))
		}
	}
	if c.SkipNodeRead && c.Needs.NodeMetadata {
		errs = append(errs, errors.New("informer: the rules stamp node labels, annotations or UID, which needs the node read (SkipNodeRead)"))
	}
	return errors.Join(errs...)
}
