package charttest

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podstamp/podstamp/e2e/cluster"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

// TestAPIServerAccepts sends every variant to a real kube-apiserver (the one
// the e2e suite builds and caches) with server-side dry-run and strict field
// validation, then installs each variant's RBAC for real and asks the API
// server (SubjectAccessReview) what the chart's ServiceAccount may do.
// Skipped when the cached kube-apiserver or etcd is missing (`make
// kube-apiserver` and `make etcd` build them once).
func TestAPIServerAccepts(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	bin, ok := cluster.CachedKubeAPIServer()
	if !ok {
		t.Skip("no cached kube-apiserver (make e2e builds it once)")
	}
	if etcd, ok := cluster.CachedEtcd(); !ok {
		t.Skipf("no cached etcd at %s (make etcd builds it once)", etcd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{KubeAPIServer: bin, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)

	dc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}

	podstamp := buildPodstamp(t)

	// Pod Security: the pod must meet "restricted" except for what host
	// networking itself needs.
	const psaNS = "psa-restricted"
	if err := c.CreateNamespace(ctx, psaNS, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}); err != nil {
		t.Fatal(err)
	}

	for i, v := range variants(t) {
		t.Run(v.name, func(t *testing.T) {
			ns := fmt.Sprintf("chart-%d", i)
			if err := c.CreateNamespace(ctx, ns, map[string]string{"team": "t" + fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
			ports := make([]string, 4)
			for j := range ports {
				p, err := cluster.FreePort()
				if err != nil {
					t.Fatal(err)
				}
				ports[j] = fmt.Sprint(p)
			}
			set := append(append([]string(nil), v.set...), "ports.grpc="+ports[0], "ports.http="+ports[1], "ports.admin="+ports[2], "ports.debug="+ports[3])
			out, err := Render(Options{ChartDir: chartDir(t), ValueFiles: v.files, Set: set,
				ReleaseName: "ps" + fmt.Sprint(i), Namespace: ns})
			if err != nil {
				t.Fatal(err)
			}
			var rbac []*unstructured.Unstructured
			var sa, role string
			for _, doc := range strings.Split(out.Manifest, "\n---") {
				u := &unstructured.Unstructured{}
				if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
					t.Fatal(err)
				}
				if len(u.Object) == 0 {
					continue
				}
				gvk := u.GroupVersionKind()
				if gvk.Kind == "ServiceMonitor" {
					continue // the Prometheus Operator CRD is not installed here
				}
				m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
				if err != nil {
					t.Fatalf("%s: %v", gvk, err)
				}
				ri := dyn.Resource(m.Resource).Namespace(u.GetNamespace())
				if u.GetNamespace() == "" {
					ri = dyn.Resource(m.Resource)
				}
				_, err = ri.Create(ctx, u, metav1.CreateOptions{FieldValidation: "Strict", DryRun: []string{metav1.DryRunAll}})
				if err != nil {
					t.Errorf("server-side dry-run of %s %s: %v", gvk.Kind, u.GetName(), err)
				}
				switch gvk.Kind {
				case "ServiceAccount":
					sa = u.GetName()
					rbac = append(rbac, u)
				case "ClusterRole":
					role = u.GetName()
					rbac = append(rbac, u)
				case "ClusterRoleBinding":
					rbac = append(rbac, u)
				}
				if gvk.Kind == "ServiceAccount" || gvk.Kind == "ClusterRole" || gvk.Kind == "ClusterRoleBinding" {
					if _, err := ri.Create(ctx, u, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
						t.Fatalf("create %s: %v", gvk.Kind, err)
					}
					t.Cleanup(func() { _ = ri.Delete(context.Background(), u.GetName(), metav1.DeleteOptions{}) })
				}
			}
			if sa == "" || role == "" || len(rbac) != 3 {
				t.Fatalf("ServiceAccount %q / ClusterRole %q / %d RBAC objects", sa, role, len(rbac))
			}

			// What the API server lets the ServiceAccount do must be what the
			// ClusterRole says, and nothing else that matters.
			o := decode(t, out.Manifest)
			granted := ruleSet(o)
			user := "system:serviceaccount:" + ns + ":" + sa
			checks := []struct {
				group, resource, verb string
			}{
				{"", "pods", "get"}, {"", "pods", "list"}, {"", "pods", "watch"},
				{"", "namespaces", "get"}, {"", "nodes", "get"},
				{"apps", "replicasets", "get"}, {"batch", "jobs", "get"},
				{"", "secrets", "get"}, {"", "pods", "create"}, {"", "namespaces", "list"},
				{"", "nodes", "list"}, {"apps", "deployments", "get"}, {"", "configmaps", "get"},
			}
			for _, ch := range checks {
				want := false
				for _, g := range granted {
					gr, verbs, _ := strings.Cut(g, ":")
					if gr == ch.group+"/"+ch.resource && strings.Contains(","+verbs+",", ","+ch.verb+",") {
						want = true
					}
				}
				sar, err := c.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
					Spec: authorizationv1.SubjectAccessReviewSpec{
						User:   user,
						Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
						ResourceAttributes: &authorizationv1.ResourceAttributes{
							Group: ch.group, Resource: ch.resource, Verb: ch.verb, Namespace: "default",
						},
					},
				}, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if sar.Status.Allowed != want {
					t.Errorf("%s %s/%s: allowed=%v, the ClusterRole says %v", ch.verb, ch.group, ch.resource, sar.Status.Allowed, want)
				}
			}

			checkPodSecurity(ctx, t, c, o, psaNS, fmt.Sprintf("psa-%d", i))
			checkNoHostPorts(ctx, t, c, o, ns)

			token, err := c.ServiceAccountToken(ctx, ns, sa, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			runUnderChart(ctx, t, c, podstamp, o, token, fmt.Sprintf("127.0.0.%d", 60+i), slices.Contains(granted, "/nodes:get"))
		})
	}
}

// checkPodSecurity creates (dry-run) a pod from the DaemonSet's template in a
// namespace enforcing the "restricted" Pod Security Standard: it is admitted
// in service mode, and in hostNetwork mode refused for host networking only.
func checkPodSecurity(ctx context.Context, t *testing.T, c *cluster.Cluster, o objects, ns, name string) {
	t.Helper()
	spec := o.DaemonSet.Spec.Template.Spec.DeepCopy()
	if err := c.CreateServiceAccount(ctx, ns, spec.ServiceAccountName); err != nil {
		t.Fatal(err)
	}
	spec.NodeName = "node-psa"
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: *spec}
	_, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if !spec.HostNetwork {
		if err != nil {
			t.Errorf("Pod Security restricted refuses the service-mode pod: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), "hostNetwork=true") {
		t.Fatalf("want the hostNetwork pod refused by Pod Security restricted for host networking, got %v", err)
	}
	for _, check := range []string{"hostPort", "allowPrivilegeEscalation", "capabilities", "runAsNonRoot", "runAsUser", "seccompProfile", "privileged", "volume types"} {
		if strings.Contains(err.Error(), check) {
			t.Errorf("Pod Security restricted objects to more than host networking (%s): %v", check, err)
		}
	}
	t.Logf("Pod Security restricted, as expected: %v", err)
}

// checkNoHostPorts creates (dry-run) a pod from the DaemonSet's template and
// checks the API server's defaulted pod: it holds no host port, so a surge pod
// of a rolling update fits on the node next to the old one. (A hostNetwork
// pod's container ports all become host ports by defaulting.)
func checkNoHostPorts(ctx context.Context, t *testing.T, c *cluster.Cluster, o objects, ns string) {
	t.Helper()
	spec := o.DaemonSet.Spec.Template.Spec.DeepCopy()
	spec.NodeName = "node-" + ns
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hostports", Namespace: ns}, Spec: *spec}
	got, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("dry-run pod from the template: %v", err)
	}
	for _, ctr := range got.Spec.Containers {
		for _, p := range ctr.Ports {
			if p.HostPort != 0 {
				t.Errorf("the pod holds host port %d (%s): a surge pod could not be scheduled next to it", p.HostPort, p.Name)
			}
		}
	}
}
