package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

const podstampNamespace = "podstamp"

// env is the running cluster and what the scenarios share.
type env struct {
	t     *testing.T
	ctx   context.Context
	c     *Cluster
	cs    kubernetes.Interface
	chart *chart.Chart
	sink  string // sink results URL (pod address)
	// upstream is the Collector Service, as podstamp's upstream.
	upstream string
}

func (e *env) logf(format string, args ...any) {
	e.t.Helper()
	e.t.Logf("%s "+format, append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func TestNode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the one-node cluster needs root (network namespaces, mounts, cgroups): run `make e2e-node` as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 18*time.Minute)
	defer cancel()
	start := time.Now()
	logf := func(f string, a ...any) { t.Logf("%s "+f, append([]any{time.Now().Format("15:04:05")}, a...)...) }

	bins, err := KubeBinaries(ctx, logf)
	if err != nil {
		t.Fatal(err)
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	chrt, err := loader.Load(filepath.Join(root, "charts", "podstamp"))
	if err != nil {
		t.Fatal(err)
	}
	podstampRef := PodstampRepository + ":" + chrt.Metadata.AppVersion
	imagesTar, err := Images(ctx, t.TempDir(), podstampRef, logf)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Start(ctx, bins, []string{imagesTar}, Options{Logf: logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"kubelet", "containerd", "kube-proxy", "kube-controller-manager", "kube-scheduler"} {
				t.Logf("--- last lines of %s:\n%s", n, c.LogTail(n, 3000))
			}
			dumpPodLogs(t, c.Dir)
		}
		c.Stop()
	})
	logf("cluster up in %s", time.Since(start).Round(time.Second))
	e := &env{t: t, ctx: ctx, c: c, cs: c.Client, chart: chrt}
	e.setup()

	t.Run("seed", e.seed)
	if t.Failed() {
		return
	}
	t.Run("fix", e.fix)
	if t.Failed() {
		return
	}
	t.Run("upgrade", e.upgrade)
	t.Run("kubelet-source", e.kubeletSource)
	t.Run("service-mode", e.serviceMode)
	logf("all scenarios in %s", time.Since(start).Round(time.Second))
}

// setup creates the namespaces, the sink and the Collector (with hostPorts,
// as in the seed) and waits until they are ready.
func (e *env) setup() {
	t := e.t
	for _, ns := range []string{ObsNamespace, DemoNamespace} {
		if _, err := e.cs.CoreV1().Namespaces().Create(e.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// Pods need their namespace's default ServiceAccount, which the
		// controller-manager creates.
		e.until("default ServiceAccount in "+ns, time.Minute, "serviceaccounts", ns, byName("default"), &corev1.ServiceAccount{}, nil,
			func(ev watch.Event) (bool, error) { return ev.Type == watch.Added || ev.Type == watch.Modified, nil })
	}
	d, s := SinkObjects()
	if _, err := e.cs.AppsV1().Deployments(ObsNamespace).Create(e.ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := e.cs.CoreV1().Services(ObsNamespace).Create(e.ctx, s, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sinkPod := e.readyPod(ObsNamespace, "app=sink", 3*time.Minute)
	e.sink = "http://" + sinkPod.Status.PodIP + ":8080/results"
	e.logf("sink ready: pod %s, %s; Service %s:4317", sinkPod.Name, sinkPod.Status.PodIP, svc.Spec.ClusterIP)

	sa, cr, crb, cm, csvc, ds := CollectorObjects(svc.Spec.ClusterIP+":4317", true)
	if _, err := e.cs.CoreV1().ServiceAccounts(ObsNamespace).Create(e.ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.RbacV1().ClusterRoles().Create(e.ctx, cr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.RbacV1().ClusterRoleBindings().Create(e.ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.CoreV1().ConfigMaps(ObsNamespace).Create(e.ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	csvcOut, err := e.cs.CoreV1().Services(ObsNamespace).Create(e.ctx, csvc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.upstream = "http://" + csvcOut.Spec.ClusterIP + ":4317"
	if _, err := e.cs.AppsV1().DaemonSets(ObsNamespace).Create(e.ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	col := e.readyPod(ObsNamespace, "app=otelcol", 3*time.Minute)
	e.logf("Collector DaemonSet pod %s ready on %s with hostPorts 4317, 4318", col.Name, col.Status.PodIP)
}

// seed: the Collector DaemonSet with k8sattributes and hostPort; apps send
// to $(HOST_IP). The portmap plugin masquerades: the Collector sees the
// bridge address and stamps no pod.
func (e *env) seed(t *testing.T) {
	e.t = t
	e.resetSink()
	grpcPod := e.runDemo("seed-grpc", "grpc", "http://$(HOST_IP):4317")
	httpPod := e.runDemo("seed-http", "http/protobuf", "http://$(HOST_IP):4318")
	senders := e.collect([]*corev1.Pod{grpcPod, httpPod}, nil)
	peers := e.receiverPeers(ObsNamespace, "app=otelcol", "otelcol")
	e.report("seed (Collector with k8sattributes behind hostPort)", "the Collector", peers, senders, grpcPod, httpPod)
	for _, s := range senders {
		if s.Right != 0 {
			t.Errorf("seed: %s: %d of %d resources stamped with the right pod; the portmap plugin should have hidden it", s.Pod, s.Right, s.Resources)
		}
	}
	if len(peers) != 1 || peers[0] != BridgeIP {
		t.Errorf("seed: the Collector's OTLP sockets have peers %v, want only the bridge address %s", peers, BridgeIP)
	}
	e.deletePods(grpcPod, httpPod)
}

// fix: the Collector loses its hostPorts, podstamp is installed in front of
// it with the chart's default values plus the upstream; the same apps,
// unchanged, arrive stamped with their own pods, from their first span on.
func (e *env) fix(t *testing.T) {
	e.t = t
	// Without hostPorts; the portmap rules would otherwise take the node
	// address's 4317 before podstamp's socket does.
	ds, err := e.cs.AppsV1().DaemonSets(ObsNamespace).Get(e.ctx, "otelcol", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range ds.Spec.Template.Spec.Containers[0].Ports {
		ds.Spec.Template.Spec.Containers[0].Ports[i].HostPort = 0
	}
	if _, err := e.cs.AppsV1().DaemonSets(ObsNamespace).Update(e.ctx, ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitDaemonSet(ObsNamespace, "otelcol", 3*time.Minute)
	e.logf("Collector DaemonSet rolled out without hostPorts; Service %s", e.upstream)

	start := time.Now()
	rel := e.helmInstall("podstamp", map[string]any{
		"image":    map[string]any{"pullPolicy": "Never"},
		"upstream": map[string]any{"endpoint": e.upstream},
	})
	e.logf("helm install %s (chart %s, image %s:%s) ready in %s", rel, e.chart.Metadata.Version,
		PodstampRepository, e.chart.Metadata.AppVersion, time.Since(start).Round(time.Second))
	pod := e.readyPod(podstampNamespace, "app.kubernetes.io/name=podstamp", 2*time.Minute)
	e.checkPodstampPod(pod)

	e.throughPodstamp("fix", "fix (podstamp from the chart in front of the same Collector)", "fix", "$(HOST_IP)", true)
}

// checkPodstampPod: the pod passed its own probes, runs as 65532 with a
// read-only root file system, and serves metrics on the node address.
func (e *env) checkPodstampPod(pod *corev1.Pod) {
	t := e.t
	for _, cs := range pod.Status.ContainerStatuses {
		if !cs.Ready || cs.RestartCount != 0 {
			t.Errorf("podstamp container %s: ready %v, restarts %d", cs.Name, cs.Ready, cs.RestartCount)
		}
	}
	if !pod.Spec.HostNetwork || pod.Status.PodIP != NodeIP {
		t.Errorf("podstamp pod: hostNetwork %v, pod IP %s; want the node address %s", pod.Spec.HostNetwork, pod.Status.PodIP, NodeIP)
	}
	pid, err := e.containerPID(pod, "podstamp")
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var uid, capEff string
	for _, l := range strings.Split(string(status), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
			uid = strings.Join(f[1:], " ")
		} else if len(f) > 1 && f[0] == "CapEff:" {
			capEff = f[1]
		}
	}
	if uid != "65532 65532 65532 65532" || capEff != "0000000000000000" {
		t.Errorf("podstamp process %d: Uid %q CapEff %q; want 65532 and no capabilities", pid, uid, capEff)
	}
	mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	rootRO := false
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 5 && f[4] == "/" {
			rootRO = strings.HasPrefix(f[5], "ro")
		}
	}
	if !rootRO {
		t.Errorf("podstamp process %d: root file system is not mounted read-only", pid)
	}
	body, err := e.get("http://" + NodeIP + ":10291/metrics")
	if err != nil {
		t.Fatalf("scrape podstamp metrics on the node address: %v", err)
	}
	if !strings.Contains(body, "podstamp_") {
		t.Errorf("metrics on %s:10291 carry no podstamp_ series:\n%.500s", NodeIP, body)
	}
	e.logf("podstamp pod %s: Ready, 0 restarts, uid %s, no capabilities, read-only root; /metrics on %s:10291 answers (%d bytes)",
		pod.Name, strings.Fields(uid)[0], NodeIP, len(body))
}

// upgrade: helm upgrade with a changed value while two apps send steadily;
// the DaemonSet rolls (maxSurge 1); failed exports and lost items are counted.
func (e *env) upgrade(t *testing.T) {
	e.t = t
	e.resetSink()
	grpcPod := e.runDemo("upgrade-grpc", "grpc", "http://$(HOST_IP):4317")
	httpPod := e.runDemo("upgrade-http", "http/protobuf", "http://$(HOST_IP):4318")
	pods := []*corev1.Pod{grpcPod, httpPod}
	e.collect(pods, nil) // both deliver before the roll
	old := e.readyPod(podstampNamespace, "app.kubernetes.io/name=podstamp", time.Minute)
	start := time.Now()
	e.helmUpgrade("podstamp", map[string]any{
		"image":    map[string]any{"pullPolicy": "Never"},
		"upstream": map[string]any{"endpoint": e.upstream},
		"hold":     map[string]any{"timeout": "4s"},
	})
	e.untilGone("the old podstamp pod to go", 2*time.Minute, podstampNamespace, byName(old.Name))
	e.waitDaemonSet(podstampNamespace, "podstamp", 2*time.Minute)
	newPod := e.readyPod(podstampNamespace, "app.kubernetes.io/name=podstamp", time.Minute)
	e.logf("helm upgrade rolled %s -> %s in %s", old.Name, newPod.Name, time.Since(start).Round(time.Second))
	// A few more seconds of steady sending through the new pod.
	time.Sleep(3 * time.Second) // the apps send on their own clock; this is their sending time, not a wait for an event
	peers := e.receiverPeers(podstampNamespace, "app.kubernetes.io/name=podstamp", "podstamp")
	stats := e.stopDemos(pods)
	senders := e.collect(pods, stats)
	e.report("upgrade (helm upgrade --set hold.timeout=4s during steady sends)", "podstamp (new pod)", peers, senders, grpcPod, httpPod)
	e.checkPeers("upgrade", peers, grpcPod, httpPod)
	for _, p := range pods {
		s, st := senders[p.Name], stats[p.Name]
		lostSpans := st.SpansOK - int64(s.Spans)
		lostLogs := st.LogsOK - int64(s.Logs)
		e.logf("upgrade: %s (%s): spans sent %d, delivered %d, failed %d, lost %d; logs delivered %d, failed %d, lost %d; metric exports failed %d; last error %q",
			p.Name, st.Protocol, st.Seq, st.SpansOK, st.SpansFailed, lostSpans, st.LogsOK, st.LogsFailed, lostLogs, st.MetricsFailed, st.LastError)
		if s.Right != s.Resources {
			t.Errorf("upgrade: %s: %d of %d resources stamped right (%q)", p.Name, s.Right, s.Resources, s.StampedAs)
		}
		if lostSpans != 0 || lostLogs != 0 {
			t.Errorf("upgrade: %s: %d spans and %d log records acknowledged but never delivered", p.Name, lostSpans, lostLogs)
		}
	}
	e.deletePods(grpcPod, httpPod)
}

// kubeletSource: podSource kubelet. podstamp reads its node's pods from
// the real kubelet's /pods: its service account token authenticated by the
// kubelet through the API server, the request authorized as get on
// nodes/pods (the kubelet's fine-grained authorization), the kubelet's
// certificate verified against the cluster CA. The ClusterRole then grants
// nothing on pods, so a podstamp that read pods from the API server could
// not become ready; new pods' data, their first spans included, is stamped
// right.
func (e *env) kubeletSource(t *testing.T) {
	e.t = t
	old := e.readyPod(podstampNamespace, "app.kubernetes.io/name=podstamp", time.Minute)
	start := time.Now()
	e.helmUpgrade("podstamp", map[string]any{
		"image":     map[string]any{"pullPolicy": "Never"},
		"upstream":  map[string]any{"endpoint": e.upstream},
		"podSource": "kubelet",
	})
	e.untilGone("the old podstamp pod to go", 2*time.Minute, podstampNamespace, byName(old.Name))
	e.waitDaemonSet(podstampNamespace, "podstamp", 2*time.Minute)
	pod := e.readyPod(podstampNamespace, "app.kubernetes.io/name=podstamp", time.Minute)
	e.logf("kubelet source: helm upgrade --set podSource=kubelet rolled %s -> %s in %s", old.Name, pod.Name, time.Since(start).Round(time.Second))
	if args := strings.Join(pod.Spec.Containers[0].Args, " "); !strings.Contains(args, "--pod-source=kubelet") {
		t.Fatalf("podstamp args lack --pod-source=kubelet: %s", args)
	}
	roles, err := e.cs.RbacV1().ClusterRoles().List(e.ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=podstamp"})
	if err != nil || len(roles.Items) != 1 {
		t.Fatalf("podstamp's ClusterRole: %v (%d found)", err, len(roles.Items))
	}
	var grants []string
	for _, r := range roles.Items[0].Rules {
		for _, res := range r.Resources {
			grants = append(grants, res+":"+strings.Join(r.Verbs, ","))
			if res == "pods" {
				t.Errorf("the ClusterRole still grants %v on pods", r.Verbs)
			}
		}
	}
	e.logf("kubelet source: podstamp's ClusterRole grants %v", grants)

	e.throughPodstamp("kubelet source", "kubelet source (podSource: kubelet, pods from the kubelet's /pods)", "kubelet", "$(HOST_IP)", true)
	body, err := e.get("http://" + NodeIP + ":10291/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "podstamp_cache_watch_errors_total ") && l != "podstamp_cache_watch_errors_total 0" {
			t.Errorf("failed reads of the kubelet: %s", l)
		}
	}
}

// serviceMode: networkMode service, internalTrafficPolicy Local, through
// kube-proxy's rules; apps send to the Service address.
func (e *env) serviceMode(t *testing.T) {
	e.t = t
	e.helmUninstall("podstamp")
	start := time.Now()
	e.helmInstall("podstamp", map[string]any{
		"networkMode": "service",
		"image":       map[string]any{"pullPolicy": "Never"},
		"upstream":    map[string]any{"endpoint": e.upstream},
	})
	pod := e.readyPod(podstampNamespace, "app.kubernetes.io/name=podstamp", 2*time.Minute)
	svc, err := e.cs.CoreV1().Services(podstampNamespace).Get(e.ctx, "podstamp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.logf("service mode: podstamp pod %s on %s, Service %s (internalTrafficPolicy %v), ready in %s",
		pod.Name, pod.Status.PodIP, svc.Spec.ClusterIP, deref(svc.Spec.InternalTrafficPolicy), time.Since(start).Round(time.Second))
	e.throughPodstamp("service mode", "service mode (networkMode: service through kube-proxy)", "svc", svc.Spec.ClusterIP, false)
}

// throughPodstamp: two new apps, <prefix>-grpc and <prefix>-http, send over
// OTLP/gRPC to host:4317 and OTLP/HTTP to host:4318 through podstamp; what
// arrived is reported under title, podstamp must see the apps' own
// addresses, and every resource (with firstSpan, each app's first span
// too) must be stamped with its app's pod. The apps are deleted after.
func (e *env) throughPodstamp(scenario, title, prefix, host string, firstSpan bool) {
	e.resetSink()
	grpcPod := e.runDemo(prefix+"-grpc", "grpc", "http://"+host+":4317")
	httpPod := e.runDemo(prefix+"-http", "http/protobuf", "http://"+host+":4318")
	senders := e.collect([]*corev1.Pod{grpcPod, httpPod}, nil)
	peers := e.receiverPeers(podstampNamespace, "app.kubernetes.io/name=podstamp", "podstamp")
	e.report(title, "podstamp", peers, senders, grpcPod, httpPod)
	e.checkPeers(scenario, peers, grpcPod, httpPod)
	e.checkStamped(scenario, senders, firstSpan, grpcPod, httpPod)
	e.deletePods(grpcPod, httpPod)
}

// checkStamped: every resource each pod sent arrived stamped with that pod
// and with its own address as k8s.pod.ip, and, with firstSpan, so did its
// first span (demo.seq 0).
func (e *env) checkStamped(scenario string, senders map[string]*Sender, firstSpan bool, pods ...*corev1.Pod) {
	t := e.t
	for _, p := range pods {
		s := senders[p.Name]
		if s.Right != s.Resources {
			t.Errorf("%s: %s: %d of %d resources stamped right (stamped as %q)", scenario, p.Name, s.Right, s.Resources, s.StampedAs)
		}
		if len(s.SeenAs) != 1 || s.SeenAs[0] != p.Status.PodIP {
			t.Errorf("%s: %s: k8s.pod.ip %v, want the pod's address %s", scenario, p.Name, s.SeenAs, p.Status.PodIP)
		}
		if firstSpan && (s.FirstSpanStamped == nil || !*s.FirstSpanStamped) {
			t.Errorf("%s: %s: its first span (demo.seq 0) was not received stamped right", scenario, p.Name)
		}
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// report prints one scenario's table.
func (e *env) report(title, receiver string, peers []string, senders map[string]*Sender, pods ...*corev1.Pod) {
	// Only this scenario's pods: a deleted pod's last exports may still
	// arrive after the sink was reset.
	ips := map[string]string{}
	mine := map[string]*Sender{}
	for _, p := range pods {
		ips[p.Name] = p.Status.PodIP
		mine[p.Name] = senders[p.Name]
	}
	e.t.Logf("scenario %s:\n  peer addresses on the OTLP sockets of %s: %v\n%s", title, receiver, peers, Summary(mine, ips))
}

// receiverPeers are the peers of the established connections to ports 4317
// and 4318 of a pod's container, read in its network namespace.
func (e *env) receiverPeers(ns, selector, container string) []string {
	e.t.Helper()
	pod := e.readyPod(ns, selector, time.Minute)
	pid, err := e.containerPID(pod, container)
	if err != nil {
		e.t.Fatal(err)
	}
	peers, err := Peers(pid, 4317, 4318)
	if err != nil {
		e.t.Fatal(err)
	}
	return peers
}

// checkPeers: every app pod's own address is among the receiver's peers,
// and the bridge address is not.
func (e *env) checkPeers(scenario string, peers []string, pods ...*corev1.Pod) {
	e.t.Helper()
	for _, p := range pods {
		if !slices.Contains(peers, p.Status.PodIP) {
			e.t.Errorf("%s: %s's address %s is not among podstamp's peers %v", scenario, p.Name, p.Status.PodIP, peers)
		}
	}
	if slices.Contains(peers, BridgeIP) {
		e.t.Errorf("%s: podstamp has a peer at the bridge address %s: a connection was masqueraded", scenario, BridgeIP)
	}
}

// runDemo starts a demo pod and waits until it runs.
func (e *env) runDemo(name, protocol, endpoint string) *corev1.Pod {
	e.t.Helper()
	if _, err := e.cs.CoreV1().Pods(DemoNamespace).Create(e.ctx, DemoPod(name, protocol, endpoint), metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	var pod *corev1.Pod
	e.until("pod "+name+" running", 2*time.Minute, "pods", DemoNamespace, byName(name), &corev1.Pod{}, nil,
		func(ev watch.Event) (bool, error) {
			p, ok := ev.Object.(*corev1.Pod)
			if ok && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				pod = p
				return true, nil
			}
			return false, nil
		})
	return pod
}

// collect waits until the sink holds, from every pod, spans, log records and
// metrics (and, with stats, every item the pod says was delivered), and
// returns them by sender.
func (e *env) collect(pods []*corev1.Pod, stats map[string]Stats) map[string]*Sender {
	e.t.Helper()
	var senders map[string]*Sender
	e.waitFor("the sink to receive from every app", 90*time.Second, func() (bool, error) {
		rs, err := e.results()
		if err != nil {
			return false, err
		}
		senders = BySender(rs, DemoNamespace)
		for _, p := range pods {
			s := senders[p.Name]
			if s == nil || s.Spans < 20 || s.Logs < 20 || s.Metrics < 2 || s.FirstSpanStamped == nil {
				return false, nil
			}
			if st, ok := stats[p.Name]; ok && (int64(s.Spans) < st.SpansOK || int64(s.Logs) < st.LogsOK) {
				return false, nil
			}
		}
		return true, nil
	})
	if senders == nil {
		senders = map[string]*Sender{}
	}
	for _, p := range pods {
		if senders[p.Name] == nil {
			senders[p.Name] = &Sender{Pod: p.Name}
		}
	}
	return senders
}

// Stats are a demo app's counts (its /stats JSON).
type Stats struct {
	Protocol      string `json:"protocol"`
	Seq           int64  `json:"seq"`
	SpansOK       int64  `json:"spans_ok"`
	SpansFailed   int64  `json:"spans_failed"`
	LogsOK        int64  `json:"logs_ok"`
	LogsFailed    int64  `json:"logs_failed"`
	MetricsOK     int64  `json:"metric_exports_ok"`
	MetricsFailed int64  `json:"metric_exports_failed"`
	LastError     string `json:"last_error"`
}

func (e *env) stopDemos(pods []*corev1.Pod) map[string]Stats {
	out := map[string]Stats{}
	for _, p := range pods {
		resp, err := e.c.HTTPClient().Post("http://"+p.Status.PodIP+":8080/stop", "", nil)
		if err != nil {
			e.t.Fatalf("stop %s: %v", p.Name, err)
		}
		var st Stats
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil {
			e.t.Fatalf("stop %s: %v", p.Name, err)
		}
		out[p.Name] = st
	}
	return out
}

func (e *env) results() ([]Resource, error) {
	body, err := e.get(e.sink)
	if err != nil {
		return nil, err
	}
	var rs []Resource
	return rs, json.Unmarshal([]byte(body), &rs)
}

func (e *env) resetSink() {
	e.t.Helper()
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodDelete, e.sink, nil)
	resp, err := e.c.HTTPClient().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
}

func (e *env) get(url string) (string, error) {
	req, err := http.NewRequestWithContext(e.ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := e.c.HTTPClient().Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %.300s", url, resp.Status, b)
	}
	return string(b), nil
}

func (e *env) deletePods(pods ...*corev1.Pod) {
	for _, p := range pods {
		if err := e.cs.CoreV1().Pods(p.Namespace).Delete(e.ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			e.t.Error(err)
		}
	}
}

// readyPod waits for a pod matching selector that is Ready and not being
// deleted, and returns it.
func (e *env) readyPod(ns, selector string, timeout time.Duration) *corev1.Pod {
	e.t.Helper()
	var pod *corev1.Pod
	e.until(fmt.Sprintf("a Ready pod %s in %s", selector, ns), timeout, "pods", ns, byLabels(selector), &corev1.Pod{}, nil,
		func(ev watch.Event) (bool, error) {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted || p.DeletionTimestamp != nil {
				return false, nil
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					pod = p
					return true, nil
				}
			}
			return false, nil
		})
	return pod
}

// waitDaemonSet waits until a DaemonSet's update is complete: observed,
// every pod updated and available, and no pod beyond the desired number.
func (e *env) waitDaemonSet(ns, name string, timeout time.Duration) {
	e.t.Helper()
	e.until("DaemonSet "+ns+"/"+name+" rolled out", timeout, "daemonsets", ns, byName(name), &appsv1.DaemonSet{}, nil,
		func(ev watch.Event) (bool, error) {
			ds, ok := ev.Object.(*appsv1.DaemonSet)
			return ok && ev.Type != watch.Deleted && dsDone(ds, ds.Status), nil
		})
}

func dsDone(ds *appsv1.DaemonSet, st appsv1.DaemonSetStatus) bool {
	return st.ObservedGeneration >= ds.Generation && st.DesiredNumberScheduled > 0 &&
		st.UpdatedNumberScheduled == st.DesiredNumberScheduled &&
		st.NumberAvailable == st.DesiredNumberScheduled && st.CurrentNumberScheduled == st.DesiredNumberScheduled &&
		st.NumberReady == st.DesiredNumberScheduled
}

func byName(name string) func(*metav1.ListOptions) {
	return func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + name }
}

func byLabels(selector string) func(*metav1.ListOptions) {
	return func(o *metav1.ListOptions) { o.LabelSelector = selector }
}

// until lists and watches the objects of resource in ns that filter
// selects, and returns once cond holds for an event (the listed objects
// arrive as Added events) or pre holds for the synced store.
func (e *env) until(what string, timeout time.Duration, resource, ns string, filter func(*metav1.ListOptions), obj runtime.Object,
	pre watchtools.PreconditionFunc, cond watchtools.ConditionFunc) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	rc := e.cs.CoreV1().RESTClient()
	if _, ok := obj.(*appsv1.DaemonSet); ok {
		rc = e.cs.AppsV1().RESTClient()
	}
	lw := cache.NewFilteredListWatchFromClient(rc, resource, ns, filter)
	if _, err := watchtools.UntilWithSync(ctx, lw, obj, pre, cond); err != nil {
		e.t.Fatalf("waiting for %s: %v", what, err)
	}
}

// untilGone returns once no pod in ns that filter selects is left.
func (e *env) untilGone(what string, timeout time.Duration, ns string, filter func(*metav1.ListOptions)) {
	e.t.Helper()
	left := map[string]bool{}
	e.until(what, timeout, "pods", ns, filter, &corev1.Pod{},
		func(store cache.Store) (bool, error) {
			for _, k := range store.ListKeys() {
				left[k] = true
			}
			return len(left) == 0, nil
		},
		func(ev watch.Event) (bool, error) {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				return false, nil
			}
			key := p.Namespace + "/" + p.Name
			if ev.Type == watch.Deleted {
				delete(left, key)
			} else {
				left[key] = true
			}
			return len(left) == 0, nil
		})
}

// waitFor polls cond every 250ms until it is true: for the sink, another
// process whose state can only be read.
func (e *env) waitFor(what string, timeout time.Duration, cond func() (bool, error)) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	var last error
	for {
		ok, err := cond()
		if ok && err == nil {
			return
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("waiting for %s: %v (last error: %v)", what, ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// containerPID finds the host PID of a container's process through ctr.
func (e *env) containerPID(pod *corev1.Pod, container string) (int, error) {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != container {
			continue
		}
		id := strings.TrimPrefix(cs.ContainerID, "containerd://")
		out, err := e.c.Ctr(e.ctx, "tasks", "ls")
		if err != nil {
			return 0, err
		}
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && f[0] == id {
				var pid int
				_, err := fmt.Sscanf(f[1], "%d", &pid)
				return pid, err
			}
		}
		return 0, fmt.Errorf("container %s of %s not among containerd's tasks:\n%s", id, pod.Name, out)
	}
	return 0, fmt.Errorf("pod %s has no container %s", pod.Name, container)
}

// helm

func (e *env) helmConfig() *action.Configuration {
	e.t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	kc, ns := e.c.Kubeconfig, podstampNamespace
	flags.KubeConfig, flags.Namespace = &kc, &ns
	cfg := new(action.Configuration)
	if err := cfg.Init(flags, podstampNamespace, "secret", func(f string, a ...any) {}); err != nil {
		e.t.Fatal(err)
	}
	return cfg
}

func (e *env) helmInstall(name string, vals map[string]any) string {
	e.t.Helper()
	inst := action.NewInstall(e.helmConfig())
	inst.ReleaseName = name
	inst.Namespace = podstampNamespace
	inst.CreateNamespace = true
	inst.Wait = true
	inst.Timeout = 3 * time.Minute
	rel, err := inst.RunWithContext(e.ctx, e.chart, vals)
	if err != nil {
		e.t.Fatalf("helm install: %v", err)
	}
	return rel.Name
}

func (e *env) helmUpgrade(name string, vals map[string]any) {
	e.t.Helper()
	up := action.NewUpgrade(e.helmConfig())
	up.Namespace = podstampNamespace
	up.Wait = true
	up.Timeout = 3 * time.Minute
	if _, err := up.RunWithContext(e.ctx, name, e.chart, vals); err != nil {
		e.t.Fatalf("helm upgrade: %v", err)
	}
}

func (e *env) helmUninstall(name string) {
	e.t.Helper()
	un := action.NewUninstall(e.helmConfig())
	un.Wait = true
	un.Timeout = 2 * time.Minute
	if _, err := un.Run(name); err != nil {
		e.t.Fatalf("helm uninstall: %v", err)
	}
	e.untilGone("podstamp pods gone", 2*time.Minute, podstampNamespace, func(*metav1.ListOptions) {})
}

// dumpPodLogs prints the end of every container log the kubelet wrote.
func dumpPodLogs(t *testing.T, dir string) {
	filepath.Walk(filepath.Join(dir, "pod-logs"), func(p string, info os.FileInfo, err error) error { //nolint:errcheck
		if err != nil || info.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		if len(b) > 2000 {
			b = b[len(b)-2000:]
		}
		t.Logf("--- %s:\n%s", strings.TrimPrefix(p, dir), b)
		return nil
	})
}
