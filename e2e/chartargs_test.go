//go:build e2e

package e2e

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/podstamp/podstamp/e2e/netns"
)

// chartConfig is what the chart's DaemonSet, rendered with its default
// values, gives the podstamp container on one scenario's node: its
// arguments and environment with the downward API and $(VAR) references
// resolved as the kubelet would, minus the flags that name the test's own
// endpoints, which the harness sets itself.
type chartConfig struct {
	// Set is what was given to the renderer besides the default values.
	Set []string
	// Args are the container's arguments in the chart's order, with
	// --config pointing at ConfigFile and without the dropped flags.
	Args []string
	// Env is the container's environment (K=V), resolved.
	Env []string
	// Dropped are the rendered flags left to the harness.
	Dropped []string
	// ConfigFile holds the rendered ConfigMap's config.yaml.
	ConfigFile string
	// TerminationGrace is the pod's terminationGracePeriodSeconds: how long
	// the kubelet waits after SIGTERM before SIGKILL.
	TerminationGrace time.Duration
}

// droppedFlags name the test's own endpoints: the upstream (the suite's
// sink, whose protocol the harness picks), the API server (a kubeconfig
// instead of the in-cluster configuration), and the node (the harness
// passes the scenario's node and addresses). They are dropped from the
// chart's arguments; the harness sets them. --config is kept but points at
// a file with the rendered ConfigMap's content.
var droppedFlags = map[string]bool{
	"upstream": true, "upstream-protocol": true,
	"kubeconfig": true, "node-name": true, "node-ip": true,
}

// chartDefaults renders charts/podstamp with its default values plus
// upstream.endpoint (required) and set, the way scenario 8 renders it, and
// returns the podstamp container's configuration for this env's node.
func (e *env) chartDefaults(t *testing.T, set ...string) *chartConfig {
	t.Helper()
	set = append([]string{"upstream.endpoint=http://otel-gateway.observability.svc:4317"}, set...)
	objs := e.s.renderChart(t, "podstamp-"+e.s.prefix, e.ns, set...)
	var ds *unstructured.Unstructured
	configMaps := map[string]map[string]string{}
	for _, u := range objs {
		switch u.GetKind() {
		case "DaemonSet":
			ds = u
		case "ConfigMap":
			data, _, _ := unstructured.NestedStringMap(u.Object, "data")
			configMaps[u.GetName()] = data
		}
	}
	if ds == nil {
		t.Fatal("the chart rendered no DaemonSet")
	}
	var spec corev1.PodTemplateSpec
	tmpl, _, _ := unstructured.NestedMap(ds.Object, "spec", "template")
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, &spec); err != nil {
		t.Fatal(err)
	}
	var ctr *corev1.Container
	for i := range spec.Spec.Containers {
		if spec.Spec.Containers[i].Name == "podstamp" {
			ctr = &spec.Spec.Containers[i]
		}
	}
	if ctr == nil {
		t.Fatalf("the rendered DaemonSet has no podstamp container")
	}
	if !spec.Spec.HostNetwork {
		t.Fatalf("the chart's default DaemonSet is not hostNetwork: the scenarios run podstamp on the node address")
	}
	cc := &chartConfig{Set: set}
	if g := spec.Spec.TerminationGracePeriodSeconds; g != nil {
		cc.TerminationGrace = time.Duration(*g) * time.Second
	}

	// The environment, as the kubelet resolves it: the downward API for
	// this scenario's node, and $(VAR) of earlier variables.
	vars := map[string]string{}
	for _, ev := range ctr.Env {
		v := ev.Value
		switch {
		case ev.ValueFrom == nil:
			v = expandVars(v, vars)
		case ev.ValueFrom.FieldRef != nil:
			var ok bool
			if v, ok = e.downwardAPI(ev.ValueFrom.FieldRef.FieldPath); !ok {
				t.Fatalf("env %s: the harness has no value for field %s", ev.Name, ev.ValueFrom.FieldRef.FieldPath)
			}
		default:
			t.Fatalf("env %s: the default DaemonSet takes it from %+v, which the harness cannot provide", ev.Name, ev.ValueFrom)
		}
		vars[ev.Name] = v
		cc.Env = append(cc.Env, ev.Name+"="+v)
	}

	args := slices.Clone(ctr.Command)
	args = append(args, ctr.Args...)
	for i := 0; i < len(args); i++ {
		arg := expandVars(args[i], vars)
		if strings.Contains(arg, "$(") {
			t.Fatalf("argument %q: unresolved variable (the container's env has %v)", args[i], slices.Sorted(maps.Keys(vars)))
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if !strings.HasPrefix(arg, "-") {
			t.Fatalf("argument %q is not a --flag", arg)
		}
		// "--flag value": the value is the next argument (extraArgs may be
		// written so); bool flags have none.
		next := ""
		if !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			i++
			next = expandVars(args[i], vars)
			value, hasValue = next, true
		}
		switch {
		case droppedFlags[name]:
			cc.Dropped = append(cc.Dropped, strings.TrimSpace(arg+" "+next))
			continue
		case name == "upstream-ca-file" || name == "upstream-cert-file" || name == "upstream-key-file":
			t.Fatalf("the chart rendered %s: the suite's sink speaks plaintext", arg)
		case name == "config":
			cc.ConfigFile = filepath.Join(t.TempDir(), "podstamp.yaml")
			if err := os.WriteFile(cc.ConfigFile, []byte(mountedConfig(t, &spec.Spec, ctr, value, configMaps)), 0o600); err != nil {
				t.Fatal(err)
			}
			cc.Args = append(cc.Args, "--config="+cc.ConfigFile)
			continue
		}
		if hasValue {
			cc.Args = append(cc.Args, "--"+name+"="+value)
		} else {
			cc.Args = append(cc.Args, "--"+name)
		}
	}
	return cc
}

// downwardAPI is the value a fieldRef has for a pod of this env's node.
// In hostNetwork mode the pod's own address is the node's.
func (e *env) downwardAPI(path string) (string, bool) {
	switch path {
	case "spec.nodeName":
		return e.nodeName, true
	case "status.hostIP", "status.podIP":
		return netns.NodeIP.String(), true
	case "status.hostIPs", "status.podIPs":
		return netns.NodeIP.String() + "," + netns.NodeIP6.String(), true
	case "metadata.namespace":
		return e.ns, true
	case "metadata.name":
		return "podstamp-" + e.s.prefix + "-" + e.row.ID, true
	}
	return "", false
}

var varRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)`)

// expandVars expands $(NAME) from vars as Kubernetes does in args and env:
// $$ is a literal $, an unknown reference stays as written.
func expandVars(s string, vars map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		if v, ok := vars[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// mountedConfig is the content of path in the container: a ConfigMap key
// mounted there (subPath) or in a mounted directory.
func mountedConfig(t *testing.T, pod *corev1.PodSpec, ctr *corev1.Container, path string, configMaps map[string]map[string]string) string {
	t.Helper()
	for _, m := range ctr.VolumeMounts {
		key := m.SubPath
		if key == "" {
			rel, err := filepath.Rel(m.MountPath, path)
			if err != nil || strings.HasPrefix(rel, "..") || strings.Contains(rel, "/") {
				continue
			}
			key = rel
		} else if m.MountPath != path {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			data, ok := configMaps[v.ConfigMap.Name]
			if !ok {
				t.Fatalf("--config=%s: ConfigMap %s is not rendered", path, v.ConfigMap.Name)
			}
			content, ok := data[key]
			if !ok {
				t.Fatalf("--config=%s: ConfigMap %s has no key %s", path, v.ConfigMap.Name, key)
			}
			return content
		}
	}
	t.Fatalf("--config=%s: no ConfigMap is mounted there", path)
	return ""
}

// flag is the value the chart's arguments give --name ("" and false when
// they do not set it).
func (cc *chartConfig) flag(name string) (string, bool) {
	var v string
	var ok bool
	for _, a := range cc.Args {
		n, val, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if n == name {
			v, ok = val, true // a later one wins, as in podstamp's parser
		}
	}
	return v, ok
}

// duration is flag name as a duration; the test fails when the chart does
// not set it.
func (cc *chartConfig) duration(t *testing.T, name string) time.Duration {
	t.Helper()
	v, ok := cc.flag(name)
	if !ok {
		t.Fatalf("the chart renders no --%s", name)
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("the chart's --%s=%s: %v", name, v, err)
	}
	return d
}

// env is the value of variable name in the chart's environment.
func (cc *chartConfig) env(name string) (string, bool) {
	for _, kv := range cc.Env {
		if k, v, _ := strings.Cut(kv, "="); k == name {
			return v, true
		}
	}
	return "", false
}

// goMemLimit is GOMEMLIMIT as the chart computes it, in bytes; the test
// fails when the chart sets none.
func (cc *chartConfig) goMemLimit(t *testing.T) int64 {
	t.Helper()
	v, ok := cc.env("GOMEMLIMIT")
	if !ok {
		t.Fatalf("the chart sets no GOMEMLIMIT (set %v)", cc.Set)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("the chart's GOMEMLIMIT=%q is not a number of bytes: %v", v, err)
	}
	return n
}

// mergeConfig sets top-level keys of the rendered rules file: what a
// scenario adds to the chart's configuration (a key the chart renders
// with a non-empty value is not replaced but fails the test).
func (cc *chartConfig) mergeConfig(t *testing.T, add map[string]any) {
	t.Helper()
	if cc.ConfigFile == "" {
		t.Fatal("the chart renders no --config")
	}
	b, err := os.ReadFile(cc.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("the chart's config.yaml: %v", err)
	}
	for k, v := range add {
		if old, ok := cfg[k]; ok && !isEmpty(old) {
			t.Fatalf("the chart's config.yaml already sets %s to %v", k, old)
		}
		cfg[k] = v
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cc.ConfigFile, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// describe is the row note: the scenario ran the chart's configuration.
func (cc *chartConfig) describe(name string, extra []string) string {
	var env []string
	for _, kv := range cc.Env {
		if !strings.HasPrefix(kv, "K8S_") {
			env = append(env, kv)
		}
	}
	args := slices.Clone(cc.Args)
	for i, a := range args {
		if strings.HasPrefix(a, "--config=") {
			args[i] = "--config=<the rendered config.yaml>"
		}
	}
	s := fmt.Sprintf("%s ran the chart's default configuration (set %s): %s", name, strings.Join(cc.Set[1:], ","), strings.Join(args, " "))
	if len(cc.Set) == 1 {
		s = fmt.Sprintf("%s ran the chart's default configuration: %s", name, strings.Join(args, " "))
	}
	if len(env) > 0 {
		s += ", env " + strings.Join(env, " ")
	}
	if len(extra) > 0 {
		s += "; then for this scenario: " + strings.Join(extra, " ")
	}
	return s
}

// TestExpandVars: $(VAR) as the kubelet expands it in args and env.
func TestExpandVars(t *testing.T) {
	vars := map[string]string{"K8S_NODE_IP": "10.77.0.2", "K8S_NODE_IPS": "10.77.0.2,fd00:77::2"}
	for in, want := range map[string]string{
		"--grpc-listen=$(K8S_NODE_IP):4317": "--grpc-listen=10.77.0.2:4317",
		"--node-ip=$(K8S_NODE_IPS)":         "--node-ip=10.77.0.2,fd00:77::2",
		"--x=$$(K8S_NODE_IP)":               "--x=$(K8S_NODE_IP)",
		"--x=$(UNKNOWN)":                    "--x=$(UNKNOWN)",
		"--x=a$$b":                          "--x=a$b",
		"--x=$(K8S_NODE_IP)$(K8S_NODE_IP)":  "--x=10.77.0.210.77.0.2",
	} {
		if got := expandVars(in, vars); got != want {
			t.Errorf("expandVars(%q) = %q, want %q", in, got, want)
		}
	}
}
