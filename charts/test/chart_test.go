package charttest

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestGolden renders every variant and compares it with
// charts/podstamp/examples/rendered/<variant>.yaml (-update rewrites them).
func TestGolden(t *testing.T) {
	for _, v := range variants(t) {
		t.Run(v.name, func(t *testing.T) {
			out := render(t, v)
			decode(t, out.Manifest) // every document is a valid, strictly typed object
			golden(t, filepath.Join(chartDir(t), "examples", "rendered", v.name+".yaml"), []byte(out.Manifest))
		})
	}
}

// TestLint runs Helm's lint action (what `helm lint --strict` runs) for every variant.
func TestLint(t *testing.T) {
	kv, err := chartutil.ParseKubeVersion(DefaultKubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range variants(t) {
		t.Run(v.name, func(t *testing.T) {
			vals, err := Values(v.files, v.set, nil)
			if err != nil {
				t.Fatal(err)
			}
			res := lint.AllWithKubeVersion(chartDir(t), vals, "podstamp", kv)
			if len(res.Messages) == 0 {
				t.Fatal("lint returned no messages at all; it did not run")
			}
			for _, m := range res.Messages {
				t.Logf("lint: %s", m)
				// helm lint --strict fails on warnings too; only the missing icon (INFO) is accepted.
				if m.Severity >= support.WarningSev {
					t.Errorf("lint: %s", m)
				}
			}
		})
	}
}

// TestSchemaRejects feeds bad values and checks that rendering fails with a message naming the problem.
func TestSchemaRejects(t *testing.T) {
	cases := []struct {
		name string
		set  []string
		file string // YAML values
		want string // substring of the error
	}{
		{name: "missing upstream", want: "upstream.endpoint is required"},
		{name: "unknown top-level key", set: []string{upstreamSet, "replicas=2"}, want: "replicas"},
		{name: "unknown nested key", set: []string{upstreamSet, "upstream.tls.insecureSkipVerify=true"}, want: "insecureSkipVerify"},
		{name: "typo in config key", set: []string{upstreamSet, "config.clustername=x"}, want: "clustername"},
		{name: "bad networkMode", set: []string{upstreamSet, "networkMode=hostPort"}, want: "networkMode"},
		{name: "bad protocol", set: []string{upstreamSet, "upstream.protocol=http/json"}, want: "protocol"},
		{name: "bad compression", set: []string{upstreamSet, "upstream.compression=zstd"}, want: "compression"},
		{name: "bad transport", set: []string{upstreamSet, "upstream.transport=quic"}, want: "transport"},
		{name: "bad gRPC server", set: []string{upstreamSet, "grpcTransport=quic"}, want: "grpcTransport"},
		{name: "lean transport over http/protobuf", set: []string{"upstream.endpoint=http://c:4318", "upstream.protocol=http/protobuf", "upstream.transport=lean"}, want: "upstream.transport lean is a gRPC client"},
		{name: "bad log level", set: []string{upstreamSet, "log.level=verbose"}, want: "level"},
		{name: "bad duration", file: "upstream: {endpoint: 'http://c:4317', timeout: '10'}\n", want: "timeout"},
		{name: "bad duration unit", file: "upstream: {endpoint: 'http://c:4317'}\nhold: {timeout: 3sec}\n", want: "timeout"},
		{name: "bad metadata key", set: []string{upstreamSet, "config.metadata={k8s.pod.label}"}, want: "metadata"},
		{name: "bad association", set: []string{upstreamSet, "config.association={k8s.pod.ip,source_ip}"}, want: "association"},
		{name: "bad rule source", file: "upstream: {endpoint: 'http://c:4317'}\nconfig: {labels: [{from: cluster, key: a}]}\n", want: "from"},
		{name: "processor block with a key podstamp cannot honour", file: "upstream: {endpoint: 'http://c:4317'}\nconfig: {k8sattributes: {auth_type: kubeConfig, context: prod}}\n", want: "context"},
		{name: "processor block in passthrough mode", file: "upstream: {endpoint: 'http://c:4317'}\nconfig: {auth_type: serviceAccount, passthrough: true}\n", want: "passthrough"},
		{name: "processor block with an unknown metadata key", file: "upstream: {endpoint: 'http://c:4317'}\nconfig: {extract: {metadata: [k8s.pod.label]}}\n", want: "metadata"},
		{name: "layouts mixed", file: "upstream: {endpoint: 'http://c:4317'}\nconfig: {extract: {metadata: [k8s.pod.name]}, association: [connection]}\n", want: "association"},
		{name: "rule with key and key_regex", file: "upstream: {endpoint: 'http://c:4317'}\nconfig: {labels: [{from: pod, key: a, key_regex: b}]}\n", want: "labels"},
		{name: "unknown rule field", file: "upstream: {endpoint: 'http://c:4317'}\nconfig: {annotations: [{from: pod, key: a, tag: b}]}\n", want: "tag"},
		{name: "header with value and secret", file: "upstream: {endpoint: 'http://c:4317', headers: [{name: a, value: b, secret: {name: s, key: k}}]}\n", want: "headers"},
		{name: "header value with comma", file: "upstream: {endpoint: 'http://c:4317', headers: [{name: a, value: 'b,c'}]}\n", want: "headers"},
		{name: "http/protobuf without URL scheme", set: []string{"upstream.endpoint=collector:4318", "upstream.protocol=http/protobuf"}, want: "/upstream/endpoint"},
		{name: "endpoint with spaces", set: []string{"upstream.endpoint=http://a b:4317"}, want: "endpoint"},
		{name: "bad toleration operator", file: "upstream: {endpoint: 'http://c:4317'}\ntolerations: [{operator: Any}]\n", want: "operator"},
		{name: "bad memory limit type", file: "upstream: {endpoint: 'http://c:4317'}\nresources: {limits: {memory: lots}}\n", want: "memory"},
		{name: "grace period not above shutdown timeout", set: []string{upstreamSet, "terminationGracePeriodSeconds=20"}, want: "must be larger than drainDelaySeconds + shutdownTimeoutSeconds"},
		{name: "grace period not above drain delay + shutdown timeout", set: []string{upstreamSet, "drainDelaySeconds=10", "terminationGracePeriodSeconds=30"}, want: "(30) must be larger than drainDelaySeconds + shutdownTimeoutSeconds (30)"},
		{name: "surge and unavailable", set: []string{upstreamSet, "networkMode=service", "updateStrategy.maxSurge=1", "updateStrategy.maxUnavailable=1"}, want: "maxSurge or maxUnavailable, not both"},
		{name: "surge and unavailable with host network", set: []string{upstreamSet, "updateStrategy.maxSurge=1", "updateStrategy.maxUnavailable=1"}, want: "maxSurge or maxUnavailable, not both"},
		{name: "neither surge nor unavailable", set: []string{upstreamSet, "updateStrategy.maxUnavailable=0%"}, want: "not both and not neither"},
		{name: "unknown update strategy key", set: []string{upstreamSet, "updateStrategy.type=OnDelete"}, want: "type"},
		{name: "bad port", set: []string{upstreamSet, "ports.grpc=70000"}, want: "grpc"},
		{name: "bad debug port", set: []string{upstreamSet, "ports.debug=0"}, want: "debug"},
		{name: "bad priorityClassName type", file: "upstream: {endpoint: 'http://c:4317'}\npriorityClassName: 5\n", want: "priorityClassName"},
		{name: "bad priorityClassName", set: []string{upstreamSet, "priorityClassName=System-Node-Critical"}, want: "priorityClassName"},
		{name: "forwarded header with a space", file: "upstream: {endpoint: 'http://c:4317'}\nforwardHeaders: ['x scope']\n", want: "forwardHeaders"},
		{name: "identity header without attribute", file: "upstream: {endpoint: 'http://c:4317'}\nidentityHeaders: [{name: x-scope-orgid}]\n", want: "attribute"},
		{name: "identity header from an unsupported attribute", file: "upstream: {endpoint: 'http://c:4317'}\nidentityHeaders: [{name: x-scope-orgid, attribute: k8s.pod.label.team}]\n", want: "attribute"},
		{name: "identity header as a string", file: "upstream: {endpoint: 'http://c:4317'}\nidentityHeaders: ['x-scope-orgid=k8s.namespace.name']\n", want: "identityHeaders"},
		{name: "allowed CIDR without prefix length", set: []string{upstreamSet, "allowCIDRs={10.0.0.0}"}, want: "allowCIDRs"},
		{name: "allowed CIDR not an address", set: []string{upstreamSet, "allowCIDRs={everyone/0}"}, want: "allowCIDRs"},
		{name: "allowed IPv6 CIDR prefix too long", set: []string{upstreamSet, "allowCIDRs={fd00::/129}"}, want: "allowCIDRs"},
		{name: "empty trusted relay rule", file: "upstream: {endpoint: 'http://c:4317'}\nconfig: {trusted_relays: [{}]}\n", want: "trusted_relays"},
		{name: "trusted relay with a bad CIDR", file: "upstream: {endpoint: 'http://c:4317'}\nconfig: {trusted_relays: [{cidrs: [10.0.0.0/33]}]}\n", want: "cidrs"},
		{name: "trusted relay with an unknown field", file: "upstream: {endpoint: 'http://c:4317'}\nconfig: {trusted_relays: [{namespace: relay}]}\n", want: "namespace"},
		{name: "trusted relay selector without labels", file: "upstream: {endpoint: 'http://c:4317'}\nconfig: {trusted_relays: [{pod_selector: {match_labels: {}}}]}\n", want: "match_labels"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{ChartDir: chartDir(t), Set: tc.set}
			if tc.file != "" {
				f := filepath.Join(t.TempDir(), "values.yaml")
				writeFile(t, f, tc.file)
				o.ValueFiles = []string{f}
			}
			_, err := Render(o)
			if err == nil {
				t.Fatalf("rendering succeeded; want an error mentioning %q", tc.want)
			}
			t.Logf("rejected: %v", err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not mention %q:\n%v", tc.want, err)
			}
		})
	}
}

// TestSecurityContext: every variant runs hardened.
func TestSecurityContext(t *testing.T) {
	for _, v := range variants(t) {
		t.Run(v.name, func(t *testing.T) {
			o := decode(t, render(t, v).Manifest)
			pod := o.DaemonSet.Spec.Template.Spec
			c := container(t, o)
			sc := c.SecurityContext
			if sc == nil {
				t.Fatal("container has no securityContext")
			}
			check := func(what string, ok bool) {
				t.Helper()
				if !ok {
					t.Errorf("not hardened: %s", what)
				}
			}
			check("runAsNonRoot", sc.RunAsNonRoot != nil && *sc.RunAsNonRoot)
			check("readOnlyRootFilesystem", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem)
			check("allowPrivilegeEscalation=false", sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation)
			check("privileged unset", sc.Privileged == nil || !*sc.Privileged)
			check("capabilities drop ALL, add none", sc.Capabilities != nil && reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) && len(sc.Capabilities.Add) == 0)
			check("container seccomp RuntimeDefault", sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault)
			check("pod seccomp RuntimeDefault", pod.SecurityContext != nil && pod.SecurityContext.SeccompProfile != nil && pod.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault)
			check("pod runAsNonRoot with a non-zero uid", pod.SecurityContext != nil && pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot && pod.SecurityContext.RunAsUser != nil && *pod.SecurityContext.RunAsUser != 0)
			check("no hostPID/hostIPC", !pod.HostPID && !pod.HostIPC)
			for _, vol := range pod.Volumes {
				check("no hostPath volume "+vol.Name, vol.HostPath == nil)
			}
		})
	}
}

// TestRBAC: pods get/list/watch always; anything else only when the config needs it.
func TestRBAC(t *testing.T) {
	pods := "/pods:get,list,watch"
	want := map[string][]string{
		"defaults":                   {pods},
		"ci-default":                 {pods},
		"ci-service-mode":            {pods},
		"ci-tls-headers":             {pods},
		"ci-servicemonitor":          {pods},
		"ci-tenants":                 {pods},
		"examples-collector-gateway": {pods},
		"ci-rules":                   {pods, "/namespaces:get", "/nodes:get", "apps/replicasets:get", "batch/jobs:get"},
		"ci-k8sattributes": {pods, "/namespaces[kube-system]:get", "/nodes:get", "apps/daemonsets:get", "apps/deployments:get",
			"apps/replicasets:get", "apps/statefulsets:get", "batch/cronjobs:get", "batch/jobs:get"},
	}
	seen := map[string]bool{}
	for _, v := range variants(t) {
		t.Run(v.name, func(t *testing.T) {
			w, ok := want[v.name]
			if !ok {
				t.Fatalf("no expected RBAC for new variant %s: add it to this table", v.name)
			}
			seen[v.name] = true
			o := decode(t, render(t, v).Manifest)
			if o.ClusterRole == nil || o.ClusterRoleBinding == nil {
				t.Fatal("ClusterRole or ClusterRoleBinding missing")
			}
			if got := ruleSet(o); !reflect.DeepEqual(got, sorted(w)) {
				t.Errorf("ClusterRole rules:\n got  %v\n want %v", got, w)
			}
			b := o.ClusterRoleBinding
			sa := o.DaemonSet.Spec.Template.Spec.ServiceAccountName
			if b.RoleRef.Name != o.ClusterRole.Name || len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" ||
				b.Subjects[0].Name != sa || b.Subjects[0].Namespace != "podstamp" {
				t.Errorf("binding %+v does not bind ClusterRole %s to the pod's ServiceAccount %s", b, o.ClusterRole.Name, sa)
			}
			if o.ServiceAccount == nil || o.ServiceAccount.Name != sa {
				t.Errorf("ServiceAccount %s not rendered", sa)
			}
		})
	}

	// Each rule kind on its own grants exactly its resources.
	single := []struct {
		set  []string
		want []string
	}{
		{[]string{"config.labels[0].from=namespace", "config.labels[0].key=team"}, []string{pods, "/namespaces:get"}},
		{[]string{"config.annotations[0].from=node", "config.annotations[0].key_regex=.*"}, []string{pods, "/nodes:get"}},
		{[]string{"config.labels[0].from=pod", "config.labels[0].key=app"}, []string{pods}},
		{[]string{"config.metadata={k8s.pod.name,k8s.node.uid}"}, []string{pods, "/nodes:get"}},
		{[]string{"config.metadata={k8s.pod.name,k8s.pod.uid}"}, []string{pods}},
		{[]string{"config.metadata={k8s.pod.name,k8s.deployment.uid}"}, []string{pods, "apps/replicasets:get", "batch/jobs:get"}},
		{[]string{"config.metadata={k8s.statefulset.uid}"}, []string{pods, "apps/replicasets:get", "batch/jobs:get"}},
		{[]string{"config.metadata={k8s.cronjob.uid}"}, []string{pods, "apps/replicasets:get", "batch/jobs:get"}},
		{[]string{"config.metadata={k8s.cluster.uid}"}, []string{pods, "/namespaces[kube-system]:get"}},
		{[]string{"config.labels[0].from=statefulset", "config.labels[0].key=tier"}, []string{pods, "apps/daemonsets:get",
			"apps/deployments:get", "apps/replicasets:get", "apps/statefulsets:get", "batch/cronjobs:get", "batch/jobs:get"}},
		{[]string{"config.k8sattributes.extract.annotations[0].from=namespace", "config.k8sattributes.extract.annotations[0].key=a"}, []string{pods, "/namespaces:get"}},
		{[]string{"config.k8sattributes.extract.metadata={k8s.pod.name,k8s.cluster.uid}"}, []string{pods, "/namespaces[kube-system]:get"}},
		{[]string{"config.k8sattributes.auth_type=serviceAccount"}, []string{pods}},
		{[]string{"rbac.getNodes=true"}, []string{pods, "/nodes:get"}},
		{[]string{"podSource=kubelet"}, []string{"/nodes/pods:get"}},
		{[]string{"podSource=kubelet", "config.labels[0].from=namespace", "config.labels[0].key=team"}, []string{"/nodes/pods:get", "/namespaces:get"}},
	}
	for _, s := range single {
		t.Run(strings.Join(s.set, ","), func(t *testing.T) {
			o := decode(t, render(t, variant{set: append([]string{upstreamSet}, s.set...)}).Manifest)
			if got := ruleSet(o); !reflect.DeepEqual(got, sorted(s.want)) {
				t.Errorf("rules %v, want %v", got, s.want)
			}
		})
	}

	t.Run("rbac.create=false", func(t *testing.T) {
		o := decode(t, render(t, variant{set: []string{upstreamSet, "rbac.create=false"}}).Manifest)
		if o.ClusterRole != nil || o.ClusterRoleBinding != nil {
			t.Error("RBAC rendered although rbac.create=false")
		}
	})
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

// ruleSet flattens a ClusterRole into sorted "group/resource:verbs" strings.
func ruleSet(o objects) []string {
	var out []string
	for _, r := range o.ClusterRole.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				verbs := append([]string(nil), r.Verbs...)
				sort.Strings(verbs)
				names := ""
				if len(r.ResourceNames) > 0 {
					names = "[" + strings.Join(r.ResourceNames, ",") + "]"
				}
				out = append(out, fmt.Sprintf("%s/%s%s:%s", g, res, names, strings.Join(verbs, ",")))
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestNetworkMode: hostNetwork by default, listening on the node address; service mode behind a Local Service.
func TestNetworkMode(t *testing.T) {
	t.Run("hostNetwork", func(t *testing.T) {
		o := decode(t, render(t, variant{set: []string{upstreamSet}}).Manifest)
		pod := o.DaemonSet.Spec.Template.Spec
		c := container(t, o)
		if !pod.HostNetwork || pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
			t.Errorf("hostNetwork=%v dnsPolicy=%q; want true, ClusterFirstWithHostNet", pod.HostNetwork, pod.DNSPolicy)
		}
		for _, a := range []string{"--grpc-listen=$(K8S_NODE_IP):4317", "--http-listen=$(K8S_NODE_IP):4318", "--admin-listen=$(K8S_NODE_IP):10291",
			"--debug-listen=127.0.0.1:10292", "--node-name=$(K8S_NODE_NAME)", "--node-ip=$(K8S_NODE_IPS)"} {
			if !hasArg(c, a) {
				t.Errorf("missing arg %s in %v", a, c.Args)
			}
		}
		fieldRef := func(name, path string) {
			t.Helper()
			e, ok := env(c, name)
			if !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != path {
				t.Errorf("env %s is not the downward-API field %s: %+v", name, path, e)
			}
		}
		fieldRef("K8S_NODE_IP", "status.hostIP")
		fieldRef("K8S_NODE_IPS", "status.hostIPs")
		fieldRef("K8S_NODE_NAME", "spec.nodeName")
		// No container ports at all: the API server gives every container port of a
		// hostNetwork Pod a hostPort, and the scheduler would keep the surge pod off
		// the node while the old pod holds them.
		if len(c.Ports) != 0 {
			t.Errorf("hostNetwork pod declares ports %+v; each would become a hostPort", c.Ports)
		}
		for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
			if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Port.IntValue() != 10291 {
				t.Fatalf("probe not an HTTP GET on the admin port 10291: %+v", pr)
			}
		}
		if c.LivenessProbe.HTTPGet.Path != "/livez" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("probe paths %s, %s; want /livez, /readyz", c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
		}
		ru := o.DaemonSet.Spec.UpdateStrategy
		if ru.Type != "RollingUpdate" || ru.RollingUpdate == nil || ru.RollingUpdate.MaxUnavailable.String() != "0" || ru.RollingUpdate.MaxSurge.String() != "1" {
			t.Errorf("updateStrategy %+v; want RollingUpdate maxSurge 1 maxUnavailable 0", ru)
		}
		if len(o.Services) != 0 {
			t.Errorf("hostNetwork mode renders Services %v", o.Services)
		}
	})
	t.Run("before Kubernetes 1.30 only status.hostIP", func(t *testing.T) {
		out, err := Render(Options{ChartDir: chartDir(t), Set: []string{upstreamSet}, KubeVersion: "v1.29.4"})
		if err != nil {
			t.Fatal(err)
		}
		c := container(t, decode(t, out.Manifest))
		if !hasArg(c, "--node-ip=$(K8S_NODE_IP)") {
			t.Errorf("want --node-ip=$(K8S_NODE_IP): %v", c.Args)
		}
		if _, ok := env(c, "K8S_NODE_IPS"); ok {
			t.Error("status.hostIPs used before Kubernetes 1.30")
		}
	})
	t.Run("service", func(t *testing.T) {
		o := decode(t, render(t, variant{set: []string{upstreamSet, "networkMode=service"}}).Manifest)
		pod := o.DaemonSet.Spec.Template.Spec
		c := container(t, o)
		if pod.HostNetwork || pod.DNSPolicy != corev1.DNSClusterFirst {
			t.Errorf("hostNetwork=%v dnsPolicy=%q; want false, ClusterFirst", pod.HostNetwork, pod.DNSPolicy)
		}
		want := map[string]int32{"otlp-grpc": 4317, "otlp-http": 4318, "admin": 10291}
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				t.Errorf("service mode must not use hostPort (SNAT): %+v", p)
			}
			if want[p.Name] != p.ContainerPort {
				t.Errorf("port %+v: want containerPort %d", p, want[p.Name])
			}
			delete(want, p.Name)
		}
		if len(want) != 0 {
			t.Errorf("ports missing: %v", want)
		}
		if !hasArg(c, "--grpc-listen=:4317") || !hasArg(c, "--admin-listen=:10291") {
			t.Errorf("service mode should listen on every pod address: %v", c.Args)
		}
		if !hasArg(c, "--debug-listen=127.0.0.1:10292") {
			t.Errorf("the debug listener is not on loopback: %v", c.Args)
		}
		ru := o.DaemonSet.Spec.UpdateStrategy.RollingUpdate
		if ru == nil || ru.MaxUnavailable.String() != "1" || ru.MaxSurge.String() != "0" {
			t.Errorf("updateStrategy %+v; want maxUnavailable 1 maxSurge 0", ru)
		}
		svc := o.Services["podstamp"]
		if svc == nil {
			t.Fatalf("no Service podstamp; got %v", o.Services)
		}
		if svc.Spec.InternalTrafficPolicy == nil || *svc.Spec.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyLocal {
			t.Errorf("Service internalTrafficPolicy %v, want Local", svc.Spec.InternalTrafficPolicy)
		}
		if !reflect.DeepEqual(svc.Spec.Selector, o.DaemonSet.Spec.Selector.MatchLabels) {
			t.Errorf("Service selector %v does not match the DaemonSet's pods %v", svc.Spec.Selector, o.DaemonSet.Spec.Selector.MatchLabels)
		}
	})
}

// TestUpdateStrategy: without keys the network mode decides; one key given
// means the other is 0.
func TestUpdateStrategy(t *testing.T) {
	for _, tc := range []struct {
		set                []string
		surge, unavailable string
	}{
		{nil, "1", "0"},
		{[]string{"networkMode=service"}, "0", "1"},
		{[]string{"updateStrategy.maxSurge=25%"}, "25%", "0"},
		{[]string{"updateStrategy.maxUnavailable=1"}, "0", "1"},
		{[]string{"networkMode=service", "updateStrategy.maxSurge=1"}, "1", "0"},
		{[]string{"networkMode=service", "updateStrategy.maxUnavailable=10%"}, "0", "10%"},
		{[]string{"updateStrategy.maxSurge=0", "updateStrategy.maxUnavailable=2"}, "0", "2"},
	} {
		t.Run(strings.Join(tc.set, ","), func(t *testing.T) {
			o := decode(t, render(t, variant{set: append([]string{upstreamSet}, tc.set...)}).Manifest)
			ru := o.DaemonSet.Spec.UpdateStrategy.RollingUpdate
			if ru == nil || ru.MaxSurge.String() != tc.surge || ru.MaxUnavailable.String() != tc.unavailable {
				t.Errorf("rollingUpdate %+v; want maxSurge %s maxUnavailable %s", ru, tc.surge, tc.unavailable)
			}
		})
	}
}

// TestAccess: who may send and which headers reach the upstream.
func TestAccess(t *testing.T) {
	c := container(t, decode(t, render(t, variant{set: []string{upstreamSet}}).Manifest))
	if got, _ := argValue(c, "--forward-headers"); got != "authorization" {
		t.Errorf("--forward-headers=%q by default; want authorization only (a client must not pick its tenant)", got)
	}
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--upstream-header-from-identity") || strings.HasPrefix(a, "--allow-cidr") {
			t.Errorf("%s by default", a)
		}
	}

	f := filepath.Join(t.TempDir(), "values.yaml")
	writeFile(t, f, `identityHeaders:
  - {name: x-scope-orgid, attribute: k8s.namespace.name}
  - {name: x-pod, attribute: k8s.pod.name}
allowCIDRs: [10.0.0.0/8, "fd00::/8"]
`)
	c = container(t, decode(t, render(t, variant{files: []string{f}, set: []string{upstreamSet}}).Manifest))
	var got []string
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--upstream-header-from-identity=") || strings.HasPrefix(a, "--allow-cidr=") {
			got = append(got, a)
		}
	}
	want := []string{
		"--upstream-header-from-identity=x-scope-orgid=k8s.namespace.name",
		"--upstream-header-from-identity=x-pod=k8s.pod.name",
		"--allow-cidr=10.0.0.0/8",
		"--allow-cidr=fd00::/8",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("args %q; want %q", got, want)
	}
}

// TestGOMEMLIMIT: derived from the memory limit.
func TestGOMEMLIMIT(t *testing.T) {
	cases := []struct {
		set  []string
		want string // "" = not set
	}{
		{nil, "214748364"}, // 256Mi * 80%
		{[]string{"resources.limits.memory=1Gi"}, "858993459"},
		{[]string{"resources.limits.memory=1.5Gi", "goMemLimit.percent=90"}, "1449551462"},
		{[]string{"resources.limits.memory=500M"}, "400000000"},
		{[]string{"resources.limits.memory=268435456"}, "214748364"},
		{[]string{"goMemLimit.value=100MiB"}, "100MiB"},
		{[]string{"goMemLimit.enabled=false"}, ""},
		{[]string{"resources.limits=null"}, ""},
	}
	// Numbers in a values file arrive as float64.
	for _, tc := range []struct{ yaml, want string }{
		{"resources: {limits: {memory: 268435456}}", "214748364"},
		{"resources: {limits: {memory: 1e9}}", "800000000"},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "values.yaml")
			writeFile(t, f, tc.yaml+"\n")
			o := decode(t, render(t, variant{files: []string{f}, set: []string{upstreamSet}}).Manifest)
			if e, _ := env(container(t, o), "GOMEMLIMIT"); e.Value != tc.want {
				t.Errorf("GOMEMLIMIT=%q, want %q", e.Value, tc.want)
			}
		})
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.set, ","), func(t *testing.T) {
			o := decode(t, render(t, variant{set: append([]string{upstreamSet}, tc.set...)}).Manifest)
			e, ok := env(container(t, o), "GOMEMLIMIT")
			if tc.want == "" {
				if ok {
					t.Errorf("GOMEMLIMIT=%q set; want unset", e.Value)
				}
				return
			}
			if !ok || e.Value != tc.want {
				t.Errorf("GOMEMLIMIT=%q (set: %v); want %q", e.Value, ok, tc.want)
			}
		})
	}
}

// TestByteSizes: sizes given as YAML numbers reach the flags as integers.
func TestByteSizes(t *testing.T) {
	f := filepath.Join(t.TempDir(), "values.yaml")
	writeFile(t, f, "maxRequestBytes: 67108864\nhold: {maxBytes: 134217728}\n")
	c := container(t, decode(t, render(t, variant{files: []string{f}, set: []string{upstreamSet}}).Manifest))
	for _, a := range []string{"--max-request-bytes=67108864", "--hold-max-bytes=134217728"} {
		if !hasArg(c, a) {
			t.Errorf("missing %s in %v", a, c.Args)
		}
	}
}

// TestUpstream: endpoint, TLS from Secrets, headers only through the environment.
func TestUpstream(t *testing.T) {
	o := decode(t, render(t, variant{name: "tls", files: []string{filepath.Join(chartDir(t), "ci", "tls-headers-values.yaml")}}).Manifest)
	c := container(t, o)
	for flagName, want := range map[string]string{
		"--upstream":             "https://otel-gateway.example.com:4317",
		"--upstream-protocol":    "grpc",
		"--upstream-compression": "gzip",
		"--upstream-timeout":     "10s",
		"--upstream-ca-file":     "/etc/podstamp/tls/ca/ca.crt",
		"--upstream-cert-file":   "/etc/podstamp/tls/client/tls.crt",
		"--upstream-key-file":    "/etc/podstamp/tls/client/tls.key",
		"--forward-headers":      "",
		"--config":               "/etc/podstamp/config.yaml",
	} {
		if got, ok := argValue(c, flagName); !ok || got != want {
			t.Errorf("%s=%q (present %v), want %q", flagName, got, ok, want)
		}
	}
	for _, f := range []string{"--upstream-transport", "--grpc-transport"} {
		if _, ok := argValue(c, f); ok {
			t.Errorf("default args name a transport (%s): %v", f, c.Args)
		}
	}
	// The defaults (grpcTransport lean, upstream.transport auto) are the
	// binary's; any other choice is passed on.
	for _, v := range []struct{ set, flag, want string }{
		{"grpcTransport=grpc", "--grpc-transport", "grpc"},
		{"upstream.transport=lean", "--upstream-transport", "lean"},
		{"upstream.transport=grpc", "--upstream-transport", "grpc"},
	} {
		c := container(t, decode(t, render(t, variant{set: []string{upstreamSet, v.set}}).Manifest))
		if got, ok := argValue(c, v.flag); !ok || got != v.want {
			t.Errorf("%s: %s=%q (present %v), want %q", v.set, v.flag, got, ok, v.want)
		}
	}
	for _, a := range c.Args {
		if strings.Contains(a, "header=") || strings.Contains(a, "UPSTREAM_HEADER") {
			t.Errorf("header in the arguments (visible in /proc/*/cmdline): %s", a)
		}
	}
	sec, ok := env(c, "UPSTREAM_HEADER_1")
	if !ok || sec.ValueFrom == nil || sec.ValueFrom.SecretKeyRef == nil ||
		sec.ValueFrom.SecretKeyRef.Name != "upstream-auth" || sec.ValueFrom.SecretKeyRef.Key != "authorization" {
		t.Errorf("UPSTREAM_HEADER_1 is not the Secret upstream-auth/authorization: %+v", sec)
	}
	hdr, ok := env(c, "OTEL_EXPORTER_OTLP_HEADERS")
	if !ok || hdr.Value != "x-scope-orgid=tenant-a,authorization=$(UPSTREAM_HEADER_1)" {
		t.Errorf("OTEL_EXPORTER_OTLP_HEADERS=%q", hdr.Value)
	}
	// The referenced variable must be declared before the one that uses it.
	if idx(c, "UPSTREAM_HEADER_1") > idx(c, "OTEL_EXPORTER_OTLP_HEADERS") {
		t.Error("UPSTREAM_HEADER_1 declared after OTEL_EXPORTER_OTLP_HEADERS: Kubernetes would not expand it")
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	secrets := map[string]string{}
	for _, v := range o.DaemonSet.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secrets[v.Name] = v.Secret.SecretName
		}
	}
	if mounts["upstream-ca"] != "/etc/podstamp/tls/ca" || secrets["upstream-ca"] != "upstream-ca" ||
		mounts["upstream-client-cert"] != "/etc/podstamp/tls/client" || secrets["upstream-client-cert"] != "podstamp-client-tls" {
		t.Errorf("TLS volumes: mounts %v secrets %v", mounts, secrets)
	}
	if got := o.DaemonSet.Spec.Template.Spec.PriorityClassName; got != "system-node-critical" {
		t.Errorf("priorityClassName %q", got)
	}
}

func idx(c corev1.Container, name string) int {
	for i, e := range c.Env {
		if e.Name == name {
			return i
		}
	}
	return -1
}

// TestConfigMap: the config value is rendered verbatim as the binary's YAML and mounted where --config points.
func TestConfigMap(t *testing.T) {
	file := filepath.Join(chartDir(t), "ci", "rules-values.yaml")
	o := decode(t, render(t, variant{files: []string{file}}).Manifest)
	var got map[string]any
	if err := yaml.Unmarshal([]byte(o.ConfigMap.Data["config.yaml"]), &got); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	vals, err := Values([]string{filepath.Join(chartDir(t), "values.yaml"), file}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, _ := yaml.Marshal(vals["config"])
	gotJSON, _ := yaml.Marshal(got)
	if string(wantJSON) != string(gotJSON) {
		t.Errorf("ConfigMap config.yaml differs from the config value:\n got:\n%s\nwant:\n%s", gotJSON, wantJSON)
	}
	if got["cluster_name"] != "prod-eu-1" {
		t.Errorf("cluster_name %v", got["cluster_name"])
	}

	// trusted_relays passes through the same ConfigMap.
	tenants := decode(t, render(t, variant{files: []string{filepath.Join(chartDir(t), "ci", "tenants-values.yaml")}}).Manifest)
	var relays struct {
		TrustedRelays []map[string]any `json:"trusted_relays"`
	}
	if err := yaml.Unmarshal([]byte(tenants.ConfigMap.Data["config.yaml"]), &relays); err != nil {
		t.Fatal(err)
	}
	if len(relays.TrustedRelays) != 2 || !reflect.DeepEqual(relays.TrustedRelays[1]["cidrs"], []any{"10.200.0.0/16"}) {
		t.Errorf("trusted_relays in config.yaml: %+v", relays.TrustedRelays)
	}
	c := container(t, o)
	var mounted bool
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/etc/podstamp/config.yaml" && m.SubPath == "config.yaml" && m.ReadOnly {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("config.yaml not mounted at /etc/podstamp/config.yaml: %+v", c.VolumeMounts)
	}
	if o.DaemonSet.Spec.Template.Annotations["checksum/config"] == "" {
		t.Error("no checksum/config annotation: config changes would not roll the pods")
	}
}

// TestPodSettings: tolerations, grace period, metrics scraping.
func TestPodSettings(t *testing.T) {
	o := decode(t, render(t, variant{set: []string{upstreamSet}}).Manifest)
	pod := o.DaemonSet.Spec.Template.Spec
	if len(pod.Tolerations) != 1 || pod.Tolerations[0].Operator != corev1.TolerationOpExists || pod.Tolerations[0].Key != "" {
		t.Errorf("tolerations %+v; want one {operator: Exists} reaching every node", pod.Tolerations)
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds <= 20 {
		t.Errorf("terminationGracePeriodSeconds %v; want > shutdown timeout 20", pod.TerminationGracePeriodSeconds)
	}
	c := container(t, o)
	if !hasArg(c, "--shutdown-timeout=20s") {
		t.Error("--shutdown-timeout=20s missing")
	}
	if pod.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q; want system-node-critical", pod.PriorityClassName)
	}
	// Guaranteed memory: the request is the limit.
	req, lim := c.Resources.Requests.Memory(), c.Resources.Limits.Memory()
	if lim.IsZero() || req.Cmp(*lim) != 0 {
		t.Errorf("memory request %v, limit %v; want them equal", req, lim)
	}
	if !hasArg(c, "--max-request-bytes=20MiB") {
		t.Errorf("--max-request-bytes=20MiB missing: %v", c.Args)
	}
	none := decode(t, render(t, variant{set: []string{upstreamSet, "priorityClassName="}}).Manifest)
	if got := none.DaemonSet.Spec.Template.Spec.PriorityClassName; got != "" {
		t.Errorf("priorityClassName=\"\" renders %q", got)
	}
	a := o.DaemonSet.Spec.Template.Annotations
	if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != "10291" || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("scrape annotations %v", a)
	}

	sm := decode(t, render(t, variant{files: []string{filepath.Join(chartDir(t), "ci", "servicemonitor-values.yaml")}}).Manifest)
	if sm.ServiceMonitor == nil {
		t.Fatal("no ServiceMonitor with metrics.serviceMonitor.enabled")
	}
	svc := sm.Services["podstamp-metrics"]
	// The target by number: in hostNetwork mode the pod has no named ports.
	if svc == nil || svc.Spec.ClusterIP != "None" || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 10291 || svc.Spec.Ports[0].TargetPort.IntValue() != 10291 {
		t.Errorf("metrics Service %+v", svc)
	}
	if _, ok := sm.DaemonSet.Spec.Template.Annotations["prometheus.io/scrape"]; ok {
		t.Error("scrape annotations present with metrics.podAnnotations=false")
	}
}

// TestNotes: the NOTES tell apps which endpoint to use and warn about plain hostPort.
func TestNotes(t *testing.T) {
	host := render(t, variant{set: []string{upstreamSet}}).Notes
	for _, s := range []string{"fieldPath: status.hostIP", "http://$(HOST_IP):4317", "plain hostPort", "127.0.0.1:10292", "port-forward \"pod/$POD\" 10292"} {
		if !strings.Contains(host, s) {
			t.Errorf("hostNetwork NOTES lack %q:\n%s", s, host)
		}
	}
	svc := render(t, variant{set: []string{upstreamSet, "networkMode=service"}}).Notes
	for _, s := range []string{"http://podstamp.podstamp.svc:4317", "internalTrafficPolicy: Local", "plain hostPort"} {
		if !strings.Contains(svc, s) {
			t.Errorf("service NOTES lack %q:\n%s", s, svc)
		}
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPodSource: podSource kubelet passes the kubelet flags, mounts the
// kubelet CA from its ConfigMap, and refuses a CA with skipped verification.
func TestPodSource(t *testing.T) {
	args := func(o objects) string {
		return strings.Join(o.DaemonSet.Spec.Template.Spec.Containers[0].Args, " ")
	}
	def := decode(t, render(t, variant{set: []string{upstreamSet}}).Manifest)
	if a := args(def); strings.Contains(a, "--pod-source") || strings.Contains(a, "--kubelet") {
		t.Errorf("default args name a pod source or the kubelet: %s", a)
	}
	// The node is read only when the ClusterRole lets podstamp get it.
	if a := args(def); !strings.Contains(a, "--read-node=false") {
		t.Errorf("default args (no get on nodes) lack --read-node=false: %s", a)
	}
	for _, set := range []string{"rbac.getNodes=true", "config.metadata={k8s.pod.name,k8s.node.uid}"} {
		o := decode(t, render(t, variant{set: []string{upstreamSet, set}}).Manifest)
		if a := args(o); strings.Contains(a, "--read-node") {
			t.Errorf("%s: args %s; want the node read", set, a)
		}
	}

	o := decode(t, render(t, variant{set: []string{upstreamSet, "podSource=kubelet", "kubelet.pollInterval=30s",
		"kubelet.caConfigMap.name=kubelet-serving-ca"}}).Manifest)
	a := args(o)
	for _, want := range []string{"--pod-source=kubelet", "--kubelet-poll-interval=30s", "--kubelet-ca=/etc/podstamp/kubelet-ca/ca.crt"} {
		if !strings.Contains(a, want) {
			t.Errorf("args lack %s: %s", want, a)
		}
	}
	if strings.Contains(a, "insecure") {
		t.Errorf("args skip TLS verification: %s", a)
	}
	spec := o.DaemonSet.Spec.Template.Spec
	var vol, mount bool
	for _, v := range spec.Volumes {
		if v.Name == "kubelet-ca" && v.ConfigMap != nil && v.ConfigMap.Name == "kubelet-serving-ca" {
			vol = true
		}
	}
	for _, m := range spec.Containers[0].VolumeMounts {
		if m.Name == "kubelet-ca" && m.MountPath == "/etc/podstamp/kubelet-ca" && m.ReadOnly {
			mount = true
		}
	}
	if !vol || !mount {
		t.Errorf("kubelet CA volume %v, mount %v; want both", vol, mount)
	}

	o = decode(t, render(t, variant{set: []string{upstreamSet, "podSource=kubelet", "kubelet.insecureSkipTLSVerify=true"}}).Manifest)
	if a := args(o); !strings.Contains(a, "--kubelet-insecure-skip-tls-verify") || strings.Contains(a, "--kubelet-ca") {
		t.Errorf("insecure args: %s", a)
	}

	_, err := Render(Options{ChartDir: chartDir(t), Set: []string{upstreamSet, "podSource=kubelet",
		"kubelet.insecureSkipTLSVerify=true", "kubelet.caConfigMap.name=ca"}})
	if err == nil || !strings.Contains(err.Error(), "not at all") {
		t.Errorf("a CA with skipped verification rendered: %v", err)
	}
	if _, err := Render(Options{ChartDir: chartDir(t), Set: []string{upstreamSet, "podSource=etcd"}}); err == nil {
		t.Error("podSource=etcd rendered")
	}
}
