package enrich_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/podstamp/podstamp/enrich"
)

func TestDefaultConfigIsValid(t *testing.T) {
	c := enrich.DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	if !c.OtelAnnotations || c.Service.Derive || c.Service.WellKnownLabels || c.Overwrite.UnknownService {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if len(c.Metadata) != 16 {
		t.Fatalf("default metadata has %d keys, want 16: %v", len(c.Metadata), c.Metadata)
	}
	want := []string{"k8s.pod.uid", "k8s.pod.ip", "k8s.pod.name", "container.id", "connection"}
	if !reflect.DeepEqual(c.Association, want) {
		t.Fatalf("association = %v, want %v", c.Association, want)
	}
	if (c.Needs() != enrich.Needs{}) {
		t.Fatalf("default needs = %+v, want none", c.Needs())
	}
}

func TestLoadConfigEmptyPathIsDefault(t *testing.T) {
	c, err := enrich.LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, enrich.DefaultConfig()) {
		t.Fatalf("LoadConfig(\"\") = %+v, want defaults", c)
	}
}

func TestLoadConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	yaml := `
cluster_name: prod-eu
labels:
  - key: team
  - from: namespace
    key_regex: "tier|env"
    tag_name: "ns.$0"
annotations:
  - key_regex: "note\\.example\\.com/(.*)"
    tag_name: "note.$1"
service:
  derive: true
  well_known_labels: true
overwrite:
  keys: [k8s.pod.ip]
  unknown_service: true
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := enrich.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.ClusterName != "prod-eu" || len(c.Labels) != 2 || c.Labels[1].From != "namespace" ||
		!c.Service.Derive || !c.Service.WellKnownLabels || !c.Overwrite.UnknownService {
		t.Fatalf("parsed config wrong: %+v", c)
	}
	// Omitted fields keep their defaults.
	if !c.OtelAnnotations || len(c.Metadata) != 16 || len(c.Association) != 5 {
		t.Fatalf("omitted fields lost their defaults: %+v", c)
	}
	if got := c.Needs(); got != (enrich.Needs{NamespaceMetadata: true}) {
		t.Fatalf("Needs = %+v", got)
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	if _, err := enrich.LoadConfig(filepath.Join(t.TempDir(), "nope.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestConfigErrorsNameTheRule(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"labels:\n- key: a\n- key: b\n- key_regex: '(['\n", "labels[2].key_regex: "},
		{"annotations:\n- key: a\n  key_regex: b\n", "annotations[0]: set key or key_regex, not both"},
		{"annotations:\n- tag_name: x\n", "annotations[0]: set key or key_regex"},
		{"labels:\n- from: service\n  key: a\n", `labels[0].from: unknown source "service"`},
		{"labels:\n- key: a\n  tag_name: x.$1\n", "labels[0].tag_name: $-references need key_regex"},
		{"metadata: [k8s.pod.name, k8s.pod.colour]\n", `metadata[1]: unknown attribute "k8s.pod.colour"`},
		{"metadata: [k8s.pod.name, k8s.pod.name]\n", `metadata[1]: "k8s.pod.name" listed twice`},
		{"association: [k8s.pod.uid, host.name]\n", `association[1]: unknown source "host.name"`},
		{"association: [connection, connection]\n", `association[1]: "connection" listed twice`},
		{"overwrite:\n  keys: ['']\n", "overwrite.keys[0]: empty key"},
		{"service:\n  well_known_labels: true\n", "service.well_known_labels: needs service.derive: true"},
		{"metadata: k8s.pod.name\n", "cannot unmarshal"},
		{"colour: red\n", `colour: unknown field "colour"`},
		{"service:\n  derive: true\n  extra: 1\n", `service.extra: unknown field "extra"`},
		{"labels:\n- key: a\n  regex: b\n", `labels[0].regex: unknown field "regex"`},
		{"trusted_relays:\n- {}\n", "trusted_relays[0]: empty rule: set namespaces, pod_selector or cidrs"},
		{"trusted_relays:\n- cidrs: [10.0.0.0/8]\n- cidrs: [10.1.0.0/16, 10.1.0.300/32]\n", `trusted_relays[1].cidrs[1]: "10.1.0.300/32" is not a CIDR prefix`},
		{"trusted_relays:\n- cidrs: [10.1.0.5]\n", `trusted_relays[0].cidrs[0]: "10.1.0.5" is not a CIDR prefix`},
		{"trusted_relays:\n- cidrs: [10.1.0.5/8]\n", `trusted_relays[0].cidrs[0]: "10.1.0.5/8" has bits set outside the prefix (did you mean 10.0.0.0/8?)`},
		{"trusted_relays:\n- cidrs: ['::ffff:10.1.0.0/112']\n", `trusted_relays[0].cidrs[0]: "::ffff:10.1.0.0/112" is IPv4-mapped IPv6: write it as IPv4 (10.1.0.0/16)`},
		{"trusted_relays:\n- namespaces: [monitoring, '']\n", "trusted_relays[0].namespaces[1]: empty namespace"},
		{"trusted_relays:\n- pod_selector: {}\n", "trusted_relays[0].pod_selector.match_labels: empty selector"},
		{"trusted_relays:\n- pod_selector: {match_labels: {'': x}}\n", "trusted_relays[0].pod_selector.match_labels: empty label key"},
		{"trusted_relays:\n- namespace: [monitoring]\n", `trusted_relays[0].namespace: unknown field "namespace"`},
		{"trusted_relays:\n- pod_selector: {matchLabels: {a: b}}\n", `trusted_relays[0].pod_selector.matchLabels: unknown field "matchLabels"`},
		{"trusted_relays:\n  cidrs: [10.0.0.0/8]\n", "cannot unmarshal"},
	}
	for _, tc := range cases {
		_, err := enrich.ParseConfig([]byte(tc.yaml))
		if err == nil {
			t.Errorf("%q: accepted, want error containing %q", tc.yaml, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %q, want it to contain %q", tc.yaml, err, tc.want)
		}
	}
}

func TestConfigReportsEveryBadRule(t *testing.T) {
	_, err := enrich.ParseConfig([]byte("metadata: [nope]\nassociation: [nope]\n"))
	if err == nil || !strings.Contains(err.Error(), "metadata[0]") || !strings.Contains(err.Error(), "association[0]") {
		t.Fatalf("error %v, want both rules named", err)
	}
}

func TestTrustedRelaysConfig(t *testing.T) {
	if got := enrich.DefaultConfig().TrustedRelays; len(got) != 0 {
		t.Fatalf("default trusts %v, want nobody", got)
	}
	c, err := enrich.ParseConfig([]byte(`
trusted_relays:
  - namespaces: [monitoring]
    pod_selector: {match_labels: {app.kubernetes.io/name: otel-collector}}
  - cidrs: [10.0.0.0/8, "fd00::/64"]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []enrich.TrustedRelay{
		{Namespaces: []string{"monitoring"}, PodSelector: &enrich.PodSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "otel-collector"}}},
		{CIDRs: []string{"10.0.0.0/8", "fd00::/64"}},
	}
	if !reflect.DeepEqual(c.TrustedRelays, want) {
		t.Fatalf("trusted_relays = %+v, want %+v", c.TrustedRelays, want)
	}
	if len(c.Association) != 5 || (c.Needs() != enrich.Needs{}) {
		t.Fatalf("trusted relays changed other fields: %+v", c)
	}
}

func TestNeeds(t *testing.T) {
	c := enrich.DefaultConfig()
	c.Metadata = append(c.Metadata, "k8s.deployment.uid")
	if got := c.Needs(); got != (enrich.Needs{WorkloadUIDs: true}) {
		t.Fatalf("workload uid: Needs = %+v", got)
	}
	c = enrich.DefaultConfig()
	c.Metadata = append(c.Metadata, "k8s.node.uid")
	if got := c.Needs(); got != (enrich.Needs{NodeMetadata: true}) {
		t.Fatalf("node uid: Needs = %+v", got)
	}
	c = enrich.DefaultConfig()
	c.Annotations = []enrich.FieldRule{{From: "node", Key: "a"}}
	if got := c.Needs(); got != (enrich.Needs{NodeMetadata: true}) {
		t.Fatalf("node annotation: Needs = %+v", got)
	}
}

func TestCompileRejectsBadConfig(t *testing.T) {
	c := enrich.DefaultConfig()
	c.Labels = []enrich.FieldRule{{KeyRegex: "("}}
	if _, err := enrich.Compile(c); err == nil || !strings.Contains(err.Error(), "labels[0].key_regex") {
		t.Fatalf("Compile error = %v", err)
	}
	if _, err := enrich.NewPdataStamper(c, nil); err == nil {
		t.Fatal("NewPdataStamper accepted a bad regex")
	}
}

func TestLoadCompilesOnce(t *testing.T) {
	r, err := enrich.Load("")
	if err != nil || r.Needs() != (enrich.Needs{}) {
		t.Fatalf("Load(\"\") = %+v, %v", r, err)
	}
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte("metadata: [k8s.pod.name, k8s.node.uid]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r, err = enrich.Load(path); err != nil || r.Needs() != (enrich.Needs{NodeMetadata: true}) {
		t.Fatalf("Load = %+v, %v; want node metadata needed", r, err)
	}
	if err := os.WriteFile(path, []byte("metadata: [nope]\nlabels:\n- key_regex: '('\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = enrich.Load(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "metadata[0]") || !strings.Contains(err.Error(), "labels[0].key_regex") {
		t.Fatalf("Load error %v, want the file and both rules named", err)
	}
}

// TestUnknownFieldsAllNamed: every unknown key is named by its path, at any
// depth the Config's json tags describe.
func TestUnknownFieldsAllNamed(t *testing.T) {
	_, err := enrich.ParseConfig([]byte("colour: red\nservice: {derive: true, extra: 1}\ntrusted_relays:\n- pod_selector: {match_labels: {a: b}, matchLabels: {a: b}}\n"))
	for _, want := range []string{`colour: unknown field "colour"`, `service.extra: unknown field "extra"`, `trusted_relays[0].pod_selector.matchLabels: unknown field`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to contain %q", err, want)
		}
	}
	// Every key Config's YAML form writes is one the parser reads back.
	c := enrich.DefaultConfig()
	c.ClusterName = "c"
	c.Labels = []enrich.FieldRule{{From: "pod", Key: "a", TagName: "x"}, {KeyRegex: "b.*"}}
	c.Annotations = c.Labels
	c.Service = enrich.ServiceConfig{Derive: true, WellKnownLabels: true}
	c.TrustedRelays = []enrich.TrustedRelay{{Namespaces: []string{"m"}, PodSelector: &enrich.PodSelector{MatchLabels: map[string]string{"a": "b"}}, CIDRs: []string{"10.0.0.0/8"}}}
	c.Overwrite = enrich.OverwriteConfig{Keys: []string{"k"}, UnknownService: true}
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := enrich.ParseConfig(b)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip of\n%s= %+v, %v", b, got, err)
	}
}
