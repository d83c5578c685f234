//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

// renderChart renders charts/podstamp with the chart's own renderer (the Helm
// SDK, charts/test/cmd/render) for release name in namespace.
func (s *suite) renderChart(t *testing.T, name, namespace string, set ...string) []*unstructured.Unstructured {
	t.Helper()
	render := s.bin("render")
	if _, err := os.Stat(render); err != nil {
		start := time.Now()
		cmd := exec.Command("go", "build", "-o", render, "./cmd/render")
		cmd.Dir = filepath.Join(s.root, "charts", "test")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build the chart renderer (charts/test/cmd/render): %v\n%s", err, out)
		}
		t.Logf("built the chart renderer in %v", time.Since(start).Round(time.Second))
	}
	args := []string{"--name", name, "--namespace", namespace}
	for _, kv := range set {
		args = append(args, "--set", kv)
	}
	cmd := exec.Command(render, args...)
	cmd.Dir = s.root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("render %v: %v\n%s", args, err, stderr.Bytes())
	}
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split(stdout.String(), "\n---") {
		if strings.TrimSpace(strings.Trim(doc, "-")) == "" {
			continue
		}
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("rendered manifest: %v\n%s", err, doc)
		}
		if string(js) == "null" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			t.Fatalf("rendered manifest: %v\n%s", err, doc)
		}
		objs = append(objs, u)
	}
	if len(objs) == 0 {
		t.Fatalf("the chart rendered no objects:\n%s", stdout.String())
	}
	return objs
}

// applier creates unstructured objects through the dynamic client.
type applier struct {
	dyn    dynamic.Interface
	mapper meta.RESTMapper
}

func newApplier(t *testing.T, cfg *rest.Config) *applier {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{dyn: dyn, mapper: restmapper.NewDiscoveryRESTMapper(groups)}
}

func (a *applier) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", gvk, err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return a.dyn.Resource(m.Resource).Namespace(u.GetNamespace()), nil
	}
	return a.dyn.Resource(m.Resource), nil
}

// create creates u; dryRun asks the API server to validate (strict field
// validation) and admit it without storing it.
func (a *applier) create(ctx context.Context, u *unstructured.Unstructured, dryRun bool) error {
	ri, err := a.resource(u)
	if err != nil {
		return err
	}
	opts := metav1.CreateOptions{FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	if _, err := ri.Create(ctx, u, opts); err != nil {
		return fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

func (a *applier) delete(ctx context.Context, u *unstructured.Unstructured) error {
	ri, err := a.resource(u)
	if err != nil {
		return err
	}
	if err := ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// scenarioLeastPrivilege: podstamp runs with a ServiceAccount token from
// TokenRequest, bound only to the RBAC rules the Helm chart renders, with the
// chart's rendered configuration; scenario 2 must still pass.
func scenarioLeastPrivilege(t *testing.T, s *suite) {
	e := s.newEnv(t, "8", "least privilege (chart RBAC, TokenRequest token)")
	ctx := context.Background()
	objs := s.renderChart(t, "podstamp-"+s.prefix, e.ns,
		"upstream.endpoint=http://otel-gateway.observability.svc:4317")
	ap := newApplier(t, s.cluster.Config)

	// Every rendered manifest passes the API server's strict validation.
	var kinds []string
	for _, u := range objs {
		if u.GetNamespace() == "" && isNamespaced(ap, u) {
			u.SetNamespace(e.ns)
		}
		kinds = append(kinds, u.GetKind())
		if err := ap.create(ctx, u, true); err != nil {
			t.Errorf("server-side dry-run: %v", err)
		}
	}

	// Apply the identity and its rights for real.
	var sa, role *unstructured.Unstructured
	var config string
	for _, u := range objs {
		switch u.GetKind() {
		case "ServiceAccount":
			sa = u
		case "ClusterRole":
			role = u
		case "ConfigMap":
			data, _, _ := unstructured.NestedStringMap(u.Object, "data")
			for _, v := range data {
				if config == "" {
					config = v
				}
			}
		}
		switch u.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			if err := ap.create(ctx, u, false); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := ap.delete(context.Background(), u); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			})
		}
	}
	if sa == nil || role == nil {
		t.Fatalf("the chart rendered no ServiceAccount or ClusterRole (kinds: %v)", kinds)
	}
	var cr rbacv1.ClusterRole
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(role.Object, &cr); err != nil {
		t.Fatal(err)
	}
	want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}}
	if !reflect.DeepEqual(cr.Rules, want) {
		t.Errorf("default ClusterRole rules = %+v, want exactly pods get/list/watch", cr.Rules)
	}
	token, err := s.cluster.ServiceAccountToken(ctx, sa.GetNamespace(), sa.GetName(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	// The token is really limited: no secrets, no nodes.
	limited, err := kubernetes.NewForConfig(&rest.Config{Host: s.cluster.URL, BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{CAData: s.cluster.CAPEM}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := limited.CoreV1().Secrets(e.ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing secrets with the chart's ServiceAccount: want Forbidden, got %v", err)
	}
	if _, err := limited.CoreV1().Nodes().Get(ctx, e.nodeName, metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("reading the node with the chart's ServiceAccount: want Forbidden, got %v", err)
	}

	var extra []string
	if config != "" {
		path := filepath.Join(t.TempDir(), "podstamp.yaml")
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		extra = append(extra, "--config", path)
	}
	e.row.note("rendered %v, all accepted by server-side dry-run; ClusterRole rules %d", kinds, len(cr.Rules))
	runIdentity(t, e, token, extra...)
}

func isNamespaced(a *applier, u *unstructured.Unstructured) bool {
	gvk := u.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	return err == nil && m.Scope.Name() == meta.RESTScopeNameNamespace
}
