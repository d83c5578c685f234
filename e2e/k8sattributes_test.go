//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/podstamp/podstamp/bench/loadgen"
	"github.com/podstamp/podstamp/bench/sink"
	"github.com/podstamp/podstamp/e2e/cluster"
	"github.com/podstamp/podstamp/e2e/netns"
)

// The differential test: the real k8sattributes processor (the Collector
// bench/collector builds) and podstamp, side by side against the same API
// server and the same pods, each given the same k8sattributes block, both
// fed the same OTLP from each pod's own address (loopback addresses: a path
// without NAT). For every block of the table the stamped resource attributes
// must be equal, but for the deliberate differences listed in
// k8sattrDeliberate (and the README).

// diffCaseAttr names each resource the test sends, so the two sides' copies
// can be paired.
const diffCaseAttr = "diff.case"

// k8sattrNode is the node every pod of the test runs on; both sides watch
// only its pods (filter.node_from_env_var: K8S_NODE_NAME).
const k8sattrNode = "k8sattr-node"

// relayIP is a sender that is no pod: a relay (in the association block,
// trusted by podstamp's trusted_relays extension) or a stranger.
var relayIP = netip.MustParseAddr("127.0.0.60")

// strangerIP sends as no pod and is trusted by no rule.
var strangerIP = netip.MustParseAddr("127.0.0.61")

// diffPod is one pod of the test and the address it sends from.
type diffPod struct {
	key string // short name in the table
	pod *corev1.Pod
	ip  netip.Addr
}

// diffCase is one resource sent to both sides.
type diffCase struct {
	id    string
	pod   *diffPod // the pod it is sent from; nil: from relayIP
	attrs map[string]string
	// about says what the resource is about (for the deliberate
	// difference rules): the pod its attributes name, if another.
	names *diffPod
	// lies: an untrusted sender names another pod.
	lies bool
}

// k8sattrBlock is one row of the table: a k8sattributes block, as a user
// would copy it from their Collector configuration.
type k8sattrBlock struct {
	name  string
	block string
	// podstampExtra is appended to podstamp's copy only: podstamp's own
	// keys (trusted_relays), which the processor does not have.
	podstampExtra string
	// seen are case → attribute keys both sides must have stamped, so
	// that "equal" cannot mean "both stamped nothing".
	seen map[string][]string
	// unseen are case → attribute keys neither side may have stamped.
	unseen map[string][]string
}

// Every block starts with what a node agent's block has: the node filter,
// and wait_for_metadata so the Collector is compared once its informers
// synced (podstamp holds requests instead; start-up is not compared here).
const blockHead = `auth_type: kubeConfig
wait_for_metadata: true
filter:
  node_from_env_var: K8S_NODE_NAME
`

var k8sattrBlocks = []k8sattrBlock{
	{name: "defaults", block: blockHead, seen: map[string][]string{
		"deployment/plain": {"k8s.pod.name", "k8s.pod.uid", "k8s.pod.start_time", "k8s.namespace.name", "k8s.node.name",
			"k8s.deployment.name", "container.image.name", "container.image.tags"},
		"digest/name=both": {"container.image.tags"},
	}},
	{name: "all metadata", block: blockHead + `extract:
  metadata: [k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.pod.hostname, k8s.pod.start_time, k8s.pod.ip,
    k8s.deployment.name, k8s.deployment.uid, k8s.replicaset.name, k8s.replicaset.uid,
    k8s.statefulset.name, k8s.statefulset.uid, k8s.daemonset.name, k8s.daemonset.uid,
    k8s.job.name, k8s.job.uid, k8s.cronjob.name, k8s.cronjob.uid, k8s.node.name, k8s.node.uid,
    k8s.container.name, container.id, container.image.name, container.image.tags, container.image.repo_digests,
    k8s.cluster.uid]
`, seen: map[string][]string{
		"deployment/plain":  {"k8s.deployment.uid", "k8s.replicaset.uid", "k8s.node.uid", "k8s.pod.ip", "container.id", "container.image.repo_digests", "k8s.cluster.uid"},
		"statefulset/plain": {"k8s.pod.hostname", "k8s.statefulset.uid"},
		"daemonset/plain":   {"k8s.daemonset.uid"},
		"cronjob/plain":     {"k8s.job.uid", "k8s.cronjob.uid", "k8s.cronjob.name"},
		"sidecar/name=app":  {"container.id", "container.image.repo_digests"},
		"sidecar/id=proxy":  {"k8s.container.name"},
	}},
	{name: "labels/annotations from every source", block: blockHead + `extract:
  labels:
    - {from: pod, key: team}
    - {from: pod, key_regex: 'app\.kubernetes\.io/(.*)', tag_name: 'app.$1'}
    - {from: namespace, key: tenant}
    - {from: node, key: topology.kubernetes.io/zone, tag_name: zone}
    - {from: deployment, key: tier}
    - {from: replicaset, key: tier}
    - {from: statefulset, key: tier}
    - {from: daemonset, key: tier}
    - {from: job, key: tier}
    - {from: cronjob, key: tier}
  annotations:
    - {from: pod, key: owner}
    - {from: namespace, key_regex: 'billing/(.*)', tag_name: 'billing.$1'}
    - {from: node, key: rack}
    - {from: deployment, key: runbook}
    - {from: statefulset, key: runbook}
    - {from: daemonset, key: runbook}
    - {from: cronjob, key: runbook}
`, seen: map[string][]string{
		"deployment/plain": {"k8s.pod.label.team", "app.name", "k8s.namespace.label.tenant", "zone", "k8s.deployment.label.tier",
			"k8s.replicaset.label.tier", "k8s.pod.annotation.owner", "billing.cost-center", "k8s.node.annotation.rack",
			"k8s.deployment.annotation.runbook"},
		"statefulset/plain": {"k8s.statefulset.label.tier", "k8s.statefulset.annotation.runbook"},
		"daemonset/plain":   {"k8s.daemonset.label.tier", "k8s.daemonset.annotation.runbook"},
		"cronjob/plain":     {"k8s.job.label.tier", "k8s.cronjob.label.tier", "k8s.cronjob.annotation.runbook"},
	}},
	{name: "otel annotations", block: blockHead + `extract:
  otel_annotations: true
  metadata: [k8s.namespace.name, k8s.pod.name, k8s.deployment.name, k8s.container.name, container.image.name]
`, seen: map[string][]string{"deployment/plain": {"service.name", "deployment.environment.name", "k8s.container.name"}}},
	{name: "service.* keys", block: blockHead + `extract:
  metadata: [k8s.pod.name, service.name, service.namespace, service.version, service.instance.id]
`, seen: map[string][]string{
		"deployment/plain":    {"service.name", "service.namespace", "service.version", "service.instance.id"},
		"daemonset/plain":     {"service.name", "service.version"},
		"digest/name=both":    {"service.version"},
		"digest/id=pinned":    {"service.version"},
		"cronjob/name=report": {"service.name", "service.instance.id"},
	}},
	{name: "association by attributes", block: blockHead + `pod_association:
  - sources: [{from: resource_attribute, name: k8s.pod.uid}]
  - sources: [{from: resource_attribute, name: k8s.pod.name}, {from: resource_attribute, name: k8s.namespace.name}]
  - sources: [{from: resource_attribute, name: k8s.pod.ip}]
  - sources: [{from: connection}]
extract:
  metadata: [k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.deployment.name, k8s.node.name]
`, podstampExtra: "trusted_relays:\n  - cidrs: [" + relayIP.String() + "/32]\n", seen: map[string][]string{
		"relay/uid-deployment": {"k8s.pod.name", "k8s.deployment.name"}, "relay/name-cronjob": {"k8s.pod.uid"},
	}},
	{name: "filter and exclude", block: `auth_type: kubeConfig
wait_for_metadata: true
filter:
  node_from_env_var: K8S_NODE_NAME
  labels:
    - {key: stamp, value: "off", op: not-equals}
exclude:
  pods:
    - name: jaeger-agent
    - name: 'report-'
extract:
  metadata: [k8s.namespace.name, k8s.pod.name, k8s.pod.uid]
`, seen: map[string][]string{"deployment/plain": {"k8s.pod.name"}, "bare/plain": {"k8s.pod.uid"}},
		unseen: map[string][]string{"excluded/plain": {"k8s.pod.name"}, "stamp-off/plain": {"k8s.pod.name"},
			"cronjob/plain": {"k8s.pod.name"}}},
}

func TestK8sAttributesDifferential(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the end-to-end suite needs root: run it as root, e.g. `sudo make e2e`")
	}
	ensurePackages(t)
	s := &suite{root: repoRoot(t), prefix: netns.Prefix(), binDir: t.TempDir(), logDir: t.TempDir()}
	t.Cleanup(func() {
		if t.Failed() {
			keep, err := os.MkdirTemp("", "podstamp-k8sattr-logs-")
			if err == nil {
				_ = exec.Command("cp", "-r", s.logDir+"/.", keep).Run()
				fmt.Printf("process logs kept in %s\n", keep)
			}
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	collectorBinary(t, s.root)
	build := exec.CommandContext(ctx, "go", "build", "-race", "-o", s.bin("podstamp"), "./cmd/podstamp")
	build.Dir = s.root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build podstamp: %v\n%s", err, out)
	}
	var err error
	s.cluster, err = cluster.Start(ctx, cluster.Options{Log: newLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.cluster.Stop)

	w := newDiffWorld(ctx, t, s)
	cases := w.cases()

	type rowResult struct {
		name                    string
		resources, equal, delib int
		unexpected              []string
		notes                   map[string]int
	}
	var rows []rowResult
	for _, b := range k8sattrBlocks {
		t.Run(strings.ReplaceAll(b.name, " ", "_"), func(t *testing.T) {
			col, ps := w.runBoth(ctx, t, b, cases)
			for id, keys := range b.seen {
				for _, k := range keys {
					if col[id][k] == "" || ps[id][k] == "" {
						t.Errorf("%s: %s: %s not stamped by both (collector %q, podstamp %q)", b.name, id, k, col[id][k], ps[id][k])
					}
				}
			}
			for id, keys := range b.unseen {
				for _, k := range keys {
					if col[id][k] != "" || ps[id][k] != "" {
						t.Errorf("%s: %s: %s stamped (collector %q, podstamp %q), want it left out", b.name, id, k, col[id][k], ps[id][k])
					}
				}
			}
			if b.name == "all metadata" {
				t.Logf("what both stamped on a Deployment's pod:\n  collector %v\n  podstamp  %v", col["deployment/plain"], ps["deployment/plain"])
			}
			r := rowResult{name: b.name, notes: map[string]int{}}
			for _, c := range cases {
				a, okA := col[c.id]
				p, okP := ps[c.id]
				if !okA || !okP {
					t.Errorf("%s: case %s missing (collector %v, podstamp %v)", b.name, c.id, okA, okP)
					continue
				}
				r.resources++
				diffs := diffAttrs(a, p)
				if len(diffs) == 0 {
					r.equal++
					continue
				}
				var bad []string
				for _, d := range diffs {
					if why := k8sattrDeliberate(b, c, d); why != "" {
						r.notes[why]++
						continue
					}
					bad = append(bad, d.String())
				}
				if len(bad) == 0 {
					r.delib++
					continue
				}
				r.unexpected = append(r.unexpected, c.id+": "+strings.Join(bad, "; "))
			}
			for _, u := range r.unexpected {
				t.Errorf("%s: %s", b.name, u)
			}
			rows = append(rows, r)
		})
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n| k8sattributes block | resources | equal | equal but for deliberate differences | unexpected |\n|---|---:|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(&sb, "| %s | %d | %d | %d | %d |\n", r.name, r.resources, r.equal, r.delib, len(r.unexpected))
	}
	fmt.Fprintf(&sb, "\ndeliberate differences seen (attribute differences per block):\n")
	for _, r := range rows {
		for _, k := range slices.Sorted(mapsKeys(r.notes)) {
			fmt.Fprintf(&sb, "  %s: %s x%d\n", r.name, k, r.notes[k])
		}
	}
	fmt.Print(sb.String())
}

func mapsKeys[M ~map[string]V, V any](m M) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// absent stands for an attribute a side did not stamp.
const absent = "(absent)"

// attrDiff is one key whose value differs between the two sides (absent
// when a side did not stamp it).
type attrDiff struct{ key, collector, podstamp string }

func (d attrDiff) String() string {
	return fmt.Sprintf("%s: collector %q, podstamp %q", d.key, d.collector, d.podstamp)
}

func diffAttrs(a, p map[string]string) []attrDiff {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range p {
		keys[k] = true
	}
	// An attribute with an empty value is not an absent one.
	val := func(m map[string]string, k string) string {
		if v, ok := m[k]; ok {
			return v
		}
		return absent
	}
	var out []attrDiff
	for _, k := range slices.Sorted(mapsKeys(keys)) {
		if va, vp := val(a, k), val(p, k); va != vp {
			out = append(out, attrDiff{k, va, vp})
		}
	}
	return out
}

// containerKeys are the attributes of one container.
var containerKeys = map[string]bool{
	"k8s.container.name": true, "container.image.name": true, "container.image.tags": true,
	"container.image.tag": true, "container.id": true, "container.image.repo_digests": true,
	"service.version": true, "service.instance.id": true,
}

// k8sattrDeliberate says why a difference is one of podstamp's deliberate
// differences from the processor (README "Coming from the k8sattributes
// processor"), or "" when it is not one.
func k8sattrDeliberate(b k8sattrBlock, c diffCase, d attrDiff) string {
	src := relayIP.String()
	switch {
	case c.pod != nil:
		src = c.pod.ip.String()
	case c.id == "stranger/plain":
		src = strangerIP.String()
	}
	named := c.attrs["k8s.container.name"] != "" || c.attrs["container.id"] != ""
	switch {
	case c.lies:
		// An untrusted pod named another pod: the connection decides.
		return "D2 a pod's resource names another pod: podstamp stamps the sender's pod"
	case c.pod != nil && c.pod.key == "sidecar" && containerKeys[d.key] && d.collector == absent && !named:
		// The processor counts init and sidecar containers when it
		// decides a pod has one container; podstamp counts the regular ones.
		return "D1 one regular container beside init/sidecar containers: podstamp stamps it"
	case d.key == "k8s.pod.ip" && d.podstamp == absent && d.collector == src && (c.pod != nil || b.podstampExtra == ""):
		return "D3 no pod found (not a pod, excluded, filtered): the processor stamps the connection's address as k8s.pod.ip, podstamp nothing"
	case c.pod == nil && d.podstamp == absent && b.podstampExtra == "" &&
		(strings.HasPrefix(d.key, "k8s.namespace.") || strings.HasPrefix(d.key, "billing.") || d.key == "service.namespace"):
		return "D4 no pod found: the processor stamps the labels (and service.namespace) of the namespace the resource names, podstamp nothing"
	case c.pod != nil && c.pod.key == "digest" && d.key == "container.image.tags" && d.collector == "[Str(latest)]" && d.podstamp == absent:
		return "D5 an image pinned by digest alone: the processor stamps the tag latest, podstamp no tag"
	case d.key == "container.id" && d.collector == absent && c.attrs["k8s.container.restart_count"] != "":
		return "D6 k8s.container.restart_count of the previous run: podstamp stamps that run's container.id"
	case d.key == "k8s.pod.hostname" && d.collector == "" && d.podstamp == absent:
		return "D7 a pod without spec.hostname: the processor stamps an empty k8s.pod.hostname, podstamp none"
	}
	return ""
}

// ---------------------------------------------------------------- world

type diffWorld struct {
	t      *testing.T
	s      *suite
	ns     string // the pods' namespace
	pods   []*diffPod
	byKey  map[string]*diffPod
	nextIP int
}

func newDiffWorld(ctx context.Context, t *testing.T, s *suite) *diffWorld {
	t.Helper()
	w := &diffWorld{t: t, s: s, ns: "k8sattr-" + s.prefix, byKey: map[string]*diffPod{}, nextIP: 40}
	cl := s.cluster.Client
	_, err := cl.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        w.ns,
		Labels:      map[string]string{"tenant": "blue"},
		Annotations: map[string]string{"billing/cost-center": "cc-42", "billing/owner": "team-blue"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cluster.CreateServiceAccount(ctx, w.ns, "default"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.cluster.DeleteNamespace(context.Background(), w.ns) })
	node, err := cl.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        k8sattrNode,
		Labels:      map[string]string{"topology.kubernetes.io/zone": "eu-1a"},
		Annotations: map[string]string{"rack": "r12"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	if _, err := cl.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.cluster.DeleteNode(context.Background(), k8sattrNode) })

	wl := map[string]string{"tier": "frontend"}
	wa := map[string]string{"runbook": "https://runbooks.example/web"}
	podLabels := func(extra map[string]string) map[string]string {
		l := map[string]string{"team": "payments", "app.kubernetes.io/name": "shop", "app.kubernetes.io/version": "1.4.2"}
		for k, v := range extra {
			l[k] = v
		}
		return l
	}
	podAnn := map[string]string{"owner": "alice", "resource.opentelemetry.io/service.name": "shop-svc",
		"resource.opentelemetry.io/deployment.environment.name": "prod"}

	// Deployment -> ReplicaSet -> pod.
	dep, err := cl.AppsV1().Deployments(w.ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: wl, Annotations: wa},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(int32(0)), Selector: sel("web"), Template: tmpl("web")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := cl.AppsV1().ReplicaSets(w.ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-5d4f8b7c9", Labels: map[string]string{"tier": "frontend-rs", "pod-template-hash": "5d4f8b7c9"},
			OwnerReferences: []metav1.OwnerReference{owner("apps/v1", "Deployment", dep.Name, dep.UID)}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(int32(0)), Selector: sel("web"), Template: tmpl("web")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.addPod(ctx, "deployment", &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-5d4f8b7c9-x2x7q", Labels: podLabels(map[string]string{"pod-template-hash": "5d4f8b7c9"}),
			Annotations: podAnn, OwnerReferences: []metav1.OwnerReference{owner("apps/v1", "ReplicaSet", rs.Name, rs.UID)}},
		Spec: podSpec(corev1.Container{Name: "web", Image: "registry.example/team/web:1.4.2"}),
	}, 0)

	// StatefulSet.
	sts, err := cl.AppsV1().StatefulSets(w.ns).Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Labels: map[string]string{"tier": "data"}, Annotations: map[string]string{"runbook": "https://runbooks.example/db"}},
		Spec:       appsv1.StatefulSetSpec{Replicas: ptr.To(int32(0)), Selector: sel("db"), Template: tmpl("db"), ServiceName: "db"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stsSpec := podSpec(corev1.Container{Name: "postgres", Image: "postgres:16.4"})
	stsSpec.Hostname, stsSpec.Subdomain = "db-0", "db"
	w.addPod(ctx, "statefulset", &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "db-0", Labels: podLabels(nil), OwnerReferences: []metav1.OwnerReference{owner("apps/v1", "StatefulSet", sts.Name, sts.UID)}},
		Spec:       stsSpec,
	}, 2)

	// DaemonSet.
	ds, err := cl.AppsV1().DaemonSets(w.ns).Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "exporter", Labels: map[string]string{"tier": "infra"}, Annotations: map[string]string{"runbook": "https://runbooks.example/exporter"}},
		Spec:       appsv1.DaemonSetSpec{Selector: sel("exporter"), Template: tmpl("exporter")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.addPod(ctx, "daemonset", &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "exporter-h7k2m", Labels: map[string]string{"team": "infra"}, OwnerReferences: []metav1.OwnerReference{owner("apps/v1", "DaemonSet", ds.Name, ds.UID)}},
		Spec:       podSpec(corev1.Container{Name: "node-exporter", Image: "quay.io/prometheus/node-exporter:v1.8.2"}),
	}, 0)

	// CronJob -> Job -> pod.
	cj, err := cl.BatchV1().CronJobs(w.ns).Create(ctx, &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "report", Labels: map[string]string{"tier": "batch"}, Annotations: map[string]string{"runbook": "https://runbooks.example/report"}},
		Spec: batchv1.CronJobSpec{Schedule: "*/5 * * * *", Suspend: ptr.To(true), JobTemplate: batchv1.JobTemplateSpec{
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: podSpecNever(corev1.Container{Name: "report", Image: "busybox"})}},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job, err := cl.BatchV1().Jobs(w.ns).Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "report-29410560", Labels: map[string]string{"tier": "batch-run"},
			OwnerReferences: []metav1.OwnerReference{owner("batch/v1", "CronJob", cj.Name, cj.UID)}},
		Spec: batchv1.JobSpec{Suspend: ptr.To(true), ManualSelector: ptr.To(true), Selector: sel("report"),
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "report"}},
				Spec: podSpecNever(corev1.Container{Name: "report", Image: "busybox"})}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.addPod(ctx, "cronjob", &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "report-29410560-8k2pq", Labels: map[string]string{"app": "report"},
			OwnerReferences: []metav1.OwnerReference{owner("batch/v1", "Job", job.Name, job.UID)}},
		Spec: podSpecNever(corev1.Container{Name: "report", Image: "busybox"}),
	}, 0)

	// A bare pod, a registry with a port.
	w.addPod(ctx, "bare", &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "toolbox", Labels: podLabels(nil), Annotations: podAnn},
		Spec:       podSpec(corev1.Container{Name: "toolbox", Image: "registry.example:5000/tools/toolbox:2.0"}),
	}, 0)

	// An init container, a native sidecar (an init container that keeps
	// running) and one regular container that restarted once.
	sc := podSpec(corev1.Container{Name: "app", Image: "registry.example/team/app:3.1"})
	sc.InitContainers = []corev1.Container{
		{Name: "migrate", Image: "registry.example/team/migrate:3.1"},
		{Name: "proxy", Image: "registry.example/mesh/proxy:1.22", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)},
	}
	w.addPod(ctx, "sidecar", &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "meshed", Labels: podLabels(nil)},
		Spec:       sc,
	}, 1)

	// A digest-pinned image, with and without a tag.
	pin := podSpec(
		corev1.Container{Name: "pinned", Image: "registry.example/team/pinned@sha256:" + strings.Repeat("ab", 32)},
		corev1.Container{Name: "both", Image: "registry.example/team/both:2.5.0@sha256:" + strings.Repeat("cd", 32)},
	)
	w.addPod(ctx, "digest", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pinned", Labels: podLabels(nil)}, Spec: pin}, 0)

	// Pods the filter/exclude block leaves out.
	w.addPod(ctx, "excluded", &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "jaeger-agent", Labels: podLabels(nil)},
		Spec:       podSpec(corev1.Container{Name: "agent", Image: "jaegertracing/jaeger-agent:1.62.0"}),
	}, 0)
	w.addPod(ctx, "stamp-off", &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "quiet", Labels: map[string]string{"stamp": "off"}},
		Spec:       podSpec(corev1.Container{Name: "quiet", Image: "registry.example/quiet:1"}),
	}, 0)
	return w
}

func sel(app string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
}

func tmpl(app string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec: podSpec(corev1.Container{Name: app, Image: "registry.example/" + app + ":1"})}
}

func podSpec(cs ...corev1.Container) corev1.PodSpec {
	return corev1.PodSpec{NodeName: k8sattrNode, AutomountServiceAccountToken: ptr.To(false), Containers: cs}
}

func podSpecNever(cs ...corev1.Container) corev1.PodSpec {
	s := podSpec(cs...)
	s.RestartPolicy = corev1.RestartPolicyNever
	return s
}

func owner(apiVersion, kind, name string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: ptr.To(true)}
}

func hexID(seed string) string {
	h := sha256.Sum256([]byte(seed))
	return hex.EncodeToString(h[:])
}

// addPod creates the pod on k8sattrNode and sets its status as a kubelet
// would: its own loopback address, started containers with IDs and image
// digests; restarts is the restart count of every regular container (the
// previous run's ID in lastState).
func (w *diffWorld) addPod(ctx context.Context, key string, p *corev1.Pod, restarts int32) {
	t := w.t
	t.Helper()
	p.Namespace = w.ns
	created, err := w.s.cluster.Client.CoreV1().Pods(w.ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", p.Name, err)
	}
	ip := netip.AddrFrom4([4]byte{127, 0, 0, byte(w.nextIP)})
	w.nextIP++
	start := metav1.NewTime(created.CreationTimestamp.Add(2 * time.Second))
	st := corev1.PodStatus{
		Phase: corev1.PodRunning, StartTime: &start, PodIP: ip.String(), PodIPs: []corev1.PodIP{{IP: ip.String()}},
		HostIP: "127.0.0.1", HostIPs: []corev1.HostIP{{IP: "127.0.0.1"}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: start}},
	}
	status := func(c corev1.Container, restarts int32, running bool) corev1.ContainerStatus {
		cs := corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, RestartCount: restarts,
			ImageID:     imageRepo(c.Image) + "@sha256:" + hexID("image "+c.Image),
			ContainerID: "containerd://" + hexID(p.Name+"/"+c.Name+"/"+strconv.Itoa(int(restarts))),
		}
		if running {
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: start}
			cs.Ready, cs.Started = true, ptr.To(true)
		} else {
			cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", ContainerID: cs.ContainerID, StartedAt: start, FinishedAt: start}
		}
		if restarts > 0 {
			cs.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error",
				ContainerID: "containerd://" + hexID(p.Name+"/"+c.Name+"/"+strconv.Itoa(int(restarts-1))), StartedAt: start, FinishedAt: start}
		}
		return cs
	}
	for _, c := range created.Spec.InitContainers {
		sidecar := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		st.InitContainerStatuses = append(st.InitContainerStatuses, status(c, 0, sidecar))
	}
	for _, c := range created.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, status(c, restarts, true))
	}
	patch, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		t.Fatal(err)
	}
	updated, err := w.s.cluster.Client.CoreV1().Pods(w.ns).Patch(ctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		t.Fatalf("status of pod %s: %v", p.Name, err)
	}
	dp := &diffPod{key: key, pod: updated, ip: ip}
	w.pods = append(w.pods, dp)
	w.byKey[key] = dp
}

// imageRepo is the repository of an image reference as a runtime reports it
// in imageID: the name without tag or digest, docker.io/library/ added.
func imageRepo(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	first, _, found := strings.Cut(ref, "/")
	if !found {
		return "docker.io/library/" + ref
	}
	if !strings.ContainsAny(first, ".:") && first != "localhost" {
		return "docker.io/" + ref
	}
	return ref
}

func trimRuntime(id string) string {
	if _, after, ok := strings.Cut(id, "://"); ok {
		return after
	}
	return id
}

// cases are the resources every block is compared on: from each pod, one
// that names no container, one per container named by k8s.container.name,
// one naming a container by container.id, one carrying its own pod's UID;
// one from each pod naming another pod (a lie); from the relay, one naming
// each pod by UID and one by name and namespace.
func (w *diffWorld) cases() []diffCase {
	var out []diffCase
	for i, p := range w.pods {
		out = append(out, diffCase{id: p.key + "/plain", pod: p, attrs: map[string]string{}})
		for _, c := range append(slices.Clone(p.pod.Spec.InitContainers), p.pod.Spec.Containers...) {
			out = append(out, diffCase{id: p.key + "/name=" + c.Name, pod: p, attrs: map[string]string{"k8s.container.name": c.Name}})
		}
		for _, cs := range append(slices.Clone(p.pod.Status.InitContainerStatuses), p.pod.Status.ContainerStatuses...) {
			out = append(out, diffCase{id: p.key + "/id=" + cs.Name, pod: p, attrs: map[string]string{"container.id": trimRuntime(cs.ContainerID)}})
			if cs.RestartCount > 0 {
				out = append(out, diffCase{id: p.key + "/restart0=" + cs.Name, pod: p, attrs: map[string]string{
					"k8s.container.name": cs.Name, "k8s.container.restart_count": "0"}})
			}
		}
		out = append(out, diffCase{id: p.key + "/own-uid", pod: p, attrs: map[string]string{"k8s.pod.uid": string(p.pod.UID)}})
		other := w.pods[(i+1)%len(w.pods)]
		out = append(out, diffCase{id: p.key + "/names-" + other.key, pod: p, names: other, lies: true,
			attrs: map[string]string{"k8s.pod.uid": string(other.pod.UID)}})
	}
	for _, p := range w.pods {
		out = append(out, diffCase{id: "relay/uid-" + p.key, names: p, attrs: map[string]string{"k8s.pod.uid": string(p.pod.UID)}})
		out = append(out, diffCase{id: "relay/name-" + p.key, names: p, attrs: map[string]string{
			"k8s.pod.name": p.pod.Name, "k8s.namespace.name": p.pod.Namespace}})
	}
	out = append(out, diffCase{id: "stranger/plain", attrs: map[string]string{}})
	return out
}

// runBoth starts the Collector and podstamp with block b, sends every case
// to both from its address, and returns what each side's upstream received,
// by case, without the attributes the test itself sent.
func (w *diffWorld) runBoth(ctx context.Context, t *testing.T, b k8sattrBlock, cases []diffCase) (collector, podstamp map[string]map[string]string) {
	t.Helper()
	dir := t.TempDir()
	sinks := [2]*sink.Sink{}
	for i := range sinks {
		sk, err := sink.Start(sink.Config{GRPCListen: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sk.Close() })
		sinks[i] = sk
	}
	ports := freePorts(t, 3)
	colAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	psAddr := "127.0.0.1:" + strconv.Itoa(ports[1])
	psAdmin := "127.0.0.1:" + strconv.Itoa(ports[2])

	colCfg := filepath.Join(dir, "otelcol.yaml")
	must0(t, os.WriteFile(colCfg, []byte(collectorDiffConfig(colAddr, sinks[0].GRPCAddr(), b.block)), 0o600))
	psCfg := filepath.Join(dir, "podstamp.yaml")
	must0(t, os.WriteFile(psCfg, []byte(b.block+b.podstampExtra), 0o600))

	env := []string{"KUBECONFIG=" + w.s.cluster.KubeconfigPath, "K8S_NODE_NAME=" + k8sattrNode}
	col := w.s.startWith(t, "otelcol", "", env, nil, otelcolPath, "--config", "file:"+colCfg)
	ps := w.s.startWith(t, "podstamp", "", env, nil, w.s.bin("podstamp"),
		"--grpc-listen", psAddr, "--http-listen", "", "--admin-listen", psAdmin, "--debug-listen", "",
		"--upstream", "http://"+sinks[1].GRPCAddr(), "--kubeconfig", w.s.cluster.KubeconfigPath,
		"--node-ip", "127.0.0.1", "--config", psCfg)
	waitHTTP(t, ps, httpIn(""), "http://"+psAdmin+"/readyz", 60*time.Second)
	// The Collector starts its receiver after its processors: with
	// wait_for_metadata, once k8sattributes synced.
	if err := col.WaitReady(ctx, 90*time.Second, func(ctx context.Context) error {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", colAddr)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// Start-up is not compared: podstamp publishes a pod at once and reads
	// its namespace, node and workload metadata right after, off the watch
	// loop. One round of every case first (discarded) lets those reads end;
	// the blocks' seen lists fail the test if they had not.
	send := func(c diffCase, ep string, src netip.Addr, attrs map[string]string) {
		sum, err := loadgen.Run(ctx, loadgen.Config{Endpoint: ep, Signal: "logs", Requests: 1, Items: 1, Attrs: 1,
			SourceIPs: []string{src.String()}, ResourceAttrs: attrs, Timeout: 10 * time.Second})
		if err != nil || sum.Acked != 1 {
			t.Fatalf("send %s to %s: %v (%+v)\ncollector log:\n%s\npodstamp log:\n%s", c.id, ep, err, sum, col.logTail(), ps.logTail())
		}
	}
	for round := range 2 {
		for _, c := range cases {
			src := relayIP
			if c.pod != nil {
				src = c.pod.ip
			}
			if c.id == "stranger/plain" {
				src = strangerIP
			}
			attrs := map[string]string{diffCaseAttr: c.id}
			for k, v := range c.attrs {
				attrs[k] = v
			}
			for _, ep := range []string{colAddr, psAddr} {
				send(c, ep, src, attrs)
			}
		}
		if round == 0 {
			sinks[0].Reset()
			sinks[1].Reset()
		}
	}
	read := func(sk *sink.Sink) map[string]map[string]string {
		out := map[string]map[string]string{}
		for _, r := range sk.Records() {
			id := r.Attributes[diffCaseAttr]
			a := map[string]string{}
			for k, v := range r.Attributes {
				if k == diffCaseAttr || k == sink.SourceAttr {
					continue
				}
				a[k] = v
			}
			out[id] = a
		}
		return out
	}
	collector, podstamp = read(sinks[0]), read(sinks[1])
	// What the test sent is not a difference: only what each side added.
	for _, c := range cases {
		for k, v := range c.attrs {
			if collector[c.id][k] == v && podstamp[c.id][k] == v {
				delete(collector[c.id], k)
				delete(podstamp[c.id], k)
			}
		}
	}
	col.stop(t)
	ps.stop(t)
	return collector, podstamp
}

func must0(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// collectorDiffConfig is the Collector around a k8sattributes block: the
// OTLP gRPC receiver, the block, and an OTLP exporter without a queue.
func collectorDiffConfig(listen, upstream, block string) string {
	var ind strings.Builder
	for _, l := range strings.Split(strings.TrimRight(block, "\n"), "\n") {
		ind.WriteString("    " + l + "\n")
	}
	return fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
processors:
  k8sattributes:
%sexporters:
  otlp_grpc:
    endpoint: %s
    tls: {insecure: true}
    sending_queue: {enabled: false}
    retry_on_failure: {enabled: false}
service:
  telemetry:
    logs: {level: warn}
    metrics: {level: none}
  pipelines:
    logs:
      receivers: [otlp]
      processors: [k8sattributes]
      exporters: [otlp_grpc]
`, listen, ind.String(), upstream)
}

var otelcolPath string

// collectorBinary returns the Collector bench/collector builds (the
// OTLP receiver, k8sattributes and the OTLP exporter), from the cache the
// benchmark runner fills, building it there when missing (several minutes).
// PODSTAMP_OTELCOL names another binary.
func collectorBinary(t *testing.T, root string) string {
	t.Helper()
	if p := os.Getenv("PODSTAMP_OTELCOL"); p != "" {
		otelcolPath = p
		return p
	}
	dir := filepath.Join(root, "bench", "collector")
	// The same key as bench/cmd/runner's build.go: the release build flags
	// and the module's sources.
	h := sha256.New()
	h.Write([]byte(strings.Join([]string{"-trimpath", "-ldflags", "-s -w"}, " ")))
	for _, f := range []string{"go.mod", "go.sum", "main.go", "prepare.sh"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	cache, err := cluster.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(cache, "otelcol-bench-"+hex.EncodeToString(h.Sum(nil))[:12])
	if st, err := os.Stat(bin); err == nil && st.Size() > 1<<20 {
		otelcolPath = bin
		return bin
	}
	t.Logf("building the Collector into %s (first run only, several minutes)", bin)
	prep := exec.Command("sh", "prepare.sh")
	prep.Dir = dir
	if out, err := prep.CombinedOutput(); err != nil {
		t.Fatalf("bench/collector/prepare.sh: %v\n%s", err, out)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin+".tmp", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build the Collector: %v\n%s", err, out)
	}
	must0(t, os.Rename(bin+".tmp", bin))
	otelcolPath = bin
	return bin
}

var _ = sort.Strings
