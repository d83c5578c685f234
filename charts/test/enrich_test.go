package charttest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/podstamp/podstamp/enrich"
)

// TestConfigAcceptedByBinary: the ConfigMap of every variant is accepted by the
// binary's own --config parser, and the ClusterRole grants exactly what that
// parsed config's Needs() makes the pod cache read.
func TestConfigAcceptedByBinary(t *testing.T) {
	// As the DaemonSet sets it (filter.node_from_env_var names it).
	t.Setenv("K8S_NODE_NAME", "node-a")
	vs := variants(t)
	// The RBAC single-rule cases are worth checking against Needs() too.
	for _, set := range [][]string{
		{"config.labels[0].from=namespace", "config.labels[0].key=team"},
		{"config.annotations[0].from=node", "config.annotations[0].key_regex=.*"},
		{"config.labels[0].key=app"},
		{"config.metadata={k8s.pod.name,k8s.node.uid}"},
		{"config.metadata={k8s.pod.uid,k8s.deployment.uid}"},
		{"config.metadata={k8s.job.uid}"},
		{"config.metadata={k8s.cluster.uid}"},
		{"config.annotations[0].from=cronjob", "config.annotations[0].key=a"},
		{"config.k8sattributes.extract.labels[0].from=daemonset", "config.k8sattributes.extract.labels[0].key=a"},
		{"config.k8sattributes.extract.metadata={k8s.pod.name,k8s.deployment.uid}"},
	} {
		vs = append(vs, variant{name: fmt.Sprint(set), set: append([]string{upstreamSet}, set...)})
	}
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			o := decode(t, render(t, v).Manifest)
			cfg, err := enrich.ParseConfig([]byte(o.ConfigMap.Data["config.yaml"]))
			if err != nil {
				t.Fatalf("podstamp rejects the rendered config: %v\n%s", err, o.ConfigMap.Data["config.yaml"])
			}
			n := cfg.Needs()
			rules := ruleSet(o)
			has := func(r string) bool { return slices.Contains(rules, r) }
			if has("/namespaces:get") != n.NamespaceMetadata {
				t.Errorf("namespaces get granted=%v, config needs namespace metadata=%v", has("/namespaces:get"), n.NamespaceMetadata)
			}
			if n.ClusterUID && !n.NamespaceMetadata && !has("/namespaces[kube-system]:get") {
				t.Error("config needs the cluster UID but namespace kube-system get is not granted")
			}
			if has("/namespaces[kube-system]:get") && !n.ClusterUID {
				t.Error("namespace kube-system get granted although the config does not need it")
			}
			wm := true
			for _, r := range []string{"apps/deployments:get", "apps/statefulsets:get", "apps/daemonsets:get", "batch/cronjobs:get"} {
				wm = wm && has(r)
				if has(r) && !n.WorkloadMetadata {
					t.Errorf("%s granted although the config reads no workload labels or annotations", r)
				}
			}
			if n.WorkloadMetadata && !wm {
				t.Errorf("config reads workload labels/annotations but the workloads are not all granted: %v", rules)
			}
			if n.NodeMetadata && !has("/nodes:get") {
				t.Error("config needs node metadata but nodes get is not granted")
			}
			if !n.NodeMetadata && has("/nodes:get") && v.name != "ci-rules" {
				t.Error("nodes get granted although the config does not need it")
			}
			wl := has("apps/replicasets:get") && has("batch/jobs:get")
			if wl != (n.WorkloadUIDs || n.WorkloadMetadata) || (!wl && (has("apps/replicasets:get") || has("batch/jobs:get"))) {
				t.Errorf("replicasets/jobs get granted=%v, config needs workload UIDs=%v (rules %v)", wl, n.WorkloadUIDs, rules)
			}
		})
	}
}

// TestDefaultConfigMatchesBinary: the chart's default config value is the binary's default.
func TestDefaultConfigMatchesBinary(t *testing.T) {
	o := decode(t, render(t, variant{set: []string{upstreamSet}}).Manifest)
	got, err := enrich.ParseConfig([]byte(o.ConfigMap.Data["config.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	want := enrich.DefaultConfig()
	norm := func(c enrich.Config) string {
		b, _ := json.Marshal(c)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		for k, v := range m { // nil and empty lists mean the same
			if l, ok := v.([]any); ok && len(l) == 0 {
				delete(m, k)
			}
		}
		if ow, ok := m["overwrite"].(map[string]any); ok {
			if l, ok := ow["keys"].([]any); ok && len(l) == 0 {
				delete(ow, "keys")
			}
		}
		b, _ = json.Marshal(m)
		return string(b)
	}
	if norm(got) != norm(want) {
		t.Errorf("chart default config differs from enrich.DefaultConfig():\n chart:  %s\n binary: %s", norm(got), norm(want))
	}
}

// TestSchemaEnumsAcceptedByBinary: every metadata key and association the schema allows, podstamp accepts.
func TestSchemaEnumsAcceptedByBinary(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir(t), "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Definitions struct {
			MetadataKey struct {
				Enum []string `json:"enum"`
			} `json:"metadataKey"`
		} `json:"definitions"`
	}
	var own struct {
		Definitions struct {
			PodstampConfig struct {
				Properties struct {
					Association struct {
						Items struct {
							Enum []string `json:"enum"`
						} `json:"items"`
					} `json:"association"`
				} `json:"properties"`
			} `json:"podstampConfig"`
		} `json:"definitions"`
	}
	if err := json.Unmarshal(b, &own); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	keys, assoc := s.Definitions.MetadataKey.Enum, own.Definitions.PodstampConfig.Properties.Association.Items.Enum
	if len(keys) < 16 || len(assoc) != 5 {
		t.Fatalf("schema enums not found: %d metadata keys, %d associations", len(keys), len(assoc))
	}
	for _, k := range keys {
		if _, err := enrich.ParseConfig([]byte("metadata: [" + k + "]\n")); err != nil {
			t.Errorf("schema allows metadata %s, podstamp rejects it: %v", k, err)
		}
	}
	for _, a := range assoc {
		if _, err := enrich.ParseConfig([]byte("association: [" + a + "]\n")); err != nil {
			t.Errorf("schema allows association %s, podstamp rejects it: %v", a, err)
		}
	}
	// Every default metadata key is in the schema's enum.
	for _, k := range enrich.DefaultConfig().Metadata {
		if !slices.Contains(keys, k) {
			t.Errorf("podstamp default metadata %s missing from the schema enum", k)
		}
	}
	if !reflect.DeepEqual(assoc, enrich.DefaultConfig().Association) {
		t.Errorf("schema associations %v, podstamp default %v", assoc, enrich.DefaultConfig().Association)
	}
}
