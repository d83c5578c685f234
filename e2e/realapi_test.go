//go:build e2e

package e2e

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podstamp/podstamp/e2e/cluster"
	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/informer"
	"github.com/podstamp/podstamp/informer/kubetypes"
)

// recordingAPI records how the cache lists and watches.
type recordingAPI struct {
	informer.API
	mu      sync.Mutex
	lists   []informer.ListOptions
	watches []informer.ListOptions
}

func (r *recordingAPI) ListPods(ctx context.Context, o informer.ListOptions) (*kubetypes.PodList, error) {
	r.mu.Lock()
	r.lists = append(r.lists, o)
	r.mu.Unlock()
	return r.API.ListPods(ctx, o)
}

func (r *recordingAPI) WatchPods(ctx context.Context, o informer.ListOptions) (informer.Watcher, error) {
	r.mu.Lock()
	r.watches = append(r.watches, o)
	r.mu.Unlock()
	return r.API.WatchPods(ctx, o)
}

// TestNewAPIRealServer runs NewAPI (configured from the cluster's admin
// kubeconfig by LoadKubeconfig) and a Cache on it against a real
// kube-apiserver: metadata-only reads of namespaces, ReplicaSets and Jobs,
// the node, NotFound and Forbidden, and the pod watch. Run it with
// cd e2e && go test -tags e2e -run TestNewAPIRealServer . (needs etcd and the
// kube-apiserver that make e2e builds).
func TestNewAPIRealServer(t *testing.T) {
	if bin, ok := cluster.CachedKubeAPIServer(); !ok {
		t.Skipf("kube-apiserver not built yet (%s); run make e2e once", bin)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)

	const nodeName = "node-a"
	if err := c.CreateNamespace(ctx, "team", map[string]string{"team": "blue"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNode(ctx, cluster.Node{Name: nodeName, InternalIPs: []netip.Addr{netip.MustParseAddr("192.0.2.1")},
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/24")}}); err != nil {
		t.Fatal(err)
	}
	d, err := c.CreateDeployment(ctx, "team", "web", "7c9d8f6b50")
	if err != nil {
		t.Fatal(err)
	}
	cj, err := c.Client.BatchV1().CronJobs("team").Create(ctx, &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "nightly"},
		Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "app", Image: "registry.example/nightly:1"}}}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job, err := c.Client.BatchV1().Jobs("team").Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "nightly-29000000", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "batch/v1", Kind: "CronJob", Name: cj.Name, UID: cj.UID, Controller: ptr.To(true)}}},
		Spec: cj.Spec.JobTemplate.Spec,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	adminCfg, err := informer.LoadKubeconfig(c.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	api, err := informer.NewAPI(adminCfg)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := api.GetNamespaceMetadata(ctx, "team")
	if err != nil || ns.Labels["team"] != "blue" || ns.UID == "" {
		t.Errorf("namespace: %v %+v", err, ns)
	}
	rs, err := api.GetReplicaSetMetadata(ctx, "team", d.ReplicaSetName)
	if err != nil || rs.UID != string(d.ReplicaSetUID) || len(rs.OwnerReferences) != 1 || rs.OwnerReferences[0].UID != string(d.DeploymentUID) {
		t.Errorf("replicaset: %v %+v", err, rs)
	}
	jm, err := api.GetJobMetadata(ctx, "team", job.Name)
	if err != nil || jm.UID != string(job.UID) || len(jm.OwnerReferences) != 1 || jm.OwnerReferences[0].UID != string(cj.UID) {
		t.Errorf("job: %v %+v", err, jm)
	}
	n, err := api.GetNode(ctx, nodeName)
	if err != nil || len(n.Spec.PodCIDRs) != 1 || len(n.Status.Addresses) != 2 {
		t.Errorf("node: %v %+v", err, n)
	}
	for what, err := range map[string]error{
		"namespace": func() error { _, err := api.GetNamespaceMetadata(ctx, "nope"); return err }(),
		"rs":        func() error { _, err := api.GetReplicaSetMetadata(ctx, "team", "nope"); return err }(),
		"job":       func() error { _, err := api.GetJobMetadata(ctx, "team", "nope"); return err }(),
		"node":      func() error { _, err := api.GetNode(ctx, "nope"); return err }(),
	} {
		if !informer.IsNotFound(err) {
			t.Errorf("%s nope: %v, want NotFound", what, err)
		}
	}

	// A ServiceAccount without any RBAC.
	if err := c.CreateServiceAccount(ctx, "team", "nobody"); err != nil {
		t.Fatal(err)
	}
	tok, err := c.ServiceAccountToken(ctx, "team", "nobody", 0)
	if err != nil {
		t.Fatal(err)
	}
	anon := *adminCfg
	anon.BearerToken = tok
	denied, err := informer.NewAPI(&anon)
	if err != nil {
		t.Fatal(err)
	}
	for what, err := range map[string]error{
		"namespace": func() error { _, err := denied.GetNamespaceMetadata(ctx, "team"); return err }(),
		"rs":        func() error { _, err := denied.GetReplicaSetMetadata(ctx, "team", d.ReplicaSetName); return err }(),
		"job":       func() error { _, err := denied.GetJobMetadata(ctx, "team", job.Name); return err }(),
		"node":      func() error { _, err := denied.GetNode(ctx, nodeName); return err }(),
		"pods":      func() error { _, err := denied.ListPods(ctx, informer.ListOptions{}); return err }(),
	} {
		if !informer.IsForbidden(err) {
			t.Errorf("%s without RBAC: %v, want Forbidden", what, err)
		}
	}

	// The cache on NewAPI: a request from a pod's address is held until the
	// watch delivers the pod, which carries the workload UID and namespace
	// labels read as metadata.
	// A pod that runs before the cache starts comes with the streaming
	// list's initial events.
	early, err := c.CreatePod(ctx, cluster.Pod{Namespace: "team", NodeName: nodeName, Owner: d})
	if err != nil {
		t.Fatal(err)
	}
	earlyIP := netip.MustParseAddr("10.244.0.6")
	if _, err := c.SetPodRunning(ctx, early, cluster.PodStatus{IPs: []netip.Addr{earlyIP}}); err != nil {
		t.Fatal(err)
	}
	rec := &recordingAPI{API: api}
	cache, err := informer.New(rec, informer.Config{NodeName: nodeName, HoldTimeout: 30 * time.Second,
		Needs: enrich.Needs{NamespaceMetadata: true, NodeMetadata: true, WorkloadUIDs: true}}, slog.New(slog.NewTextHandler(os.Stderr, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cache.Run(runCtx) }()
	defer func() { stop(); <-done }()

	select {
	case <-cache.Synced():
	case <-ctx.Done():
		t.Fatal("the cache did not sync")
	}
	if p := cache.ByIP(earlyIP); p == nil || p.Name != early.Name {
		t.Errorf("the pod that ran before the cache started: %+v", p)
	}

	pod, err := c.CreatePod(ctx, cluster.Pod{Namespace: "team", NodeName: nodeName, Owner: d})
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("10.244.0.7")
	got := make(chan *enrich.Pod, 1)
	go func() {
		p, _, _ := cache.ResolvePeer(ctx, enrich.Peer{Addr: ip}, 1)
		got <- p
	}()
	if _, err := c.SetPodRunning(ctx, pod, cluster.PodStatus{IPs: []netip.Addr{ip}}); err != nil {
		t.Fatal(err)
	}
	p := <-got
	if p == nil || p.Name != pod.Name {
		t.Fatalf("resolved %+v", p)
	}
	// The request is released as soon as the pod is known; its metadata is
	// read off the watch loop (normally already while the pod had no
	// address) and the pod published again with it.
	var depUID string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		p = cache.ByName(pod.Namespace, pod.Name)
		for _, w := range p.Workloads {
			if w.Kind == enrich.Deployment {
				depUID = w.UID
			}
		}
		if depUID != "" && p.NamespaceLabels != nil && p.NodeUID != "" || time.Now().After(deadline) {
			break
		}
	}
	if p.Name != pod.Name || depUID != string(d.DeploymentUID) || p.NamespaceLabels["team"] != "blue" || p.NodeUID == "" {
		t.Errorf("resolved %+v", p)
	}
	if err := cache.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
	// Kubernetes 1.34 streams lists: no LIST, one watch of the node's pods
	// with sendInitialEvents and bookmarks, from the latest state.
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.lists) != 0 {
		t.Errorf("lists %+v, want none (a streaming list)", rec.lists)
	}
	if len(rec.watches) != 1 || rec.watches[0].FieldSelector != "spec.nodeName="+nodeName ||
		rec.watches[0].ResourceVersion != "" || !rec.watches[0].SendInitialEvents || !rec.watches[0].AllowWatchBookmarks {
		t.Errorf("watches %+v", rec.watches)
	}
}
