package enrich_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/enrich/enrichtest"
)

// cartAttrs is what the default rules stamp for cartPod found by an IPv4 peer.
func cartAttrs() map[string]any {
	return map[string]any{
		"k8s.namespace.name": "shop", "k8s.pod.name": "cart-7d9f8-abcde", "k8s.pod.uid": "uid-cart",
		"k8s.pod.start_time": "2026-11-25T10:00:00Z", "k8s.node.name": "node-a", "k8s.pod.ip": "10.1.0.5",
		"k8s.deployment.name": "cart", "k8s.replicaset.name": "cart-7d9f8",
		"k8s.container.name": "cart", "container.image.name": "ghcr.io/shop/cart", "container.image.tag": "1.2.3",
		"container.id":                "c0ffee01",
		"deployment.environment.name": "prod",
	}
}

// workerAttrs is what the default rules stamp for workerPod, no container chosen.
func workerAttrs() map[string]any {
	return map[string]any{
		"k8s.namespace.name": "batch", "k8s.pod.name": "report-2911-xyz", "k8s.pod.uid": "uid-worker",
		"k8s.pod.start_time": "2026-11-25T10:00:00Z", "k8s.node.name": "node-a", "k8s.pod.ip": "10.1.0.9",
		"k8s.job.name": "report-2911", "k8s.cronjob.name": "report",
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	m = maps.Clone(m)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(m, kv[i].(string))
			continue
		}
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

type stamper interface {
	Enrich(ctx context.Context, sig enrich.Signal, peer netip.Addr, body, dst []byte) ([]byte, enrich.Result, error)
}

func bothStampers(t testing.TB, cfg enrich.Config, r enrich.Resolver, opts ...enrich.Option) map[string]stamper {
	t.Helper()
	w := enrich.NewStamper(enrichtest.Rules(cfg), r, opts...)
	p, err := enrich.NewPdataStamper(cfg, r, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]stamper{"wire": w, "pdata": p}
}

// trust makes cfg trust the senders the rules match.
func trust(rules ...enrich.TrustedRelay) func(*enrich.Config) {
	return func(c *enrich.Config) { c.TrustedRelays = append(c.TrustedRelays, rules...) }
}

// trustCIDR trusts the senders whose address is in one of cidrs.
func trustCIDR(cidrs ...string) func(*enrich.Config) {
	return trust(enrich.TrustedRelay{CIDRs: cidrs})
}

func TestStampRules(t *testing.T) {
	cart := cartPod()
	cases := []struct {
		name    string
		cfg     func(*enrich.Config)
		peer    netip.Addr
		in      []map[string]any
		want    []map[string]any
		result  enrich.Result
		resolve int // ResolvePeer calls
		// conflicts are the claims reported, one entry per conflicting
		// resource: its Claims joined by ", ".
		conflicts []string
	}{
		{
			name: "defaults by connection", peer: peerCart,
			in: []map[string]any{{}}, want: []map[string]any{cartAttrs()}, result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "IPv6 peer stamps the pod's IPv6 address", peer: peerCart6,
			in: []map[string]any{{}}, want: []map[string]any{with(cartAttrs(), "k8s.pod.ip", "fd00::5")},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "IPv4-mapped peer counts as IPv4", peer: netip.MustParseAddr("::ffff:10.1.0.5"),
			in: []map[string]any{{}}, want: []map[string]any{cartAttrs()}, result: enrich.ResultHit, resolve: 1,
		},
		{
			// Identity attributes are not the client's to choose: see the
			// impersonation cases below.
			name: "client values win, empty strings count as absent", peer: peerCart,
			in:     []map[string]any{{"container.image.name": "theirs", "k8s.pod.name": "", "service.name": "checkout", "k8s.pod.start_time": int64(7)}},
			want:   []map[string]any{with(cartAttrs(), "container.image.name", "theirs", "service.name", "checkout", "k8s.pod.start_time", int64(7))},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "overwrite.keys replaces a client value", peer: peerCart,
			cfg:  func(c *enrich.Config) { c.Overwrite.Keys = []string{"container.image.tag", "k8s.pod.start_time"} },
			in:   []map[string]any{{"container.image.tag": "theirs", "k8s.pod.start_time": true, "keep": "me"}},
			want: []map[string]any{with(cartAttrs(), "keep", "me")}, result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "unknown_service kept without the overwrite", peer: peerCart,
			cfg: func(c *enrich.Config) { c.Service.Derive = true },
			in:  []map[string]any{{"service.name": "unknown_service:java"}},
			want: []map[string]any{with(cartAttrs(), "service.name", "unknown_service:java", "service.namespace", "shop",
				"service.version", "1.2.3", "service.instance.id", "shop.cart-7d9f8-abcde.cart")},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "unknown_service replaced with the overwrite, workload name", peer: peerCart,
			cfg: func(c *enrich.Config) { c.Service.Derive = true; c.Overwrite.UnknownService = true },
			in:  []map[string]any{{"service.name": "unknown_service:java"}},
			want: []map[string]any{with(cartAttrs(), "service.name", "cart", "service.namespace", "shop",
				"service.version", "1.2.3", "service.instance.id", "shop.cart-7d9f8-abcde.cart")},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "unknown_service overwrite leaves real names alone", peer: peerCart,
			cfg: func(c *enrich.Config) { c.Service.Derive = true; c.Overwrite.UnknownService = true },
			in:  []map[string]any{{"service.name": "checkout", "service.version": ""}},
			want: []map[string]any{with(cartAttrs(), "service.name", "checkout", "service.namespace", "shop",
				"service.version", "1.2.3", "service.instance.id", "shop.cart-7d9f8-abcde.cart")},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "well-known labels", peer: peerCart,
			cfg: func(c *enrich.Config) {
				c.Service.Derive, c.Service.WellKnownLabels = true, true
			},
			in: []map[string]any{{}},
			want: []map[string]any{with(cartAttrs(), "service.name", "cart-app", "service.namespace", "shop",
				"service.version", "1.2.3-label", "service.instance.id", "shop.cart-7d9f8-abcde.cart")},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "two containers, none named: no container attributes", peer: peerWorker,
			cfg:    func(c *enrich.Config) { c.Service.Derive = true },
			in:     []map[string]any{{}},
			want:   []map[string]any{with(workerAttrs(), "service.name", "report", "service.namespace", "batch")},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "container chosen by name", peer: peerWorker,
			in: []map[string]any{{"k8s.container.name": "sidecar"}},
			want: []map[string]any{with(workerAttrs(), "k8s.container.name", "sidecar", "container.image.name", "reg/proxy",
				"container.image.tag", "latest", "container.id", "bbbb")},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "container chosen by id", peer: peerWorker,
			in: []map[string]any{{"container.id": "aaaa"}},
			want: []map[string]any{with(workerAttrs(), "k8s.container.name", "main", "container.image.name", "reg/report",
				"container.image.tag", "v2", "container.id", "aaaa")},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "a previous restart's container id is kept", peer: peerCart,
			in:   []map[string]any{{"container.id": "c0ffee00"}},
			want: []map[string]any{with(cartAttrs(), "container.id", "c0ffee00")}, result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "trusted relay by CIDR: relayed resources keep their own pod", peer: peerCart, cfg: trustCIDR("10.1.0.5/32"),
			in: []map[string]any{{"k8s.pod.uid": "uid-worker"}, {"k8s.pod.ip": "10.1.0.9"},
				{"k8s.pod.name": "report-2911-xyz", "k8s.namespace.name": "batch"}},
			want:   []map[string]any{workerAttrs(), workerAttrs(), workerAttrs()},
			result: enrich.ResultResourceAttribute,
		},
		{
			name: "trusted relay: unknown uid does not fall through to the connection", peer: peerCart, cfg: trustCIDR("10.1.0.0/24"),
			in: []map[string]any{{"k8s.pod.uid": "uid-gone"}}, want: []map[string]any{{"k8s.pod.uid": "uid-gone"}},
			result: enrich.ResultResourceAttribute,
		},
		{
			name: "trusted relay: pod name without namespace is not a source", peer: peerCart, cfg: trustCIDR("10.1.0.5/32"),
			in:   []map[string]any{{"k8s.pod.name": "report-2911-xyz"}},
			want: []map[string]any{with(cartAttrs(), "k8s.pod.name", "report-2911-xyz")}, result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "trusted relay: unparsable k8s.pod.ip is not a source", peer: peerCart, cfg: trustCIDR("10.1.0.5/32"),
			in:   []map[string]any{{"k8s.pod.ip": "nope"}},
			want: []map[string]any{with(cartAttrs(), "k8s.pod.ip", "nope")}, result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "peer resolves to nothing", peer: peerNobody,
			in: []map[string]any{{"a": "b"}, {}}, want: []map[string]any{{"a": "b"}, {}}, result: enrich.ResultUnknown, resolve: 1,
		},
		{
			name: "trusted relay by namespace: peer resolved once for several resources", peer: peerCart,
			cfg:    trust(enrich.TrustedRelay{Namespaces: []string{"monitoring", "shop"}}),
			in:     []map[string]any{{}, {"k8s.pod.uid": "uid-worker"}, {"x": 1.5}},
			want:   []map[string]any{cartAttrs(), workerAttrs(), with(cartAttrs(), "x", 1.5)},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "trusted relay: association order, connection first", peer: peerCart,
			cfg: func(c *enrich.Config) {
				c.Association = []string{"connection", "k8s.pod.uid"}
				trustCIDR("10.1.0.5/32")(c)
			},
			in:   []map[string]any{{"k8s.pod.uid": "uid-worker"}},
			want: []map[string]any{with(cartAttrs(), "k8s.pod.uid", "uid-worker")}, result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "trusted relay: no connection association", peer: peerCart,
			cfg: func(c *enrich.Config) {
				c.Association = []string{"k8s.pod.uid"}
				trustCIDR("10.1.0.5/32")(c)
			},
			in: []map[string]any{{}}, want: []map[string]any{{}}, result: enrich.ResultResourceAttribute,
		},
		{
			name: "no resources", peer: peerCart, in: nil, want: nil, result: enrich.ResultResourceAttribute,
		},
		// An untrusted sender claiming another pod's identity is stamped as
		// its own pod, the claims replaced.
		{
			name: "impersonation by uid", peer: peerCart,
			in: []map[string]any{{"k8s.pod.uid": "uid-worker"}}, want: []map[string]any{cartAttrs()},
			result: enrich.ResultHit, resolve: 1, conflicts: []string{"k8s.pod.uid=uid-worker"},
		},
		{
			name: "impersonation by ip", peer: peerCart,
			in: []map[string]any{{"k8s.pod.ip": "10.1.0.9", "x": "y"}}, want: []map[string]any{with(cartAttrs(), "x", "y")},
			result: enrich.ResultHit, resolve: 1, conflicts: []string{"k8s.pod.ip=10.1.0.9"},
		},
		{
			name: "impersonation by name and namespace", peer: peerCart,
			in:     []map[string]any{{"k8s.pod.name": "report-2911-xyz", "k8s.namespace.name": "batch"}},
			want:   []map[string]any{cartAttrs()},
			result: enrich.ResultHit, resolve: 1, conflicts: []string{"k8s.namespace.name=batch, k8s.pod.name=report-2911-xyz"},
		},
		{
			name: "impersonation by another pod's container.id", peer: peerCart,
			in: []map[string]any{{"container.id": "aaaa"}}, want: []map[string]any{cartAttrs()},
			result: enrich.ResultHit, resolve: 1, conflicts: []string{"container.id=aaaa"},
		},
		{
			name: "a known pod claiming kube-system", peer: peerWorker,
			in:     []map[string]any{{"k8s.namespace.name": "kube-system", "k8s.node.name": "node-a"}, {}},
			want:   []map[string]any{workerAttrs(), workerAttrs()},
			result: enrich.ResultHit, resolve: 1, conflicts: []string{"k8s.namespace.name=kube-system"},
		},
		{
			name: "every kind of claim in one resource, overwrite off", peer: peerCart,
			in: []map[string]any{{
				"k8s.pod.uid": "uid-gone", "k8s.pod.ip": "nope", "k8s.node.name": int64(7),
				"k8s.deployment.name": "payments", "k8s.deployment.uid": "uid-other", "k8s.replicaset.uid": "uid-rs",
				"k8s.job.name": "report-2911", "k8s.statefulset.uid": "uid-ss", "k8s.pod.start_time": "kept",
			}},
			// The deployment's true UID replaces the claim although metadata
			// does not list k8s.deployment.uid; claims of workloads the pod
			// does not have are removed.
			want: []map[string]any{with(cartAttrs(), "k8s.deployment.uid", "uid-deploy", "k8s.replicaset.uid", "uid-rs",
				"k8s.pod.start_time", "kept")},
			result: enrich.ResultHit, resolve: 1,
			conflicts: []string{"k8s.pod.uid=uid-gone, k8s.pod.ip=nope, k8s.node.name=(not a string), k8s.deployment.name=payments, " +
				"k8s.deployment.uid=uid-other, k8s.statefulset.uid=uid-ss, k8s.job.name=report-2911"},
		},
		{
			name: "a claim the pod has no value for is removed", peer: peerWorker,
			in:     []map[string]any{{"container.id": "c0ffee01", "k8s.deployment.name": "cart"}},
			want:   []map[string]any{workerAttrs()},
			result: enrich.ResultHit, resolve: 1, conflicts: []string{"container.id=c0ffee01, k8s.deployment.name=cart"},
		},
		{
			name: "the pod's other-family address is not a conflict", peer: peerCart,
			in: []map[string]any{{"k8s.pod.ip": "fd00::5"}}, want: []map[string]any{with(cartAttrs(), "k8s.pod.ip", "fd00::5")},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "an IPv4-mapped form of the pod's address is not a conflict", peer: peerCart,
			in:     []map[string]any{{"k8s.pod.ip": "::ffff:10.1.0.5"}},
			want:   []map[string]any{with(cartAttrs(), "k8s.pod.ip", "::ffff:10.1.0.5")},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "container.id of the pod's own second container selects it", peer: peerWorker,
			in: []map[string]any{{"container.id": "bbbb"}},
			want: []map[string]any{with(workerAttrs(), "k8s.container.name", "sidecar", "container.image.name", "reg/proxy",
				"container.image.tag", "latest", "container.id", "bbbb")},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "an unknown container.id is not a conflict", peer: peerWorker,
			in: []map[string]any{{"container.id": "d00d"}}, want: []map[string]any{with(workerAttrs(), "container.id", "d00d")},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "an unknown container.id with a container name", peer: peerWorker,
			in: []map[string]any{{"container.id": "d00d", "k8s.container.name": "main"}},
			want: []map[string]any{with(workerAttrs(), "k8s.container.name", "main", "container.image.name", "reg/report",
				"container.image.tag", "v2", "container.id", "d00d")},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "a workload UID the cache did not look up is not checked", peer: peerWorker,
			in:     []map[string]any{{"k8s.job.uid": "uid-job", "k8s.cronjob.name": "other"}},
			want:   []map[string]any{with(workerAttrs(), "k8s.job.uid", "uid-job")},
			result: enrich.ResultHit, resolve: 1, conflicts: []string{"k8s.cronjob.name=other"},
		},
		{
			name: "matching identity attributes are no conflict", peer: peerCart,
			in: []map[string]any{{"k8s.pod.uid": "uid-cart", "k8s.namespace.name": "shop", "k8s.pod.name": "cart-7d9f8-abcde",
				"k8s.pod.ip": "10.1.0.5", "container.id": "c0ffee01", "k8s.deployment.uid": "uid-deploy"}},
			want:   []map[string]any{with(cartAttrs(), "k8s.deployment.uid", "uid-deploy")},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "unknown connection pod: claims pass through unstamped", peer: peerNobody,
			in:     []map[string]any{{"k8s.pod.uid": "uid-worker"}, {"k8s.namespace.name": "kube-system"}},
			want:   []map[string]any{{"k8s.pod.uid": "uid-worker"}, {"k8s.namespace.name": "kube-system"}},
			result: enrich.ResultUnknown, resolve: 1,
		},
		{
			name: "trusted relay by label selector", peer: peerCart,
			cfg: trust(enrich.TrustedRelay{PodSelector: &enrich.PodSelector{MatchLabels: map[string]string{"team": "payments", "tier": "backend"}}}),
			in:  []map[string]any{{"k8s.pod.ip": "10.1.0.9"}, {"container.id": "bbbb"}},
			want: []map[string]any{workerAttrs(), with(workerAttrs(), "k8s.container.name", "sidecar", "container.image.name", "reg/proxy",
				"container.image.tag", "latest", "container.id", "bbbb")},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "label selector: every label must match", peer: peerCart,
			cfg:  trust(enrich.TrustedRelay{PodSelector: &enrich.PodSelector{MatchLabels: map[string]string{"team": "payments", "tier": "frontend"}}}),
			in:   []map[string]any{{"k8s.pod.uid": "uid-worker"}},
			want: []map[string]any{cartAttrs()}, result: enrich.ResultHit, resolve: 1, conflicts: []string{"k8s.pod.uid=uid-worker"},
		},
		{
			name: "namespace rule: another namespace is untrusted", peer: peerCart,
			cfg:  trust(enrich.TrustedRelay{Namespaces: []string{"batch"}}),
			in:   []map[string]any{{"k8s.pod.name": "report-2911-xyz", "k8s.namespace.name": "batch"}},
			want: []map[string]any{cartAttrs()}, result: enrich.ResultHit, resolve: 1,
			conflicts: []string{"k8s.namespace.name=batch, k8s.pod.name=report-2911-xyz"},
		},
		{
			name: "a rule's fields must all match: namespace yes, CIDR no", peer: peerCart,
			cfg:  trust(enrich.TrustedRelay{Namespaces: []string{"shop"}, CIDRs: []string{"10.2.0.0/16"}}),
			in:   []map[string]any{{"k8s.pod.uid": "uid-worker"}},
			want: []map[string]any{cartAttrs()}, result: enrich.ResultHit, resolve: 1, conflicts: []string{"k8s.pod.uid=uid-worker"},
		},
		{
			name: "a rule's fields must all match: namespace and CIDR", peer: peerCart,
			cfg:  trust(enrich.TrustedRelay{Namespaces: []string{"shop"}, CIDRs: []string{"10.1.0.0/16"}}),
			in:   []map[string]any{{"k8s.pod.uid": "uid-worker"}},
			want: []map[string]any{workerAttrs()}, result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "any rule may match", peer: peerCart,
			cfg: trust(enrich.TrustedRelay{CIDRs: []string{"10.9.0.0/16"}},
				enrich.TrustedRelay{PodSelector: &enrich.PodSelector{MatchLabels: map[string]string{"team": "payments"}}}),
			in:   []map[string]any{{"k8s.pod.uid": "uid-worker"}},
			want: []map[string]any{workerAttrs()}, result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "CIDR rule: trusted without a pod, peer never resolved", peer: peerNobody, cfg: trustCIDR("10.1.0.200/32"),
			in:   []map[string]any{{"k8s.pod.uid": "uid-worker"}},
			want: []map[string]any{workerAttrs()}, result: enrich.ResultResourceAttribute,
		},
		{
			name: "CIDR rule: IPv4-mapped peer matches the IPv4 prefix", peer: netip.MustParseAddr("::ffff:10.1.0.5"), cfg: trustCIDR("10.1.0.5/32"),
			in:   []map[string]any{{"k8s.pod.uid": "uid-worker"}},
			want: []map[string]any{workerAttrs()}, result: enrich.ResultResourceAttribute,
		},
		{
			name: "CIDR rule: another address of the same pod is not trusted", peer: peerCart6, cfg: trustCIDR("10.1.0.5/32"),
			in:   []map[string]any{{"k8s.pod.uid": "uid-worker"}},
			want: []map[string]any{with(cartAttrs(), "k8s.pod.ip", "fd00::5")}, result: enrich.ResultHit, resolve: 1,
			conflicts: []string{"k8s.pod.uid=uid-worker"},
		},
		{
			name: "metadata subset, uids, cluster name", peer: peerCart,
			cfg: func(c *enrich.Config) {
				c.Metadata = []string{"k8s.pod.name", "k8s.deployment.uid", "k8s.replicaset.uid", "k8s.node.uid", "k8s.job.uid"}
				c.OtelAnnotations = false
				c.ClusterName = "eu-1"
			},
			in: []map[string]any{{}},
			want: []map[string]any{{"k8s.pod.name": "cart-7d9f8-abcde", "k8s.deployment.uid": "uid-deploy",
				"k8s.replicaset.uid": "uid-rs", "k8s.node.uid": "uid-node-a", "k8s.cluster.name": "eu-1"}},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "label and annotation rules", peer: peerCart,
			cfg: func(c *enrich.Config) {
				c.Metadata = nil
				c.OtelAnnotations = false
				c.Labels = []enrich.FieldRule{
					{Key: "team"},
					{Key: "tier", TagName: "tier"},
					{KeyRegex: "app\\.kubernetes\\.io/(.*)", TagName: "app.$1"},
					{KeyRegex: "app", TagName: "never"}, // anchored: matches no key
					{From: "namespace", Key: "tier"},
					{From: "node", KeyRegex: "topology\\.kubernetes\\.io/.*"},
				}
				c.Annotations = []enrich.FieldRule{
					{Key: "owner"},
					{KeyRegex: "note\\.example\\.com/(.*)", TagName: "note.$1"},
					{From: "namespace", Key: "contact", TagName: "contact"},
					{Key: "missing"},
				}
			},
			in: []map[string]any{{}},
			want: []map[string]any{{
				"k8s.pod.label.team": "payments", "tier": "backend",
				"app.name": "cart-app", "app.version": "1.2.3-label",
				"k8s.namespace.label.tier": "gold", "k8s.node.label.topology.kubernetes.io/zone": "z1",
				"k8s.pod.annotation.owner": "alice", "note.a": "x", "contact": "ops",
			}},
			result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "first rule wins for a key", peer: peerCart,
			cfg: func(c *enrich.Config) {
				c.Labels = []enrich.FieldRule{{Key: "team", TagName: "k8s.pod.name"}, {Key: "tier", TagName: "deployment.environment.name"}}
			},
			in: []map[string]any{{}}, want: []map[string]any{cartAttrs()}, result: enrich.ResultHit, resolve: 1,
		},
		{
			name: "otel annotation sets service.name before derivation", peer: peerCart,
			cfg: func(c *enrich.Config) { c.Service.Derive = true; c.Metadata = []string{"k8s.pod.name"} },
			in:  []map[string]any{{}},
			want: []map[string]any{{"k8s.pod.name": "cart-7d9f8-abcde", "deployment.environment.name": "prod",
				"service.name": "cart-svc", "service.namespace": "shop", "service.version": "1.2.3",
				"service.instance.id": "shop.cart-7d9f8-abcde.cart"}},
			result: enrich.ResultHit, resolve: 1,
			// cart's annotation resource.opentelemetry.io/service.name is added below.
		},
	}
	cart.Labels["app.kubernetes.io/name"] = "cart-app"
	cart.Labels["app.kubernetes.io/version"] = "1.2.3-label"
	for _, tc := range cases {
		for _, sig := range enrich.Signals {
			t.Run(tc.name+"/"+sig.String(), func(t *testing.T) {
				pod := cart
				if strings.HasPrefix(tc.name, "otel annotation") {
					pod = cartPod()
					pod.Annotations["resource.opentelemetry.io/service.name"] = "cart-svc"
				}
				cfg := enrich.DefaultConfig()
				if tc.cfg != nil {
					tc.cfg(&cfg)
				}
				in := requestWith(t, sig, tc.in...)
				for _, name := range []string{"wire", "pdata"} {
					r := enrichtest.New(pod, workerPod())
					var conflicts []string
					s := bothStampers(t, cfg, r, enrich.WithConflictHandler(func(c enrich.Conflict) {
						if c.Namespace != pod.Namespace && c.Namespace != "batch" || c.Peer != tc.peer.Unmap() || c.Signal != sig {
							t.Errorf("%s: conflict %+v: wrong pod, peer or signal", name, c)
						}
						var claims []string
						for _, cl := range c.Claims {
							claims = append(claims, cl.String())
						}
						conflicts = append(conflicts, strings.Join(claims, ", "))
					}))[name]
					out, res, err := s.Enrich(context.Background(), sig, tc.peer, in, nil)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					if res != tc.result {
						t.Errorf("%s: result %q, want %q", name, res, tc.result)
					}
					if !reflect.DeepEqual(conflicts, tc.conflicts) {
						t.Errorf("%s: conflicts\n got %q\nwant %q", name, conflicts, tc.conflicts)
					}
					if got := r.PeerCalls(); got != tc.resolve {
						t.Errorf("%s: %d ResolvePeer calls, want %d", name, got, tc.resolve)
					}
					got := attrMaps(t, sig, out)
					if len(got) != len(tc.want) {
						t.Fatalf("%s: %d resources, want %d", name, len(got), len(tc.want))
					}
					for i := range got {
						if !reflect.DeepEqual(got[i], tc.want[i]) {
							t.Errorf("%s: resource %d:\n got %v\nwant %v", name, i, got[i], tc.want[i])
						}
					}
					if name == "wire" {
						assertNoDuplicateKeys(t, sig, out)
						if reflect.DeepEqual(tc.in, tc.want) && !bytes.Equal(out, in) {
							t.Errorf("nothing added but output differs from input")
						}
					}
				}
			})
		}
	}
}

// assertNoDuplicateKeys checks that no resource has a key twice (pdata keeps
// duplicates in the order received).
func assertNoDuplicateKeys(t testing.TB, sig enrich.Signal, b []byte) {
	t.Helper()
	rs, err := resources(sig, b)
	if err != nil {
		t.Fatalf("output does not parse: %v", err)
	}
	for i, r := range rs {
		seen := map[string]bool{}
		for k := range r.Attributes().All() {
			if seen[k] {
				t.Errorf("resource %d: key %q appears twice", i, k)
			}
			seen[k] = true
		}
	}
}

// rawFields splits a message into its fields (tag included), failing on bad wire data.
func rawFields(t testing.TB, b []byte) (nums []protowire.Number, fields [][]byte, values [][]byte) {
	t.Helper()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag")
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			t.Fatalf("bad field %d", num)
		}
		var v []byte
		if typ == protowire.BytesType {
			v, _ = protowire.ConsumeBytes(b[n:])
		}
		nums, fields, values = append(nums, num), append(fields, b[:n+m]), append(values, v)
		b = b[n+m:]
	}
	return
}

// rawResources returns the Resource message of each Resource<Signal> (nil when absent).
func rawResources(t testing.TB, req []byte) [][]byte {
	var out [][]byte
	nums, _, vals := rawFields(t, req)
	for i, n := range nums {
		if n != 1 {
			continue
		}
		var res []byte
		rn, _, rv := rawFields(t, vals[i])
		for j, m := range rn {
			if m == 1 {
				res = append(res, rv[j]...)
			}
		}
		out = append(out, res)
	}
	return out
}

func TestPassThroughWithoutResolver(t *testing.T) {
	for _, sig := range enrich.Signals {
		s := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), nil)
		in := requestWith(t, sig, map[string]any{"k8s.pod.uid": "uid-cart"}, map[string]any{})
		dst := make([]byte, 0, 4096)
		out, res, err := s.Enrich(context.Background(), sig, peerCart, in, dst)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("%s: output differs from input", sig)
		}
		if &out[0] != &in[0] {
			t.Errorf("%s: unchanged request copied instead of returned as is", sig)
		}
		if res != enrich.ResultUnknown {
			t.Errorf("%s: result %q, want unknown", sig, res)
		}
	}
}

func TestHeldRequestEndsWithContext(t *testing.T) {
	r := enrichtest.New(cartPod())
	release := r.Hold()
	defer release()
	s := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), r)
	ctx, cancel := context.WithCancel(context.Background())
	type ret struct {
		out []byte
		err error
	}
	done := make(chan ret, 1)
	go func() {
		out, _, err := s.Enrich(ctx, enrich.Traces, peerCart, tracesWith(t, map[string]any{}), nil)
		done <- ret{out, err}
	}()
	<-r.Held()
	cancel()
	got := <-done
	if !errors.Is(got.err, context.Canceled) || got.out != nil {
		t.Fatalf("Enrich after cancel = (%d bytes, %v), want (nil, context.Canceled)", len(got.out), got.err)
	}
}

func TestHeldRequestStampedAfterRelease(t *testing.T) {
	r := enrichtest.New(cartPod())
	release := r.Hold()
	s := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), r)
	done := make(chan enrich.Result, 1)
	var out []byte
	go func() {
		var res enrich.Result
		out, res, _ = s.Enrich(context.Background(), enrich.Traces, peerCart, tracesWith(t, map[string]any{}), nil)
		done <- res
	}()
	<-r.Held()
	release()
	select {
	case res := <-done:
		if res != enrich.ResultHoldHit {
			t.Fatalf("result %q, want hold_hit", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Enrich did not return after release")
	}
	if got := attrMaps(t, enrich.Traces, out); !reflect.DeepEqual(got[0], cartAttrs()) {
		t.Fatalf("attributes %v", got[0])
	}
}

func TestPeerNotResolvedWhenNoResourceNeedsIt(t *testing.T) {
	// Only a relay trusted by its address alone can skip resolving the peer:
	// every other sender's resources are its own pod's.
	r := enrichtest.New(cartPod(), workerPod())
	r.Hold() // any ResolvePeer call would block forever
	cfg := enrich.DefaultConfig()
	trustCIDR("10.1.0.0/24")(&cfg)
	s := enrich.NewStamper(enrichtest.Rules(cfg), r)
	out, res, err := s.Enrich(context.Background(), enrich.Logs, peerCart,
		requestWith(t, enrich.Logs, map[string]any{"k8s.pod.uid": "uid-worker"}), nil)
	if err != nil || res != enrich.ResultResourceAttribute || r.PeerCalls() != 0 {
		t.Fatalf("res=%q err=%v calls=%d", res, err, r.PeerCalls())
	}
	if got := attrMaps(t, enrich.Logs, out); !reflect.DeepEqual(got[0], workerAttrs()) {
		t.Fatalf("attributes %v", got[0])
	}
}

func TestPodIPIsNeverThePeer(t *testing.T) {
	r := enrichtest.New()
	// The resolver attributes a NATed peer to cart: k8s.pod.ip must be cart's address.
	r.SetPeer(peerNobody, enrichtest.PeerAnswer{Pod: cartPod(), Result: enrich.ResultHit})
	for name, s := range bothStampers(t, enrich.DefaultConfig(), r) {
		out, _, err := s.Enrich(context.Background(), enrich.Metrics, peerNobody, requestWith(t, enrich.Metrics, map[string]any{}), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := attrMaps(t, enrich.Metrics, out)[0]["k8s.pod.ip"]; got != "10.1.0.5" {
			t.Errorf("%s: k8s.pod.ip = %v, want the pod's 10.1.0.5", name, got)
		}
	}
	// A pod without addresses gets no k8s.pod.ip at all.
	p := cartPod()
	p.IPs = nil
	r.SetPeer(peerNobody, enrichtest.PeerAnswer{Pod: p, Result: enrich.ResultHit})
	s := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), r)
	out, _, _ := s.Enrich(context.Background(), enrich.Metrics, peerNobody, requestWith(t, enrich.Metrics, map[string]any{}), nil)
	if got, ok := attrMaps(t, enrich.Metrics, out)[0]["k8s.pod.ip"]; ok {
		t.Errorf("k8s.pod.ip = %v for a pod without addresses", got)
	}
}
