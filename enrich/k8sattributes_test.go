package enrich_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/enrich/enrichtest"
)

// The processor's block with nothing in it: every default is the processor's.
func TestProcessorLayoutDefaults(t *testing.T) {
	for _, doc := range []string{"auth_type: serviceAccount\n", "k8sattributes:\n", "k8sattributes/agent:\n  passthrough: false\n"} {
		c, err := enrich.ParseConfig([]byte(doc))
		if err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		wantMD := []string{"container.image.name", "container.image.tags", "k8s.deployment.name",
			"k8s.namespace.name", "k8s.node.name", "k8s.pod.name", "k8s.pod.start_time", "k8s.pod.uid"}
		if !reflect.DeepEqual(c.Metadata, wantMD) {
			t.Errorf("%q: metadata = %v, want the processor's %v", doc, c.Metadata, wantMD)
		}
		if c.OtelAnnotations {
			t.Errorf("%q: otel_annotations on, the processor's default is off", doc)
		}
		if want := []string{"k8s.pod.ip", "connection"}; !reflect.DeepEqual(c.Association, want) {
			t.Errorf("%q: association = %v, want %v", doc, c.Association, want)
		}
		if len(c.Exclude.Pods) != 2 || c.Exclude.Pods[0].Name != "jaeger-agent" || c.Exclude.Pods[1].Name != "jaeger-collector" {
			t.Errorf("%q: exclude = %+v, want the processor's jaeger-agent, jaeger-collector", doc, c.Exclude)
		}
	}
}

func TestProcessorLayoutMapsEveryKey(t *testing.T) {
	t.Setenv("K8S_NODE_NAME", "node-a")
	c, err := enrich.ParseConfig([]byte(`
auth_type: kubeConfig
passthrough: false
wait_for_metadata: true
wait_for_metadata_timeout: 10s
watch_sync_period: 5m
filter:
  node_from_env_var: K8S_NODE_NAME
  namespace: shop
  labels: [{key: stamp, value: "off", op: not-equals}]
  fields: [{key: metadata.name, value: cart-7d9f8-abcde}]
extract:
  metadata: [k8s.pod.name, k8s.pod.hostname, container.image.tag, container.image.repo_digests, k8s.cluster.uid]
  otel_annotations: true
  labels: [{from: deployment, key: tier}]
  annotations: [{from: namespace, key_regex: 'a/(.*)', tag_name: 'a.$1'}]
pod_association:
  - sources: [{from: resource_attribute, name: k8s.pod.uid}]
  - sources: [{from: resource_attribute, name: k8s.namespace.name}, {from: resource_attribute, name: k8s.pod.name}]
  - sources: [{from: connection}]
exclude:
  pods: [{name: 'batch-.*'}]
trusted_relays: [{cidrs: [10.0.0.0/8]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	// container.image.tag is a v0 name: with the default gates the
	// processor accepts it and emits nothing, and so does podstamp.
	if want := []string{"k8s.pod.name", "k8s.pod.hostname", "container.image.repo_digests", "k8s.cluster.uid"}; !reflect.DeepEqual(c.Metadata, want) {
		t.Errorf("metadata = %v, want %v", c.Metadata, want)
	}
	if want := []string{"k8s.pod.uid", "k8s.pod.name", "connection"}; !reflect.DeepEqual(c.Association, want) {
		t.Errorf("association = %v, want %v", c.Association, want)
	}
	if c.Filter.NodeName() != "node-a" || c.Filter.Namespace != "shop" || len(c.Exclude.Pods) != 1 || len(c.TrustedRelays) != 1 {
		t.Errorf("filter/exclude/relays not mapped: %+v %+v %+v", c.Filter, c.Exclude, c.TrustedRelays)
	}
	n := c.Needs()
	if !n.ClusterUID || !n.WorkloadMetadata || !n.NamespaceMetadata {
		t.Errorf("needs = %+v, want cluster UID, workload and namespace metadata", n)
	}
}

// A key podstamp cannot honour is an error naming it and why.
func TestProcessorLayoutRefusesWhatItCannotHonour(t *testing.T) {
	t.Setenv("UNSET_NODE_VAR_FOR_TEST", "")
	for _, tc := range []struct{ doc, want string }{
		{"auth_type: tls\n", `auth_type: "tls" is not supported`},
		{"auth_type: kubeConfig\ncontext: prod\n", "context: podstamp uses the current context"},
		{"passthrough: true\n", "passthrough: true is not supported"},
		{"auth_type: none\nkube_api_qps: 5\n", "kube_api_qps, kube_api_burst"},
		{"kubelet: {enabled: true}\n", "kubelet.enabled"},
		{"pod_delete_grace_period: 30s\n", "pod_delete_grace_period: set podstamp's --pod-delete-grace"},
		{"extract: {metadata: [k8s.pod.whatever]}\n", `extract.metadata[0]: "k8s.pod.whatever"`},
		{"pod_association: [{sources: [{from: resource_attribute, name: host.name}]}]\n", "pod_association[0]: sources [host.name]"},
		{"extract: {labels: [{from: service, key: a}]}\n", `labels[0].from: unknown source "service"`},
		{"extract: {bogus: 1}\n", `extract.bogus: unknown field "bogus"`},
		{"wait_for_metadata: true\nfilter: {fields: [{key: status.podIP, value: x}]}\n", "filter.fields[0].key"},
		{"wait_for_metadata: true\nfilter: {node_from_env_var: NO_SUCH_VAR_FOR_TEST}\n", `variable "NO_SUCH_VAR_FOR_TEST" is not set`},
		{"wait_for_metadata: true\nexclude: {pods: [{name: '('}]}\n", "exclude.pods[0].name"},
		{"feature_gates: [-processor.k8sattributes.EmitV1K8sConventions]\n", "cannot be enabled without"},
	} {
		_, err := enrich.ParseConfig([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.doc, err, tc.want)
		}
	}
}

// filter and exclude: a pod they leave out is stamped with nothing, as if
// unknown; the processor never sees it.
func TestProcessorLayoutFilterAndExclude(t *testing.T) {
	for _, tc := range []struct {
		doc     string
		stamped bool
	}{
		{"", true},
		{"filter: {namespace: other}\n", false},
		{"filter: {labels: [{key: team, value: payments}]}\n", true},
		{"filter: {labels: [{key: team, op: does-not-exist}]}\n", false},
		{"filter: {labels: [{key: nope, op: exists}]}\n", false},
		{"filter: {fields: [{key: metadata.name, value: cart-7d9f8-abcde, op: not-equals}]}\n", false},
		{"exclude: {pods: [{name: 'cart-'}]}\n", false},
		{"exclude: {pods: [{name: '^abcde'}]}\n", true},
		{"exclude: {pods: []}\n", true}, // the defaults: jaeger-agent, jaeger-collector
	} {
		// In the processor's layout (a key only it has), which honours
		// the processor's ignore annotation.
		c, err := enrich.ParseConfig([]byte("wait_for_metadata: true\n" + tc.doc))
		if err != nil {
			t.Fatalf("%q: %v", tc.doc, err)
		}
		for name, s := range bothStampers(t, c, enrichtest.New(cartPod())) {
			out, _, err := s.Enrich(context.Background(), enrich.Traces, peerCart, tracesWith(t, map[string]any{}), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, got := attrMaps(t, enrich.Traces, out)[0]["k8s.pod.name"]
			if got != tc.stamped {
				t.Errorf("%s %q: stamped %v, want %v", name, tc.doc, got, tc.stamped)
			}
		}
	}
}

// The new metadata: hostname, cluster UID, image tags and repo digests as
// arrays of one string, workload labels; container attributes of the only
// regular container beside init and sidecar containers.
func TestProcessorLayoutMetadata(t *testing.T) {
	c, err := enrich.ParseConfig([]byte(`
extract:
  metadata: [k8s.pod.name, k8s.pod.hostname, k8s.cluster.uid, k8s.container.name, container.image.tags, container.image.repo_digests, container.id]
  labels: [{from: deployment, key: tier}, {from: pod, key: team}]
`))
	if err != nil {
		t.Fatal(err)
	}
	p := cartPod()
	p.Hostname, p.ClusterUID = "cart-host", "uid-cluster"
	p.Workloads[1].Labels = map[string]string{"tier": "frontend"}
	p.Containers = []enrich.Container{
		{Name: "migrate", Init: true, ImageName: "reg/migrate", ImageTag: "1", IDs: []string{"init1"}},
		{Name: "proxy", Init: true, Sidecar: true, ImageName: "reg/proxy", ImageTag: "2", IDs: []string{"side1"}},
		{Name: "cart", ImageName: "ghcr.io/shop/cart", ImageTag: "1.2.3", RepoDigest: "ghcr.io/shop/cart@sha256:00", IDs: []string{"c0ffee01", "c0ffee00"}, RestartCount: 1},
	}
	for _, tc := range []struct {
		res  map[string]any
		want map[string]any
	}{
		{map[string]any{}, map[string]any{"k8s.container.name": "cart", "container.image.tags": []any{"1.2.3"},
			"container.image.repo_digests": []any{"ghcr.io/shop/cart@sha256:00"}, "container.id": "c0ffee01"}},
		{map[string]any{"k8s.container.name": "proxy"}, map[string]any{"k8s.container.name": "proxy", "container.image.tags": []any{"2"}, "container.id": "side1"}},
		{map[string]any{"container.id": "init1"}, map[string]any{"k8s.container.name": "migrate", "container.image.tags": []any{"1"}, "container.id": "init1"}},
	} {
		for name, s := range bothStampers(t, c, enrichtest.New(p)) {
			out, _, err := s.Enrich(context.Background(), enrich.Traces, peerCart, tracesWith(t, tc.res), nil)
			if err != nil {
				t.Fatal(err)
			}
			got := attrMaps(t, enrich.Traces, out)[0]
			want := map[string]any{"k8s.pod.name": p.Name, "k8s.pod.hostname": "cart-host", "k8s.cluster.uid": "uid-cluster",
				"k8s.deployment.label.tier": "frontend", "k8s.pod.label.team": "payments"}
			for k, v := range tc.want {
				want[k] = v
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s %v:\n got %v\nwant %v", name, tc.res, got, want)
			}
		}
	}
}

// The v0 names, as with the processor's feature gates.
func TestProcessorLayoutV0Names(t *testing.T) {
	c, err := enrich.ParseConfig([]byte(`
feature_gates: [-processor.k8sattributes.DontEmitV0K8sConventions]
extract:
  metadata: [container.image.tag, container.image.tags]
  labels: [{key: team}]
`))
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range bothStampers(t, c, enrichtest.New(cartPod())) {
		out, _, err := s.Enrich(context.Background(), enrich.Traces, peerCart, tracesWith(t, map[string]any{}), nil)
		if err != nil {
			t.Fatal(err)
		}
		got := attrMaps(t, enrich.Traces, out)[0]
		want := map[string]any{"container.image.tag": "1.2.3", "container.image.tags": []any{"1.2.3"},
			"k8s.pod.label.team": "payments", "k8s.pod.labels.team": "payments"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %v\nwant %v", name, got, want)
		}
	}
}

// container.id is the run's: the resource's k8s.container.restart_count (an
// int, or digits) picks the current run or the previous one (lastState);
// another run gets no container.id rather than a wrong one.
func TestContainerIDByRestartCount(t *testing.T) {
	c := enrich.DefaultConfig()
	p := cartPod()
	p.Containers[0].RestartCount = 3 // IDs: c0ffee01 (run 3), c0ffee00 (run 2)
	for _, tc := range []struct {
		rc   any
		want any
	}{
		{nil, "c0ffee01"}, {int64(3), "c0ffee01"}, {"3", "c0ffee01"},
		{int64(2), "c0ffee00"}, {"2", "c0ffee00"}, {int64(1), nil}, {"x", "c0ffee01"},
	} {
		res := map[string]any{}
		if tc.rc != nil {
			res["k8s.container.restart_count"] = tc.rc
		}
		for name, s := range bothStampers(t, c, enrichtest.New(p)) {
			out, _, err := s.Enrich(context.Background(), enrich.Traces, peerCart, tracesWith(t, res), nil)
			if err != nil {
				t.Fatal(err)
			}
			got := attrMaps(t, enrich.Traces, out)[0]
			if got["container.id"] != tc.want || got["k8s.container.name"] != "cart" {
				t.Errorf("%s restart_count %v: container.id %v (container %v), want %v", name, tc.rc, got["container.id"], got["k8s.container.name"], tc.want)
			}
		}
	}
}

// The processor's service.* keys: derived in the semantic conventions' order
// with the well-known labels, only the keys listed; the annotations only
// with otel_annotations; service.version from a digest-pinned image is the
// digest, with its tag when it has one.
func TestProcessorLayoutService(t *testing.T) {
	p := workerPod()
	p.Containers[0].ImageVersion = "v2@sha256:00"
	p.Labels = map[string]string{"app.kubernetes.io/name": "reporter"}
	p.Annotations = map[string]string{"resource.opentelemetry.io/service.name": "from-annotation"}
	for _, tc := range []struct {
		doc  string
		res  map[string]any
		want map[string]any
	}{
		{"extract: {metadata: [service.name, service.version]}\n", map[string]any{"k8s.container.name": "main"},
			map[string]any{"service.name": "reporter", "service.version": "v2@sha256:00"}},
		{"extract: {metadata: [service.namespace, service.instance.id]}\n", map[string]any{"k8s.container.name": "main"},
			map[string]any{"service.namespace": "batch", "service.instance.id": "batch.report-2911-xyz.main"}},
		{"extract: {metadata: [service.name], otel_annotations: true}\n", map[string]any{},
			map[string]any{"service.name": "from-annotation"}},
		// No container chosen: no version from an image.
		{"extract: {metadata: [service.version]}\n", map[string]any{}, map[string]any{}},
	} {
		c, err := enrich.ParseConfig([]byte(tc.doc))
		if err != nil {
			t.Fatalf("%q: %v", tc.doc, err)
		}
		for name, s := range bothStampers(t, c, enrichtest.New(p)) {
			out, _, err := s.Enrich(context.Background(), enrich.Traces, peerWorker, tracesWith(t, tc.res), nil)
			if err != nil {
				t.Fatal(err)
			}
			got := attrMaps(t, enrich.Traces, out)[0]
			for k := range tc.res {
				delete(got, k)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s %q:\n got %v\nwant %v", name, tc.doc, got, tc.want)
			}
		}
	}
}
