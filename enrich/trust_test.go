package enrich_test

import (
	"context"
	"reflect"
	"testing"
	"unsafe"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/enrich/enrichtest"
)

// collect returns an option that appends every conflict to *out.
func collect(out *[]enrich.Conflict) enrich.Option {
	return enrich.WithConflictHandler(func(c enrich.Conflict) { *out = append(*out, c) })
}

func TestConflictIsReportedPerResourceAndOwnsItsStrings(t *testing.T) {
	for _, sig := range enrich.Signals {
		for _, name := range []string{"wire", "pdata"} {
			var got []enrich.Conflict
			s := bothStampers(t, enrich.DefaultConfig(), enrichtest.New(cartPod(), workerPod()), collect(&got))[name]
			in := requestWith(t, sig,
				map[string]any{"k8s.pod.uid": "uid-worker"},
				map[string]any{},
				map[string]any{"k8s.namespace.name": "kube-system", "k8s.pod.name": "coredns-1"})
			out, _, err := s.Enrich(context.Background(), sig, peerCart, in, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, a := range attrMaps(t, sig, out) {
				if !reflect.DeepEqual(a, cartAttrs()) {
					t.Errorf("%s %s: resource %d: %v", name, sig, i, a)
				}
			}
			// The claims must not alias the request: scribble over it.
			for i := range in {
				in[i] = 'X'
			}
			want := []enrich.Conflict{
				{Signal: sig, Peer: peerCart, Namespace: "shop", Name: "cart-7d9f8-abcde", UID: "uid-cart",
					Claims: []enrich.Claim{{Key: "k8s.pod.uid", Value: "uid-worker"}}},
				{Signal: sig, Peer: peerCart, Namespace: "shop", Name: "cart-7d9f8-abcde", UID: "uid-cart",
					Claims: []enrich.Claim{{Key: "k8s.namespace.name", Value: "kube-system"}, {Key: "k8s.pod.name", Value: "coredns-1"}}},
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s: conflicts\n got %+v\nwant %+v", name, sig, got, want)
			}
		}
	}
}

func TestConflictClaimsFromTheProfilesStringTable(t *testing.T) {
	// Key and value by reference into the dictionary: the claim is a copy.
	dict := field(2, cat(field(5, nil), field(5, []byte("k8s.pod.uid")), field(5, []byte("uid-worker"))))
	kv := field(1, cat(varintField(3, 1), field(2, varintField(8, 2))))
	var got []enrich.Conflict
	s := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), enrichtest.New(cartPod(), workerPod()), collect(&got))
	in := cat(field(1, field(1, kv)), dict)
	out, _, err := s.Enrich(context.Background(), enrich.Profiles, peerCart, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := attrMaps(t, enrich.Profiles, out)[0]; !reflect.DeepEqual(a, cartAttrs()) {
		t.Errorf("attributes %v", a)
	}
	for i := range in {
		in[i] = 0
	}
	if len(got) != 1 || !reflect.DeepEqual(got[0].Claims, []enrich.Claim{{Key: "k8s.pod.uid", Value: "uid-worker"}}) {
		t.Fatalf("conflicts %+v", got)
	}
}

func TestDuplicateIdentityKeysAreAllReplaced(t *testing.T) {
	// A decoder that keeps the last of a repeated key would read the second
	// k8s.pod.uid: every occurrence of a contradicting key must go.
	res := cat(strKV("k8s.pod.uid", "uid-cart"), strKV("x", "y"), strKV("k8s.pod.uid", "uid-worker"))
	in := field(1, field(1, res))
	for name, s := range bothStampers(t, enrich.DefaultConfig(), enrichtest.New(cartPod(), workerPod())) {
		out, _, err := s.Enrich(context.Background(), enrich.Traces, peerCart, in, nil)
		if err != nil {
			t.Fatal(err)
		}
		assertNoDuplicateKeys(t, enrich.Traces, out)
		if a := attrMaps(t, enrich.Traces, out)[0]; !reflect.DeepEqual(a, with(cartAttrs(), "x", "y")) {
			t.Errorf("%s: attributes %v", name, a)
		}
		if name == "wire" {
			checkPreserved(t, in, out)
		}
	}
}

func TestConnectionPodNotFound(t *testing.T) {
	// Hold timeout, NAT and host network: nothing is stamped, claims stay
	// as sent (there is no pod to compare them with), nothing is reported.
	for _, res := range []enrich.Result{enrich.ResultHoldTimeout, enrich.ResultNATSuspected, enrich.ResultHostNetwork, enrich.ResultNoBudget} {
		r := enrichtest.New(cartPod(), workerPod())
		r.SetPeer(peerCart, enrichtest.PeerAnswer{Result: res})
		var got []enrich.Conflict
		for name, s := range bothStampers(t, enrich.DefaultConfig(), r, collect(&got)) {
			in := requestWith(t, enrich.Logs, map[string]any{"k8s.pod.uid": "uid-worker"}, map[string]any{})
			out, gotRes, err := s.Enrich(context.Background(), enrich.Logs, peerCart, in, nil)
			if err != nil || gotRes != res {
				t.Fatalf("%s %s: result %q, err %v", name, res, gotRes, err)
			}
			want := []map[string]any{{"k8s.pod.uid": "uid-worker"}, {}}
			if a := attrMaps(t, enrich.Logs, out); !reflect.DeepEqual(a, want) {
				t.Errorf("%s %s: attributes %v", name, res, a)
			}
		}
		if len(got) != 0 {
			t.Errorf("%s: conflicts %+v", res, got)
		}
	}
}

func TestTrustedRelayNotCheckedForConflicts(t *testing.T) {
	// A trusted relay's resources may name any pod; one naming no known pod
	// is left alone, nothing is reported.
	cfg := enrich.DefaultConfig()
	cfg.TrustedRelays = []enrich.TrustedRelay{{Namespaces: []string{"batch"}}}
	var got []enrich.Conflict
	for name, s := range bothStampers(t, cfg, enrichtest.New(cartPod(), workerPod()), collect(&got)) {
		in := requestWith(t, enrich.Metrics,
			map[string]any{"k8s.pod.uid": "uid-cart"},
			map[string]any{"k8s.pod.name": "cart-7d9f8-abcde", "k8s.namespace.name": "shop"},
			map[string]any{"container.id": "c0ffee01"},
			map[string]any{"k8s.pod.uid": "uid-gone"},
			map[string]any{"k8s.container.name": "sidecar"})
		out, res, err := s.Enrich(context.Background(), enrich.Metrics, peerWorker, in, nil)
		if err != nil || res != enrich.ResultHit {
			t.Fatalf("%s: result %q, err %v", name, res, err)
		}
		want := []map[string]any{cartAttrs(), cartAttrs(), cartAttrs(), {"k8s.pod.uid": "uid-gone"},
			with(workerAttrs(), "k8s.container.name", "sidecar", "container.image.name", "reg/proxy", "container.image.tag", "latest", "container.id", "bbbb")}
		if a := attrMaps(t, enrich.Metrics, out); !reflect.DeepEqual(a, want) {
			t.Errorf("%s: attributes\n got %v\nwant %v", name, a, want)
		}
	}
	if len(got) != 0 {
		t.Errorf("conflicts %+v", got)
	}
}

func TestTrustDecidedOncePerRequest(t *testing.T) {
	// A pod rule resolves the peer once, shared with the resources that then
	// need the connection.
	cfg := enrich.DefaultConfig()
	cfg.TrustedRelays = []enrich.TrustedRelay{{Namespaces: []string{"ops"}}, {PodSelector: &enrich.PodSelector{MatchLabels: map[string]string{"team": "x"}}}}
	r := enrichtest.New(cartPod(), workerPod())
	s := enrich.NewStamper(enrichtest.Rules(cfg), r)
	in := requestWith(t, enrich.Traces, map[string]any{}, map[string]any{"k8s.pod.uid": "uid-worker"}, map[string]any{})
	if _, _, err := s.Enrich(context.Background(), enrich.Traces, peerCart, in, nil); err != nil {
		t.Fatal(err)
	}
	if n := r.PeerCalls(); n != 1 {
		t.Fatalf("%d ResolvePeer calls, want 1", n)
	}
}

func TestNoConflictCostsNoAllocation(t *testing.T) {
	// Identity attributes that agree with the pod, from a sender whose trust
	// needs its pod: the no-conflict path allocates nothing.
	cfg := enrich.DefaultConfig()
	cfg.TrustedRelays = []enrich.TrustedRelay{{Namespaces: []string{"monitoring"}}, {CIDRs: []string{"192.168.0.0/16"}}}
	var got []enrich.Conflict
	s := enrich.NewStamper(enrichtest.Rules(cfg), enrichtest.New(cartPod(), workerPod()), collect(&got))
	in := benchTraces(t, 64, 4, map[string]any{"service.name": "cart", "k8s.pod.uid": "uid-cart", "k8s.namespace.name": "shop",
		"k8s.pod.ip": "10.1.0.5", "container.id": "c0ffee00", "k8s.deployment.name": "cart", "k8s.node.name": "node-a"})
	ctx := context.Background()
	var segs [][]byte
	var side []byte
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		segs, side, _, err = s.EnrichSegments(ctx, enrich.Traces, peerCart, in, segs, side)
		if err != nil || len(segs) == 1 && unsafe.SliceData(segs[0]) == unsafe.SliceData(in) {
			t.Fatal("not stamped", err)
		}
	})
	limit := 0.0
	if raceEnabled {
		limit = 4 // the pooled scratch is sometimes dropped
	}
	if allocs > limit {
		t.Errorf("%.1f allocations per request, want at most %.0f", allocs, limit)
	}
	if len(got) != 0 {
		t.Errorf("conflicts %+v", got)
	}
}
