package cluster

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// client-go's shared transports keep idle-connection goroutines.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("k8s.io/apimachinery/pkg/util/wait.BackoffUntilWithContext.func1"),
		goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Typed[...]).updateUnfinishedWorkLoop"),
	)
}

// startForTest starts a cluster, skipping when the API server is not built yet
// (building it takes minutes; `make e2e` or PODSTAMP_BUILD_KUBE_APISERVER=1 does).
// etcd is built when it is missing (a minute or two; `make etcd` does it before).
func startForTest(t *testing.T) *Cluster {
	t.Helper()
	if bin, ok := CachedKubeAPIServer(); !ok && os.Getenv("PODSTAMP_BUILD_KUBE_APISERVER") == "" {
		t.Skipf("kube-apiserver not built yet (%s); run `make e2e` once or set PODSTAMP_BUILD_KUBE_APISERVER=1", bin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

func TestClusterLifecycle(t *testing.T) {
	c := startForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if err := c.CreateNamespace(ctx, "team-a", nil); err != nil {
		t.Fatal(err)
	}
	node, err := c.CreateNode(ctx, Node{
		Name: "node-1", InternalIPs: []netip.Addr{netip.MustParseAddr("10.77.0.2")},
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/24")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(node.Status.Addresses) != 2 || node.Spec.PodCIDR != "10.244.0.0/24" {
		t.Fatalf("node: addresses %v podCIDR %q", node.Status.Addresses, node.Spec.PodCIDR)
	}
	dep, err := c.CreateDeployment(ctx, "team-a", "checkout", "5d8f7b9c6d")
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("10.244.0.12")
	pod, err := c.StartPod(ctx, Pod{Namespace: "team-a", NodeName: "node-1", Owner: dep},
		PodStatus{IPs: []netip.Addr{ip, netip.MustParseAddr("fd00:10:244::12")}, HostIP: netip.MustParseAddr("10.77.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Client.CoreV1().Pods("team-a").Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != corev1.PodRunning || got.Status.PodIP != ip.String() || len(got.Status.PodIPs) != 2 {
		t.Fatalf("status not applied: %+v", got.Status)
	}
	if got.Spec.NodeName != "node-1" || got.Labels["pod-template-hash"] != "5d8f7b9c6d" ||
		len(got.OwnerReferences) != 1 || got.OwnerReferences[0].Name != "checkout-5d8f7b9c6d" {
		t.Fatalf("pod identity: node %q labels %v owners %v", got.Spec.NodeName, got.Labels, got.OwnerReferences)
	}
	if ids := ContainerIDs(got); len(ids) != 1 || len(ids[0]) != 64 {
		t.Fatalf("container IDs %v", ids)
	}

	// RBAC is enforced for ServiceAccount tokens from TokenRequest.
	if err := c.CreateServiceAccount(ctx, "team-a", "reader"); err != nil {
		t.Fatal(err)
	}
	token, err := c.ServiceAccountToken(ctx, "team-a", "reader", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(&rest.Config{Host: c.URL, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: c.CAPEM}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sa.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list pods as an unbound ServiceAccount: want Forbidden, got %v", err)
	}

	// An API server outage is real and it comes back on the same port.
	pid := c.APIServerPID()
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("API server PID %d still alive after StopAPIServer", pid)
	}
	if _, err := c.Client.CoreV1().Pods("team-a").Get(ctx, pod.Name, metav1.GetOptions{}); err == nil {
		t.Fatal("API server answered while stopped")
	}
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Pods("team-a").Get(ctx, pod.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if err := c.DeletePod(ctx, "team-a", pod.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Pods("team-a").Get(ctx, pod.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("pod still there after DeletePod: %v", err)
	}

	dir := c.Dir
	pid = c.APIServerPID()
	c.Stop()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("cluster dir %s not removed: %v", dir, err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("API server PID %d alive after Stop", pid)
	}
}
