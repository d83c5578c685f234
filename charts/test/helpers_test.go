package charttest

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in charts/podstamp/examples/rendered")

const upstreamSet = "upstream.endpoint=http://opentelemetry-collector.observability.svc:4317"

// variant is one set of values the chart is rendered with.
type variant struct {
	name  string   // golden file base name
	files []string // value files
	set   []string
}

func chartDir(t testing.TB) string {
	t.Helper()
	d, err := FindChart(".")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// variants: the default values (+ the required upstream), every ci/*-values.yaml
// and every examples/*-values.yaml.
func variants(t testing.TB) []variant {
	t.Helper()
	dir := chartDir(t)
	vs := []variant{{name: "defaults", set: []string{upstreamSet}}}
	for _, glob := range []string{"ci/*-values.yaml", "examples/*-values.yaml"} {
		files, err := filepath.Glob(filepath.Join(dir, glob))
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(files)
		for _, f := range files {
			base := strings.TrimSuffix(filepath.Base(f), "-values.yaml")
			prefix := strings.TrimSuffix(filepath.Dir(glob), "/")
			vs = append(vs, variant{name: prefix + "-" + base, files: []string{f}})
		}
	}
	if len(vs) < 7 {
		t.Fatalf("found only %d variants; ci/ or examples/ files are missing", len(vs))
	}
	return vs
}

func render(t testing.TB, v variant) *Output {
	t.Helper()
	out, err := Render(Options{ChartDir: chartDir(t), ValueFiles: v.files, Set: v.set})
	if err != nil {
		t.Fatalf("render %s: %v", v.name, err)
	}
	return out
}

// objects is a strict, typed decoding of a rendered manifest.
type objects struct {
	DaemonSet          *appsv1.DaemonSet
	ConfigMap          *corev1.ConfigMap
	ServiceAccount     *corev1.ServiceAccount
	Services           map[string]*corev1.Service
	ClusterRole        *rbacv1.ClusterRole
	ClusterRoleBinding *rbacv1.ClusterRoleBinding
	ServiceMonitor     map[string]any
	Kinds              []string
}

// decode splits a manifest and decodes every document strictly into its typed
// Kubernetes object: a field the API does not know fails the test.
func decode(t testing.TB, manifest string) objects {
	t.Helper()
	o := objects{Services: map[string]*corev1.Service{}}
	for _, doc := range strings.Split(manifest, "\n---") {
		doc = strings.TrimSpace(strings.TrimPrefix(doc, "---"))
		if doc == "" {
			continue
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("not YAML: %v\n%s", err, doc)
		}
		strict := func(into any) {
			t.Helper()
			if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
				t.Fatalf("%s does not decode strictly: %v\n%s", meta.Kind, err, doc)
			}
		}
		o.Kinds = append(o.Kinds, meta.Kind)
		switch meta.Kind {
		case "DaemonSet":
			if o.DaemonSet != nil {
				t.Fatal("two DaemonSets")
			}
			o.DaemonSet = &appsv1.DaemonSet{}
			strict(o.DaemonSet)
		case "ConfigMap":
			o.ConfigMap = &corev1.ConfigMap{}
			strict(o.ConfigMap)
		case "ServiceAccount":
			o.ServiceAccount = &corev1.ServiceAccount{}
			strict(o.ServiceAccount)
		case "Service":
			s := &corev1.Service{}
			strict(s)
			o.Services[s.Name] = s
		case "ClusterRole":
			o.ClusterRole = &rbacv1.ClusterRole{}
			strict(o.ClusterRole)
		case "ClusterRoleBinding":
			o.ClusterRoleBinding = &rbacv1.ClusterRoleBinding{}
			strict(o.ClusterRoleBinding)
		case "ServiceMonitor":
			o.ServiceMonitor = map[string]any{}
			strict(&o.ServiceMonitor)
		default:
			t.Fatalf("unexpected kind %q (%s)", meta.Kind, meta.APIVersion)
		}
	}
	if o.DaemonSet == nil || o.ConfigMap == nil {
		t.Fatalf("manifest lacks the DaemonSet or ConfigMap; kinds: %v", o.Kinds)
	}
	return o
}

func container(t testing.TB, o objects) corev1.Container {
	t.Helper()
	cs := o.DaemonSet.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("want 1 container, got %d", len(cs))
	}
	return cs[0]
}

func env(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

func hasArg(c corev1.Container, arg string) bool {
	for _, a := range c.Args {
		if a == arg {
			return true
		}
	}
	return false
}

func argValue(c corev1.Container, flagName string) (string, bool) {
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, flagName+"="); ok {
			return v, true
		}
	}
	return "", false
}

// golden compares got to the file, or rewrites it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `go test . -run TestGolden -update` to create it)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs from the rendered chart (run `go test . -run TestGolden -update` after checking the change):\n%s",
			filepath.Base(path), firstDiff(string(want), string(got)))
	}
}

func firstDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("line %d:\n  golden:   %q\n  rendered: %q", i+1, w, g)
		}
	}
	return "(identical lines, different bytes)"
}
