package informer

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

func testNodeObj() *kubetypes.Node {
	return &kubetypes.Node{
		ObjectMeta: kubetypes.ObjectMeta{Name: testNode, UID: "node-uid", Labels: map[string]string{"zone": "z1"}},
		Spec:       kubetypes.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24", "fd00:10:244:1::/64"}},
		Status: kubetypes.NodeStatus{Addresses: []kubetypes.NodeAddress{
			{Address: "192.168.1.10"}, // InternalIP
			{Address: "203.0.113.10"}, // ExternalIP
			{Address: testNode},       // Hostname
		}},
	}
}

func resolveNow(t *testing.T, c *Cache, ip string) (*enrich.Pod, enrich.Result) {
	t.Helper()
	start := time.Now()
	p, res, err := c.ResolvePeer(context.Background(), enrich.Peer{Addr: netip.MustParseAddr(ip)}, 100)
	if err != nil {
		t.Fatalf("%s: %v", ip, err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("%s: took %v, must not be held", ip, d)
	}
	return p, res
}

func TestHostNetworkPodsNotIndexedByIP(t *testing.T) {
	hn := mkPod(podSpec{name: "node-agent", hostNetwork: true, ips: []string{"192.168.1.10"}})
	h := newHarness(t, Config{HoldTimeout: 10 * time.Second, NodeIPs: []netip.Addr{netip.MustParseAddr("192.168.1.10")}}, hn)
	h.start()
	if p := h.c.ByIP(netip.MustParseAddr("192.168.1.10")); p != nil {
		t.Fatalf("hostNetwork pod indexed by IP: %s", p.Name)
	}
	if p := h.c.ByName("default", "node-agent"); p == nil || !p.HostNetwork {
		t.Fatal("hostNetwork pod not found by name")
	}
	p, res := resolveNow(t, h.c, "192.168.1.10")
	if p != nil || res != enrich.ResultHostNetwork {
		t.Fatalf("got %v %v, want host_network", p, res)
	}
	// A hostNetwork pod's address is known even when it is not in NodeIPs.
	h.create(mkPod(podSpec{name: "other-agent", hostNetwork: true, ips: []string{"192.168.1.11"}}))
	h.waitEvent("upsert", "uid-other-agent")
	if p, res := resolveNow(t, h.c, "192.168.1.11"); p != nil || res != enrich.ResultHostNetwork {
		t.Fatalf("got %v %v, want host_network", p, res)
	}
	if strings.Contains(h.logs.String(), "SNAT") {
		t.Error("host_network must not log the NAT warning")
	}
}

func TestDualStackAndMappedPeers(t *testing.T) {
	h := newHarness(t, Config{HoldTimeout: 10 * time.Second},
		mkPod(podSpec{name: "ds", ips: []string{"10.244.1.20", "fd00:10:244:1::20"}}))
	h.start()
	for _, ip := range []string{"10.244.1.20", "fd00:10:244:1::20", "::ffff:10.244.1.20"} {
		p, res := resolveNow(t, h.c, ip)
		if p == nil || p.Name != "ds" || res != enrich.ResultHit {
			t.Errorf("%s: %v %v, want hit ds", ip, p, res)
		}
	}
	if p := h.c.ByIP(netip.MustParseAddr("::ffff:10.244.1.20")); p == nil {
		t.Error("ByIP with a mapped address")
	}
	p := h.c.ByUID("uid-ds")
	if p == nil || len(p.IPs) != 2 || !p.IPs[0].Is4() || !p.IPs[1].Is6() {
		t.Fatalf("pod IPs = %v", p)
	}
	// A held mapped peer is released by the pod's IPv4 address.
	got := h.resolveAsync(context.Background(), "::ffff:10.244.1.21", 1)
	h.waitHeld("10.244.1.21")
	h.create(mkPod(podSpec{name: "v4", ips: []string{"10.244.1.21"}}))
	if r := <-got; r.res != string(enrich.ResultHoldHit) || r.pod != "default/v4" {
		t.Fatalf("got %+v", r)
	}
	// And a held IPv6 peer by the pod's second address.
	got = h.resolveAsync(context.Background(), "fd00:10:244:1::22", 1)
	h.waitHeld("fd00:10:244:1::22")
	h.create(mkPod(podSpec{name: "v6", ips: []string{"10.244.1.22", "fd00:10:244:1::22"}}))
	if r := <-got; r.res != string(enrich.ResultHoldHit) || r.pod != "default/v6" {
		t.Fatalf("got %+v", r)
	}
}

func TestNATSuspectedPeers(t *testing.T) {
	hn := mkPod(podSpec{name: "kube-proxy", hostNetwork: true, ips: []string{"192.168.1.10"}})
	h := newHarness(t, Config{HoldTimeout: 10 * time.Second, NodeIPs: []netip.Addr{netip.MustParseAddr("192.168.1.10")}},
		testNodeObj(), hn)
	h.start()
	h.waitEvent("node", testNode) // the node object is read in the background after Run
	cases := []struct {
		ip   string
		want enrich.Result
	}{
		{"10.244.1.1", enrich.ResultNATSuspected},        // pod-CIDR gateway (bridge masquerade)
		{"fd00:10:244:1::1", enrich.ResultNATSuspected},  // IPv6 pod-CIDR gateway
		{"::ffff:10.244.1.1", enrich.ResultNATSuspected}, // mapped
		{"203.0.113.10", enrich.ResultNATSuspected},      // node address no hostNetwork pod uses
		{"192.168.1.10", enrich.ResultHostNetwork},       // node address of hostNetwork pods
	}
	for _, tc := range cases {
		p, res := resolveNow(t, h.c, tc.ip)
		if p != nil || res != tc.want {
			t.Errorf("%s: %v %v, want %v", tc.ip, p, res, tc.want)
		}
	}
	logs := h.logs.String()
	if n := strings.Count(logs, "SNATed"); n != 1 {
		t.Errorf("NAT warning logged %d times, want once (rate-limited):\n%s", n, logs)
	}
	for _, want := range []string{"hostNetwork", "internalTrafficPolicy: Local", "10.244.1.1"} {
		if !strings.Contains(logs, want) {
			t.Errorf("NAT warning lacks %q:\n%s", want, logs)
		}
	}
}

func TestNodeAddressNeverHeldBeforeSync(t *testing.T) {
	h := newHarness(t, Config{HoldTimeout: 10 * time.Second, NodeIPs: []netip.Addr{netip.MustParseAddr("192.168.1.10")}})
	// Not running: not synced.
	if p, res := resolveNow(t, h.c, "192.168.1.10"); p != nil || res != enrich.ResultHostNetwork {
		t.Fatalf("got %v %v, want host_network", p, res)
	}
}

func TestWorkloadDerivation(t *testing.T) {
	t.Parallel()
	ctrl := true
	ref := func(kind, name string) []kubetypes.OwnerReference {
		return []kubetypes.OwnerReference{{Kind: kind, Name: name, UID: "uid-" + name, Controller: &ctrl}}
	}
	cases := []struct {
		name   string
		owners []kubetypes.OwnerReference
		labels map[string]string
		want   []enrich.Workload
	}{
		{"deployment", ref("ReplicaSet", "web-5d8f7c9b6"), map[string]string{"pod-template-hash": "5d8f7c9b6"},
			[]enrich.Workload{{Kind: enrich.ReplicaSet, Name: "web-5d8f7c9b6"}, {Kind: enrich.Deployment, Name: "web"}}},
		{"bare replicaset", ref("ReplicaSet", "standalone"), nil,
			[]enrich.Workload{{Kind: enrich.ReplicaSet, Name: "standalone"}}},
		{"hash mismatch", ref("ReplicaSet", "web-abc"), map[string]string{"pod-template-hash": "xyz"},
			[]enrich.Workload{{Kind: enrich.ReplicaSet, Name: "web-abc"}}},
		{"cronjob", ref("Job", "backup-29123456"), nil,
			[]enrich.Workload{{Kind: enrich.Job, Name: "backup-29123456"}, {Kind: enrich.CronJob, Name: "backup"}}},
		{"plain job", ref("Job", "migrate-db"), nil,
			[]enrich.Workload{{Kind: enrich.Job, Name: "migrate-db"}}},
		{"statefulset", ref("StatefulSet", "db"), nil, []enrich.Workload{{Kind: enrich.StatefulSet, Name: "db"}}},
		{"daemonset", ref("DaemonSet", "agent"), nil, []enrich.Workload{{Kind: enrich.DaemonSet, Name: "agent"}}},
		{"unknown owner", ref("Node", testNode), nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := toPodObj(mkPod(podSpec{name: "p", owners: tc.owners, labels: tc.labels}))
			if !equalWorkloads(o.pod.Workloads, tc.want) {
				t.Fatalf("workloads %v, want %v", o.pod.Workloads, tc.want)
			}
		})
	}
}

func equalWorkloads(a, b []enrich.Workload) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !reflect.DeepEqual(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestPodConversion(t *testing.T) {
	t.Parallel()
	p := mkPod(podSpec{name: "conv", ips: []string{"10.0.0.1", "10.0.0.1", "fd00::1"}})
	p.Spec.InitContainers = []kubetypes.Container{{Name: "init", Image: "busybox"}}
	p.Spec.Containers = append(p.Spec.Containers, kubetypes.Container{Name: "side", Image: "ghcr.io/x/side@sha256:abc"})
	p.Status.ContainerStatuses[0].LastTerminationState.Terminated = &kubetypes.ContainerStateTerminated{ContainerID: "cri-o://prev"}
	o := toPodObj(p)
	ep := o.pod
	if len(ep.IPs) != 2 {
		t.Errorf("IPs %v, want deduplicated 2", ep.IPs)
	}
	want := []enrich.Container{
		{Name: "init", ImageName: "busybox", ImageTag: "latest"},
		{Name: "app", ImageName: "registry.example:5000/team/app", ImageTag: "1.2", IDs: []string{"cid-uid-conv", "prev"}},
		{Name: "side", ImageName: "ghcr.io/x/side", ImageTag: ""},
	}
	if len(ep.Containers) != len(want) {
		t.Fatalf("containers %+v", ep.Containers)
	}
	for i := range want {
		g := ep.Containers[i]
		if g.Name != want[i].Name || g.ImageName != want[i].ImageName || g.ImageTag != want[i].ImageTag || strings.Join(g.IDs, ",") != strings.Join(want[i].IDs, ",") {
			t.Errorf("container %d = %+v, want %+v", i, g, want[i])
		}
	}
	if !ep.StartTime.Equal(t0) || ep.NodeName != testNode || ep.UID != "uid-conv" {
		t.Errorf("pod %+v", ep)
	}
	if o.Labels != nil || o.Annotations != nil || o.OwnerReferences != nil {
		t.Errorf("the cache's object keeps more metadata than it reasons with: %+v", o.ObjectMeta)
	}
}

func TestMetadataLookups(t *testing.T) {
	t.Parallel()
	ns := namespaceObj(kubetypes.ObjectMeta{Name: "default", Labels: map[string]string{"team": "a"},
		Annotations: map[string]string{"owner": "ops"}})
	rs := replicaSetObj(kubetypes.ObjectMeta{Namespace: "default", Name: "web-5d8f", UID: "rs-uid",
		OwnerReferences: []kubetypes.OwnerReference{{Kind: "Deployment", Name: "web", UID: "deploy-uid"}}})
	job := jobObj(kubetypes.ObjectMeta{Namespace: "default", Name: "backup-42", UID: "job-uid",
		OwnerReferences: []kubetypes.OwnerReference{{Kind: "CronJob", Name: "backup", UID: "cron-uid"}}})
	web := mkPod(podSpec{name: "web-5d8f-x", ips: []string{"10.3.0.1"}, labels: map[string]string{"pod-template-hash": "5d8f"},
		owners: []kubetypes.OwnerReference{{Kind: "ReplicaSet", Name: "web-5d8f", UID: "rs-uid"}}})
	bk := mkPod(podSpec{name: "backup-42-y", ips: []string{"10.3.0.2"},
		owners: []kubetypes.OwnerReference{{Kind: "Job", Name: "backup-42", UID: "job-uid"}}})
	h := newHarness(t, Config{Needs: enrich.Needs{NamespaceMetadata: true, NodeMetadata: true, WorkloadUIDs: true}},
		ns, rs, job, testNodeObj(), web, bk)
	h.start()
	// The metadata is read off the watch loop, and the pods published again.
	p := awaitPod(t, h.c, "default", "web-5d8f-x", func(p *enrich.Pod) bool {
		return p.NamespaceLabels != nil && len(p.Workloads) == 2 && p.Workloads[1].UID != ""
	})
	awaitPod(t, h.c, "default", "backup-42-y", func(p *enrich.Pod) bool { return len(p.Workloads) == 2 && p.Workloads[1].UID != "" })
	if p == nil || p.NamespaceLabels["team"] != "a" || p.NamespaceAnnotations["owner"] != "ops" {
		t.Fatalf("namespace metadata missing: %+v", p)
	}
	if p.NodeUID != "node-uid" || p.NodeLabels["zone"] != "z1" {
		t.Errorf("node metadata missing: %+v", p)
	}
	want := []enrich.Workload{{Kind: enrich.ReplicaSet, Name: "web-5d8f", UID: "rs-uid"}, {Kind: enrich.Deployment, Name: "web", UID: "deploy-uid"}}
	if !equalWorkloads(p.Workloads, want) {
		t.Errorf("workloads %v, want %v", p.Workloads, want)
	}
	p = h.c.ByName("default", "backup-42-y")
	want = []enrich.Workload{{Kind: enrich.Job, Name: "backup-42", UID: "job-uid"}, {Kind: enrich.CronJob, Name: "backup", UID: "cron-uid"}}
	if p == nil || !equalWorkloads(p.Workloads, want) {
		t.Errorf("workloads %v, want %v", p, want)
	}
	// Without the flags, no GETs: the base pod is published as is.
	if o := toPodObj(web); o.pod.NamespaceLabels != nil || o.pod.Workloads[0].UID != "" {
		t.Error("base pod carries metadata")
	}
}

func TestMetadataFailureDoesNotBlock(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{Needs: enrich.Needs{NamespaceMetadata: true}, HoldTimeout: 10 * time.Second})
	var gets atomic.Int32
	h.api.Prepend("get", "namespaces", func(fakeCall) (bool, any, error) {
		gets.Add(1)
		return true, nil, errors.New("apiserver unavailable")
	})
	h.start()
	got := h.resolveAsync(context.Background(), "10.3.0.3", 1)
	h.waitHeld("10.3.0.3")
	h.create(mkPod(podSpec{name: "p", ips: []string{"10.3.0.3"}}))
	r := <-got
	if r.res != string(enrich.ResultHoldHit) || r.pod != "default/p" {
		t.Fatalf("got %+v", r)
	}
	if p := h.c.ByName("default", "p"); p == nil || p.NamespaceLabels != nil {
		t.Fatalf("pod %+v", p)
	}
	// The read is made off the watch loop; wait for it.
	for timeout := time.After(10 * time.Second); ; {
		next := h.c.meta.nextFill()
		if h.metric("podstamp_metadata_lookup_errors_total") >= 1 {
			break
		}
		select {
		case <-next:
		case <-timeout:
			t.Fatal("no failed metadata read counted")
		}
	}
	// A second pod of the namespace within the retry window does not GET again.
	h.create(mkPod(podSpec{name: "q", ips: []string{"10.3.0.4"}}))
	h.waitEvent("upsert", "uid-q")
	h.c.republish(context.Background(), true) // a pass that would read it for q
	if gets.Load() != 1 {
		t.Errorf("%d GETs, want 1 (failures are retried later, not per pod)", gets.Load())
	}
	// Once the API answers again, the pods that missed their metadata get it.
	h.c.meta.mu.Lock()
	clear(h.c.meta.fails) // as if the retry time passed
	h.c.meta.mu.Unlock()
	h.api.Prepend("get", "namespaces", func(fakeCall) (bool, any, error) {
		return true, &kubetypes.PartialObjectMetadata{ObjectMeta: kubetypes.ObjectMeta{Name: "default", Labels: map[string]string{"team": "a"}}}, nil
	})
	h.c.republish(context.Background(), true)
	for _, name := range []string{"p", "q"} {
		if p := h.c.ByName("default", name); p == nil || p.NamespaceLabels["team"] != "a" {
			t.Errorf("%s after the retry: %+v", name, p)
		}
	}
}

// TestGatewayHeldBeforeNodeReadGetsNAT: a request from the pod-CIDR gateway
// that arrives before the node was read is held, then answered nat_suspected
// as soon as the node is read (not hold_timeout).
func TestGatewayHeldBeforeNodeReadGetsNAT(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{HoldTimeout: 20 * time.Second}, testNodeObj())
	got := h.resolveAsync(context.Background(), "10.244.1.1", 10)
	h.waitHeld("10.244.1.1")
	if err := h.c.Ready(); err == nil {
		t.Fatal("ready before Run")
	}
	h.start()
	if r := <-got; r.res != string(enrich.ResultNATSuspected) || r.pod != "" || r.elapsed > 10*time.Second {
		t.Fatalf("got %+v, want nat_suspected once the node is read", r)
	}
	if !strings.Contains(h.logs.String(), "internalTrafficPolicy: Local") {
		t.Error("NAT warning not logged")
	}
}

// With the least-privilege RBAC the node cannot be read. That is expected:
// podstamp says so once at info level instead of warning every MetadataTTL.
func TestNodeReadForbiddenLoggedOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{MetadataTTL: time.Millisecond})
	var gets atomic.Int32
	h.api.Prepend("get", "nodes", func(fakeCall) (bool, any, error) {
		gets.Add(1)
		return true, nil, forbiddenErr("nodes", testNode)
	})
	h.start()
	h.c.meta.mu.Lock()
	clear(h.c.meta.fails) // as if the retry time passed
	h.c.meta.mu.Unlock()
	h.c.lookup(context.Background(), kindNode, "", testNode)
	if gets.Load() < 2 {
		t.Fatalf("%d node GETs, want at least 2", gets.Load())
	}
	logs := h.logs.String()
	if n := strings.Count(logs, "reading this node is not permitted"); n != 1 {
		t.Errorf("forbidden node read logged %d times, want once:\n%s", n, logs)
	}
	if strings.Contains(logs, "level=WARN") {
		t.Errorf("forbidden node read logged a warning:\n%s", logs)
	}
}
