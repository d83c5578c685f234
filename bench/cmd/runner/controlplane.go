package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/podstamp/podstamp/e2e/cluster"
	"github.com/podstamp/podstamp/e2e/proc"
)

// The control-plane run: many simulated nodes on the real API server, one
// forwarder per node (a fleet of podstamps, then a fleet of Collector
// agents with the node filter), and what each fleet asks of the API server,
// read from the server's own /metrics.

const (
	cpTeamNamespaces = 10
	cpMonitoringNS   = "cp-monitoring"
	cpLoggingNS      = "cp-logging"
	cpPerDeployment  = 10 // pods per Deployment
	cpPerStatefulSet = 5
)

// cpFleets are measured in this order; "none" is the baseline (no fleet:
// the server's own work and the churn's writes), subtracted from the others.
var cpFleets = []string{"none", "podstamp", "podstamp-kubelet", "collector"}

var cpFleetNames = map[string]string{
	"none":             "no fleet (baseline)",
	"podstamp":         "podstamp, one per node",
	"podstamp-kubelet": "podstamp --pod-source kubelet, one per node",
	"collector":        "Collector + k8sattributes (filter.node), one per node",
}

// cpWindows are the phases of a fleet's run.
var cpWindows = []string{"start", "steady", "churn"}

// cpPod is one simulated pod and what owns it.
type cpPod struct {
	ns, name, node string
	kind           string // Deployment, StatefulSet, DaemonSet, Job
	owner          int    // index into the fixture's owners of that kind
	ordinal        int    // StatefulSet ordinal
	ip             netip.Addr
}

type cpOwner struct {
	ns, name string
	uid      types.UID
	dep      *cluster.Deployment // Deployments
	replicas int
}

type cpFixture struct {
	nodes    []string
	pods     []*cpPod
	deps     []*cpOwner
	sts      []*cpOwner
	ds       []*cpOwner
	jobs     []*cpOwner // Jobs (a CronJob's or plain)
	crons    []*cpOwner
	nextIP   map[string]int // per node: next host byte for a new pod
	rollouts int            // rollouts done (pod-template-hash counter)
	jobSeq   int
	// Object changes the churn made, by resource: what a watcher of all
	// of them would be sent.
	changes map[string]int
}

// cpMetrics is one scrape of the API server's /metrics plus its process.
type cpMetrics struct {
	at       time.Time
	requests map[string]float64 // "VERB resource[/sub]" -> apiserver_request_total
	respB    map[string]float64 // "VERB resource" -> apiserver_response_sizes_sum (GET, LIST)
	watchEv  map[string]float64 // resource -> apiserver_watch_events_total
	watchB   map[string]float64 // resource -> apiserver_watch_events_sizes_sum
	open     map[string]float64 // "VERB resource" -> apiserver_longrunning_requests
	self     map[string]float64 // "VERB resource[/sub]" -> apiserver_selfrequest_total (the server's own loopback client)
	cpu      float64            // kube-apiserver CPU seconds
	rssKiB   int64
	fleetCPU float64 // CPU seconds of the fleet's processes
	fleetIn  float64 // bytes the fleet's processes read (rchar): what the server sent them, less what the stand-in kubelet sent
}

// cpDelta is what happened between two scrapes.
type cpDelta struct {
	Seconds   float64
	Requests  map[string]float64 // "VERB resource": requests made (WATCH: opened)
	RespBytes map[string]float64 // "VERB resource": bytes of GET/LIST answers
	WatchEv   map[string]float64 // resource: watch events sent
	WatchB    map[string]float64 // resource: bytes of watch events sent
	OpenWatch map[string]float64 // resource: watches open at the end
	CPU       float64            // kube-apiserver CPU seconds
	RSSKiB    int64              // kube-apiserver VmRSS change
	FleetCPU  float64
	FleetIn   float64        // bytes the fleet read from its connections (TLS records)
	Changes   map[string]int // objects changed by the churn, by resource
}

type cpFleetResult struct {
	Fleet    string
	Procs    int
	StartS   float64 // until every process was ready
	Windows  map[string]*cpDelta
	FleetRSS int64 // sum of VmRSS of the fleet after the steady phase, KiB
	Err      string
}

type controlPlane struct {
	Nodes, PodsPerNode, Pods                              int
	Namespaces                                            int
	Deployments, StatefulSets, DaemonSets, Jobs, CronJobs int
	CreateSeconds                                         float64
	Steady                                                time.Duration
	Fleets                                                []*cpFleetResult
	PodstampCmd, PodstampKubeletCmd, CollectorCfg         string
	Auth                                                  string
}

func (r *runner) controlPlaneRun(ctx context.Context) error {
	cp := &controlPlane{Nodes: r.o.cpNodes, PodsPerNode: r.o.cpPodsPerNode, Steady: r.o.cpSteady,
		Auth: "the admin's client certificate (the API server's admin kubeconfig; member of system:masters)"}
	r.cp = cp
	start := time.Now()
	fx, err := r.cpCreate(ctx)
	if err != nil {
		return err
	}
	cp.Pods = len(fx.pods)
	cp.Namespaces = cpTeamNamespaces + 2
	cp.Deployments, cp.StatefulSets, cp.DaemonSets = len(fx.deps), len(fx.sts), len(fx.ds)
	cp.Jobs, cp.CronJobs = len(fx.jobs), len(fx.crons)
	cp.CreateSeconds = time.Since(start).Seconds()
	r.log.Info("control plane: objects created", "nodes", cp.Nodes, "pods", cp.Pods, "took", time.Since(start).Round(time.Millisecond))
	if r.want("B") {
		// Before the baseline, so that its watch is in every window.
		if r.kubelet, err = startStandInKubelet(ctx, r.cl.Client, r.work); err != nil {
			return fmt.Errorf("stand-in kubelet: %w", err)
		}
		defer r.kubelet.close()
	}
	for _, fleet := range cpFleets {
		if fleet == "collector" && (!r.want("C") || r.otelcolBin == "") {
			continue
		}
		if strings.HasPrefix(fleet, "podstamp") && !r.want("B") {
			continue
		}
		res := &cpFleetResult{Fleet: fleet, Windows: map[string]*cpDelta{}}
		cp.Fleets = append(cp.Fleets, res)
		if err := r.cpFleet(ctx, fx, res); err != nil {
			res.Err = err.Error()
			r.log.Error("control plane fleet", "fleet", fleet, "err", err)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	return nil
}

func cpTeamNS(i int) string { return fmt.Sprintf("cp-team-%02d", i%cpTeamNamespaces) }

// cpCreate makes the nodes, namespaces, workloads and pods. Per node:
// one pod of each of two DaemonSets, 1/6 StatefulSet pods, 1/10 Job pods
// (two of three from CronJobs), the rest Deployment pods; the workloads are
// spread over the nodes and over cpTeamNamespaces namespaces.
func (r *runner) cpCreate(ctx context.Context) (*cpFixture, error) {
	n, per := r.o.cpNodes, r.o.cpPodsPerNode
	fx := &cpFixture{nextIP: map[string]int{}, changes: map[string]int{}}
	for i := 0; i < n; i++ {
		fx.nodes = append(fx.nodes, fmt.Sprintf("cp-node-%03d", i))
	}
	err := parallel(ctx, 8, n, func(i int) error {
		_, err := r.cl.CreateNode(ctx, cluster.Node{Name: fx.nodes[i],
			InternalIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(i / 250), byte(1 + i%250)})}})
		return err
	})
	if err != nil {
		return nil, err
	}
	for i := 0; i < cpTeamNamespaces; i++ {
		if err := r.cl.CreateNamespace(ctx, cpTeamNS(i), map[string]string{"team": fmt.Sprint(i)}); err != nil {
			return nil, err
		}
	}
	for _, ns := range []string{cpMonitoringNS, cpLoggingNS} {
		if err := r.cl.CreateNamespace(ctx, ns, nil); err != nil {
			return nil, err
		}
	}
	nSTS := max(1, per/6)
	nJob := max(1, per/10)
	nDep := per - 2 - nSTS - nJob
	if nDep < 1 {
		return nil, fmt.Errorf("--cp-pods-per-node %d: too few for the mix (at least 5)", per)
	}
	// Owners.
	for _, d := range []struct{ ns, name string }{{cpMonitoringNS, "node-exporter"}, {cpLoggingNS, "log-agent"}} {
		o, err := r.cpDaemonSet(ctx, d.ns, d.name)
		if err != nil {
			return nil, err
		}
		fx.ds = append(fx.ds, o)
	}
	depPods, stsPods, jobPods := n*nDep, n*nSTS, n*nJob
	fx.deps = make([]*cpOwner, (depPods+cpPerDeployment-1)/cpPerDeployment)
	err = parallel(ctx, 8, len(fx.deps), func(k int) error {
		d, err := r.cl.CreateDeployment(ctx, cpTeamNS(k), fmt.Sprintf("svc-%03d", k), fmt.Sprintf("%010x", 0xc0de0000+k))
		if err != nil {
			return err
		}
		fx.deps[k] = &cpOwner{ns: d.Namespace, name: d.Name, uid: d.ReplicaSetUID, dep: d}
		return nil
	})
	if err != nil {
		return nil, err
	}
	fx.sts = make([]*cpOwner, (stsPods+cpPerStatefulSet-1)/cpPerStatefulSet)
	err = parallel(ctx, 8, len(fx.sts), func(k int) error {
		o, err := r.cpStatefulSet(ctx, cpTeamNS(k), fmt.Sprintf("db-%03d", k))
		fx.sts[k] = o
		return err
	})
	if err != nil {
		return nil, err
	}
	nCron := (jobPods*2/3 + 1) / 2 // two runs kept per CronJob
	fx.crons = make([]*cpOwner, nCron)
	err = parallel(ctx, 8, nCron, func(k int) error {
		o, err := r.cpCronJob(ctx, cpTeamNS(k), fmt.Sprintf("report-%03d", k))
		fx.crons[k] = o
		return err
	})
	if err != nil {
		return nil, err
	}
	fx.jobs = make([]*cpOwner, jobPods)
	err = parallel(ctx, 8, jobPods, func(k int) error {
		var cron *cpOwner
		if k%3 != 0 && len(fx.crons) > 0 {
			cron = fx.crons[(k/3*2+k%3-1)%len(fx.crons)]
		}
		o, err := r.cpJob(ctx, cpTeamNS(k), cron, 29000000+k, k)
		fx.jobs[k] = o
		return err
	})
	if err != nil {
		return nil, err
	}
	fx.jobSeq = jobPods
	// Pods.
	for i, node := range fx.nodes {
		for _, o := range []int{0, 1} {
			fx.pods = append(fx.pods, &cpPod{ns: fx.ds[o].ns, node: node, kind: "DaemonSet", owner: o})
		}
		_ = i
	}
	for j := 0; j < depPods; j++ {
		d := j / cpPerDeployment
		fx.deps[d].replicas++
		fx.pods = append(fx.pods, &cpPod{ns: fx.deps[d].ns, node: fx.nodes[j%n], kind: "Deployment", owner: d})
	}
	for j := 0; j < stsPods; j++ {
		s := j / cpPerStatefulSet
		fx.sts[s].replicas++
		fx.pods = append(fx.pods, &cpPod{ns: fx.sts[s].ns, node: fx.nodes[(j+1)%n], kind: "StatefulSet", owner: s, ordinal: j % cpPerStatefulSet})
	}
	for j := 0; j < jobPods; j++ {
		fx.pods = append(fx.pods, &cpPod{ns: fx.jobs[j].ns, node: fx.nodes[(j+2)%n], kind: "Job", owner: j})
	}
	for _, p := range fx.pods {
		p.ip = fx.newIP(p.node)
	}
	err = parallel(ctx, 32, len(fx.pods), func(i int) error { return r.cpStartPod(ctx, fx, fx.pods[i]) })
	return fx, err
}

func (fx *cpFixture) newIP(node string) netip.Addr {
	var i int
	fmt.Sscanf(strings.TrimPrefix(node, "cp-node-"), "%d", &i)
	k := fx.nextIP[node]
	fx.nextIP[node] = k + 1
	return netip.AddrFrom4([4]byte{10, byte(64 + i/256), byte(i % 256), byte(1 + k%250)})
}

func (r *runner) cpDaemonSet(ctx context.Context, ns, name string) (*cpOwner, error) {
	labels := map[string]string{"app.kubernetes.io/name": name}
	o, err := r.cl.Client.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(labels, name)},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return &cpOwner{ns: ns, name: name, uid: o.UID}, nil
}

func (r *runner) cpStatefulSet(ctx context.Context, ns, name string) (*cpOwner, error) {
	labels := map[string]string{"app.kubernetes.io/name": name}
	o, err := r.cl.Client.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To(int32(cpPerStatefulSet)), ServiceName: name,
			Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: podTemplate(labels, name)},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return &cpOwner{ns: ns, name: name, uid: o.UID}, nil
}

func (r *runner) cpCronJob(ctx context.Context, ns, name string) (*cpOwner, error) {
	labels := map[string]string{"app.kubernetes.io/name": name}
	t := podTemplate(labels, name)
	t.Spec.RestartPolicy = corev1.RestartPolicyNever
	o, err := r.cl.Client.BatchV1().CronJobs(ns).Create(ctx, &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: batchv1.CronJobSpec{Schedule: "*/10 * * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: t}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return &cpOwner{ns: ns, name: name, uid: o.UID}, nil
}

// cpJob creates a Job, a run of cron when it is set (named
// "<cronjob>-<digits>" and owned by it, as the CronJob controller does).
func (r *runner) cpJob(ctx context.Context, ns string, cron *cpOwner, seq, k int) (*cpOwner, error) {
	name := fmt.Sprintf("batch-%05d", k)
	meta := metav1.ObjectMeta{Namespace: ns}
	if cron != nil {
		name = fmt.Sprintf("%s-%d", cron.name, seq)
		meta.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: cron.name,
			UID: cron.uid, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
	}
	meta.Name = name
	t := podTemplate(nil, "job")
	t.Spec.RestartPolicy = corev1.RestartPolicyNever
	o, err := r.cl.Client.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Template: t}},
		metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return &cpOwner{ns: ns, name: name, uid: o.UID}, nil
}

func podTemplate(labels map[string]string, name string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/" + name + ":1.0.0"}}}}
}

// cpStartPod creates p (a name derived as its controller would) and sets it
// running, as the scheduler and kubelet would.
func (r *runner) cpStartPod(ctx context.Context, fx *cpFixture, p *cpPod) error {
	obj := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Labels: map[string]string{},
			Annotations: map[string]string{"resource.opentelemetry.io/team": p.ns}},
		Spec: corev1.PodSpec{NodeName: p.node, AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1.0.0"}}},
	}
	ref := func(apiVersion, kind string, o *cpOwner) {
		obj.OwnerReferences = []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: o.name, UID: o.uid,
			Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
	}
	switch p.kind {
	case "Deployment":
		d := fx.deps[p.owner].dep
		for k, v := range d.Labels {
			obj.Labels[k] = v
		}
		obj.Labels["pod-template-hash"] = d.Hash
		obj.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: d.ReplicaSetName,
			UID: d.ReplicaSetUID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
		obj.GenerateName = d.ReplicaSetName + "-"
	case "StatefulSet":
		o := fx.sts[p.owner]
		ref("apps/v1", "StatefulSet", o)
		obj.Name = fmt.Sprintf("%s-%d", o.name, p.ordinal)
		obj.Labels["app.kubernetes.io/name"] = o.name
	case "DaemonSet":
		o := fx.ds[p.owner]
		ref("apps/v1", "DaemonSet", o)
		obj.GenerateName = o.name + "-"
		obj.Labels["app.kubernetes.io/name"] = o.name
	case "Job":
		o := fx.jobs[p.owner]
		ref("batch/v1", "Job", o)
		obj.GenerateName = o.name + "-"
		obj.Labels["job-name"] = o.name
	}
	created, err := r.cl.Client.CoreV1().Pods(p.ns).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create pod on %s: %w", p.node, err)
	}
	p.name = created.Name
	_, err = r.cl.SetPodRunning(ctx, created, cluster.PodStatus{IPs: []netip.Addr{p.ip}, HostIP: netip.MustParseAddr("10.0.0.1")})
	return err
}

// cpOwnerStatus patches the status of a pod's owner as its controller
// would after a pod went away or became ready (ReplicaSet, StatefulSet,
// DaemonSet: replica counts; Job: active/succeeded).
func (r *runner) cpOwnerStatus(ctx context.Context, fx *cpFixture, p *cpPod, ready int) error {
	var err error
	switch p.kind {
	case "Deployment":
		d := fx.deps[p.owner].dep
		patch := fmt.Sprintf(`{"status":{"replicas":%d,"readyReplicas":%d,"availableReplicas":%d,"fullyLabeledReplicas":%d,"observedGeneration":1}}`,
			fx.deps[p.owner].replicas, ready, ready, fx.deps[p.owner].replicas)
		_, err = r.cl.Client.AppsV1().ReplicaSets(d.Namespace).Patch(ctx, d.ReplicaSetName, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
	case "StatefulSet":
		o := fx.sts[p.owner]
		patch := fmt.Sprintf(`{"status":{"replicas":%d,"readyReplicas":%d,"availableReplicas":%d,"currentReplicas":%d,"observedGeneration":1}}`,
			o.replicas, ready, ready, o.replicas)
		_, err = r.cl.Client.AppsV1().StatefulSets(o.ns).Patch(ctx, o.name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
	case "DaemonSet":
		o := fx.ds[p.owner]
		n := len(fx.nodes)
		patch := fmt.Sprintf(`{"status":{"currentNumberScheduled":%d,"desiredNumberScheduled":%d,"numberReady":%d,"numberAvailable":%d,"numberMisscheduled":0,"observedGeneration":1}}`,
			n, n, ready, ready)
		_, err = r.cl.Client.AppsV1().DaemonSets(o.ns).Patch(ctx, o.name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
	case "Job":
		o := fx.jobs[p.owner]
		patch := fmt.Sprintf(`{"status":{"active":%d,"ready":%d}}`, ready, ready)
		_, err = r.cl.Client.BatchV1().Jobs(o.ns).Patch(ctx, o.name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
	}
	return err
}

var ownerResource = map[string]string{"Deployment": "replicasets", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets", "Job": "jobs"}

// cpChurn deletes and recreates every tenth pod (a Job's pod comes back as
// the next run of a new Job), with the owner status updates their
// controllers would make, then rolls out every tenth Deployment (a new
// ReplicaSet whose pods replace the old one's, one by one). It is the same
// script for every fleet.
func (r *runner) cpChurn(ctx context.Context, fx *cpFixture) error {
	fx.changes = map[string]int{}
	var mu sync.Mutex
	count := func(res string, n int) {
		mu.Lock()
		fx.changes[res] += n
		mu.Unlock()
	}
	// Owners whose status is written are serialised per owner.
	locks := map[string]*sync.Mutex{}
	lockOf := func(p *cpPod) *sync.Mutex {
		mu.Lock()
		defer mu.Unlock()
		k := fmt.Sprintf("%s/%d", p.kind, p.owner)
		if locks[k] == nil {
			locks[k] = &sync.Mutex{}
		}
		return locks[k]
	}
	var victims []*cpPod
	for i := 0; i < len(fx.pods); i += 10 {
		victims = append(victims, fx.pods[i])
	}
	replace := func(p *cpPod) error {
		l := lockOf(p)
		l.Lock()
		defer l.Unlock()
		if err := r.cl.DeletePod(ctx, p.ns, p.name); err != nil {
			return err
		}
		// A deletion is two changes: the deletion timestamp, then the removal.
		count("pods", 2)
		if p.kind == "Job" {
			// The run finished; the CronJob starts a new Job.
			old := fx.jobs[p.owner]
			mu.Lock()
			fx.jobSeq++
			seq := fx.jobSeq
			mu.Unlock()
			var cron *cpOwner
			if i := strings.LastIndexByte(old.name, '-'); i > 0 && !strings.HasPrefix(old.name, "batch-") {
				for _, c := range fx.crons {
					if c.name == old.name[:i] {
						cron = c
					}
				}
			}
			nj, err := r.cpJob(ctx, old.ns, cron, 29000000+seq, seq)
			if err != nil {
				return err
			}
			count("jobs", 1)
			bg := metav1.DeletePropagationBackground
			if err := r.cl.Client.BatchV1().Jobs(old.ns).Delete(ctx, old.name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
				return err
			}
			count("jobs", 1)
			fx.jobs[p.owner] = nj
		} else {
			if err := r.cpOwnerStatus(ctx, fx, p, ownerReplicas(fx, p)-1); err != nil {
				return err
			}
			count(ownerResource[p.kind], 1)
		}
		p.ip = fx.newIPLocked(&mu, p.node)
		if err := r.cpStartPod(ctx, fx, p); err != nil {
			return err
		}
		count("pods", 2)
		if err := r.cpOwnerStatus(ctx, fx, p, ownerReplicas(fx, p)); err != nil {
			return err
		}
		count(ownerResource[p.kind], 1)
		return nil
	}
	if err := parallel(ctx, 8, len(victims), func(i int) error { return replace(victims[i]) }); err != nil {
		return err
	}
	// Rollouts: a new ReplicaSet per Deployment rolled, then its pods.
	var rolled []int
	for k := 0; k < len(fx.deps); k += 10 {
		rolled = append(rolled, k)
	}
	fx.rollouts++
	err := parallel(ctx, 4, len(rolled), func(i int) error {
		o := fx.deps[rolled[i]]
		old := o.dep
		nd, err := r.cpReplicaSet(ctx, old, fmt.Sprintf("%010x", 0xbeef0000+fx.rollouts<<12+rolled[i]))
		if err != nil {
			return err
		}
		count("replicasets", 1)
		o.dep = nd
		for _, p := range fx.pods {
			if p.kind != "Deployment" || p.owner != rolled[i] {
				continue
			}
			if err := r.cl.DeletePod(ctx, p.ns, p.name); err != nil {
				return err
			}
			p.ip = fx.newIPLocked(&mu, p.node)
			if err := r.cpStartPod(ctx, fx, p); err != nil {
				return err
			}
			count("pods", 4) // deletion (2), creation, status
			// The new ReplicaSet scales up, the old one down.
			if err := r.cpOwnerStatus(ctx, fx, p, o.replicas); err != nil {
				return err
			}
			count("replicasets", 1)
		}
		// The old ReplicaSet is kept (revision history) with 0 replicas.
		patch := `{"spec":{"replicas":0}}`
		if _, err := r.cl.Client.AppsV1().ReplicaSets(old.Namespace).Patch(ctx, old.ReplicaSetName, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return err
		}
		count("replicasets", 1)
		return nil
	})
	return err
}

func (fx *cpFixture) newIPLocked(mu *sync.Mutex, node string) netip.Addr {
	mu.Lock()
	defer mu.Unlock()
	return fx.newIP(node)
}

func ownerReplicas(fx *cpFixture, p *cpPod) int {
	switch p.kind {
	case "Deployment":
		return fx.deps[p.owner].replicas
	case "StatefulSet":
		return fx.sts[p.owner].replicas
	case "DaemonSet":
		return len(fx.nodes)
	}
	return 1
}

// cpReplicaSet makes the ReplicaSet of a Deployment's next revision.
func (r *runner) cpReplicaSet(ctx context.Context, d *cluster.Deployment, hash string) (*cluster.Deployment, error) {
	rsLabels := map[string]string{"pod-template-hash": hash}
	for k, v := range d.Labels {
		rsLabels[k] = v
	}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-" + hash, Namespace: d.Namespace, Labels: rsLabels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name,
				UID: d.DeploymentUID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(int32(cpPerDeployment)), Selector: &metav1.LabelSelector{MatchLabels: rsLabels},
			Template: podTemplate(rsLabels, d.Name)},
	}
	out, err := r.cl.Client.AppsV1().ReplicaSets(d.Namespace).Create(ctx, rs, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	nd := *d
	nd.Hash, nd.PodTemplateHash, nd.ReplicaSetName, nd.ReplicaSetUID = hash, hash, out.Name, out.UID
	return &nd, nil
}

// cpFleet starts one forwarder per node (none for the baseline), and
// scrapes the API server's metrics around the start, a steady phase and
// the churn.
func (r *runner) cpFleet(ctx context.Context, fx *cpFixture, res *cpFleetResult) error {
	r.log.Info("control plane: fleet", "fleet", res.Fleet, "nodes", len(fx.nodes))
	var procs []*proc.Proc
	var pmu sync.Mutex
	defer func() {
		// Stop the fleet at once: each member drains for up to a second.
		var wg sync.WaitGroup
		for _, p := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.untrack(p)
			}()
		}
		wg.Wait()
	}()
	scrape := func() (*cpMetrics, error) {
		m, err := r.scrapeAPIServer(ctx)
		if err != nil {
			return nil, err
		}
		pmu.Lock()
		for _, p := range procs {
			if c, err := cpuSeconds(p.PID()); err == nil {
				m.fleetCPU += c
			}
			if b, err := readChars(p.PID()); err == nil {
				m.fleetIn += b
			}
		}
		pmu.Unlock()
		if r.kubelet != nil {
			// What the fleet read from the stand-in kubelet is not the API
			// server's.
			m.fleetIn -= float64(r.kubelet.written.Load())
		}
		return m, nil
	}
	m0, err := scrape()
	if err != nil {
		return err
	}
	start := time.Now()
	if res.Fleet != "none" {
		err = parallel(ctx, 6, len(fx.nodes), func(i int) error {
			p, cmd, err := r.startFleetMember(ctx, res.Fleet, fx.nodes[i], i)
			if p != nil {
				pmu.Lock()
				procs = append(procs, p)
				pmu.Unlock()
			}
			if err == nil && i == 0 {
				r.mu.Lock()
				switch res.Fleet {
				case "podstamp":
					r.cp.PodstampCmd = cmd
				case "podstamp-kubelet":
					r.cp.PodstampKubeletCmd = cmd
				default:
					r.cp.CollectorCfg = cmd
				}
				r.mu.Unlock()
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	res.Procs = len(procs)
	res.StartS = time.Since(start).Seconds()
	// Let initial lists and watches settle.
	if err := sleepCtx(ctx, 3*time.Second); err != nil {
		return err
	}
	m1, err := scrape()
	if err != nil {
		return err
	}
	res.Windows["start"] = cpDiff(m0, m1)
	if err := sleepCtx(ctx, r.o.cpSteady); err != nil {
		return err
	}
	m2, err := scrape()
	if err != nil {
		return err
	}
	res.Windows["steady"] = cpDiff(m1, m2)
	for _, p := range procs {
		if _, rss, err := memKiB(p.PID()); err == nil {
			res.FleetRSS += rss
		}
	}
	r.log.Info("control plane: churn", "fleet", res.Fleet)
	if err := r.cpChurn(ctx, fx); err != nil {
		return fmt.Errorf("churn: %w", err)
	}
	// The watchers have been sent the churn's events.
	if err := sleepCtx(ctx, 3*time.Second); err != nil {
		return err
	}
	m3, err := scrape()
	if err != nil {
		return err
	}
	d := cpDiff(m2, m3)
	d.Changes = map[string]int{}
	for k, v := range fx.changes {
		d.Changes[k] = v
	}
	res.Windows["churn"] = d
	for _, p := range procs {
		if p.Exited() {
			return fmt.Errorf("a %s of the fleet exited: %s", res.Fleet, oneLine(p.LogTail(400)))
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startFleetMember starts the fleet's forwarder for node i; it returns
// when the forwarder is ready (podstamp: /readyz, after its first list;
// the Collector: its receiver listens, after k8sattributes synced, since
// wait_for_metadata is set). Its ports are picked free just before it
// starts, so another process on the machine may take one first: a member
// that exits on "address already in use" is started again on new ports, up
// to three times. A podstamp that runs but is not ready in time is sent
// SIGQUIT first, so that its log keeps every goroutine's stack (copied to
// the temporary directory, whose path the runner logs), and is started again
// too: a hang would show there.
func (r *runner) startFleetMember(ctx context.Context, fleet, node string, i int) (*proc.Proc, string, error) {
	for attempt := 1; ; attempt++ {
		p, cmd, err := r.startFleetMemberOnce(ctx, fleet, node, i)
		if err == nil || p == nil || attempt == 3 || ctx.Err() != nil {
			return p, cmd, err
		}
		switch {
		case p.Exited() && strings.Contains(p.LogTail(readyTailBytes), "address already in use"):
			r.log.Warn("control plane: a port picked for a fleet member was taken; starting it again", "fleet", fleet, "node", node, "attempt", attempt)
		case !p.Exited() && fleet != "collector":
			_ = syscall.Kill(p.PID(), syscall.SIGQUIT) // a Go process prints its goroutines and exits
			select {
			case <-p.Done():
			case <-time.After(10 * time.Second):
				p.Stop(time.Second)
			}
			kept := filepath.Join(os.TempDir(), fmt.Sprintf("podstamp-bench-not-ready-%s-%03d-%d.log", fleet, i, time.Now().Unix()))
			if b, rerr := os.ReadFile(p.LogPath()); rerr == nil {
				_ = os.WriteFile(kept, b, 0o644)
			}
			r.log.Warn("control plane: a fleet member was not ready in time; its goroutines are in the kept log; starting it again",
				"fleet", fleet, "node", node, "attempt", attempt, "err", err, "log", kept)
		default:
			return p, cmd, err
		}
		r.untrack(p)
	}
}

// readyTailBytes is how much of a member's log is searched for why it exited.
const readyTailBytes = 4000

func (r *runner) startFleetMemberOnce(ctx context.Context, fleet, node string, i int) (*proc.Proc, string, error) {
	addrs := make([]string, 4)
	for k := range addrs {
		a, err := freeAddr()
		if err != nil {
			return nil, "", err
		}
		addrs[k] = a
	}
	logPath := filepath.Join(r.work, fmt.Sprintf("cp-%s-%03d.log", fleet, i))
	nodeIP := fmt.Sprintf("10.0.%d.%d", i/250, 1+i%250)
	switch fleet {
	case "podstamp", "podstamp-kubelet":
		argv := []string{r.podstampBin,
			"--grpc-listen", addrs[0], "--http-listen", addrs[1], "--admin-listen", addrs[2], "--debug-listen", addrs[3],
			"--upstream", "http://" + r.sink.GRPCAddr(), "--upstream-protocol", "grpc",
			"--node-name", node, "--node-ip", nodeIP, "--kubeconfig", r.kubecfg, "--log-level", "warn",
			// As the chart runs it by default: its ClusterRole grants no
			// get on nodes, so it passes --read-node=false.
			"--read-node=false"}
		if fleet == "podstamp-kubelet" {
			argv = append(argv, "--pod-source", "kubelet", "--kubelet-url", r.kubelet.url+"/"+node, "--kubelet-ca", r.kubelet.caFile)
		}
		argv = append(argv, r.o.podstampArgs...)
		p, err := startProc("podstamp", logPath, r.o.podstampEnv, argv...)
		if err != nil {
			return nil, "", err
		}
		r.track(p)
		err = p.WaitReady(ctx, 90*time.Second, proc.HTTPOK(&http.Client{Timeout: 2 * time.Second}, "http://"+addrs[2]+"/readyz"))
		return p, commandLine(p.Env(), p.Argv(), r.cmdRepl), err
	case "collector":
		cfgPath := filepath.Join(r.work, fmt.Sprintf("otelcol-cp-%03d.yaml", i))
		cfg := collectorConfig(addrs[0], addrs[1], r.sink.GRPCAddr(), "none", node)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			return nil, "", err
		}
		p, err := startProc("otelcol", logPath, []string{"KUBECONFIG=" + r.kubecfg}, r.otelcolBin, "--config", "file:"+cfgPath)
		if err != nil {
			return nil, "", err
		}
		r.track(p)
		err = p.WaitReady(ctx, 120*time.Second, tcpUp(addrs[0]))
		return p, collectorConfig("127.0.0.1:<port>", "127.0.0.1:<port>", "<sink>", "none", "<node>"), err
	}
	return nil, "", fmt.Errorf("unknown fleet %q", fleet)
}

// scrapeAPIServer reads the API server's /metrics (as the admin) and its
// process's CPU and memory.
func (r *runner) scrapeAPIServer(ctx context.Context) (*cpMetrics, error) {
	body, err := r.cl.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("API server /metrics: %w", err)
	}
	m := parseAPIMetrics(string(body))
	if pid := r.cl.APIServerPID(); pid > 0 {
		m.cpu, _ = cpuSeconds(pid)
		_, m.rssKiB, _ = memKiB(pid)
	}
	return m, nil
}

func parseAPIMetrics(text string) *cpMetrics {
	m := &cpMetrics{at: time.Now(), requests: map[string]float64{}, respB: map[string]float64{}, watchEv: map[string]float64{},
		watchB: map[string]float64{}, open: map[string]float64{}, self: map[string]float64{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, labels, value, ok := parseSample(line)
		if !ok {
			continue
		}
		res := labels["resource"]
		if sub := labels["subresource"]; sub != "" {
			res += "/" + sub
		}
		switch name {
		case "apiserver_request_total":
			if res != "" && labels["component"] == "apiserver" {
				m.requests[labels["verb"]+" "+res] += value
			}
		case "apiserver_selfrequest_total":
			if res != "" {
				m.self[labels["verb"]+" "+res] += value
			}
		case "apiserver_response_sizes_sum":
			if res != "" && labels["component"] == "apiserver" {
				m.respB[labels["verb"]+" "+res] += value
			}
		case "apiserver_watch_events_total":
			m.watchEv[res] += value
		case "apiserver_watch_events_sizes_sum":
			m.watchB[res] += value
		case "apiserver_longrunning_requests":
			if res != "" && labels["component"] == "apiserver" {
				m.open[labels["verb"]+" "+res] += value
			}
		}
	}
	return m
}

// parseSample parses one line of the Prometheus text format.
func parseSample(line string) (string, map[string]string, float64, bool) {
	labels := map[string]string{}
	name := line
	rest := ""
	if i := strings.IndexByte(line, '{'); i >= 0 {
		name = line[:i]
		j := strings.LastIndexByte(line, '}')
		if j < i {
			return "", nil, 0, false
		}
		ls := line[i+1 : j]
		rest = line[j+1:]
		for len(ls) > 0 {
			eq := strings.IndexByte(ls, '=')
			if eq < 0 || eq+1 >= len(ls) || ls[eq+1] != '"' {
				return "", nil, 0, false
			}
			k := strings.TrimSpace(ls[:eq])
			var v strings.Builder
			p := eq + 2
			for p < len(ls) && ls[p] != '"' {
				if ls[p] == '\\' && p+1 < len(ls) {
					p++
				}
				v.WriteByte(ls[p])
				p++
			}
			labels[k] = v.String()
			ls = strings.TrimPrefix(ls[min(p+1, len(ls)):], ",")
		}
	} else {
		sp := strings.IndexByte(line, ' ')
		if sp < 0 {
			return "", nil, 0, false
		}
		name, rest = line[:sp], line[sp:]
	}
	f := strings.Fields(rest)
	if len(f) < 1 {
		return "", nil, 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return "", nil, 0, false
	}
	return name, labels, v, true
}

// cpDiff is what happened from a to b. A watch is counted in
// apiserver_request_total when it ends, so the watches opened in the window
// are those that ended plus the change in those open.
func cpDiff(a, b *cpMetrics) *cpDelta {
	d := &cpDelta{Seconds: b.at.Sub(a.at).Seconds(), Requests: map[string]float64{}, RespBytes: map[string]float64{},
		WatchEv: map[string]float64{}, WatchB: map[string]float64{}, OpenWatch: map[string]float64{},
		CPU: b.cpu - a.cpu, RSSKiB: b.rssKiB - a.rssKiB, FleetCPU: b.fleetCPU - a.fleetCPU, FleetIn: b.fleetIn - a.fleetIn}
	sub := func(dst, x, y map[string]float64) {
		for k, v := range y {
			if dv := v - x[k]; dv != 0 {
				dst[k] += dv
			}
		}
	}
	sub(d.Requests, a.requests, b.requests)
	// The server's own requests (admission's live lookups and the like)
	// are nobody's fleet.
	self := map[string]float64{}
	sub(self, a.self, b.self)
	for k, v := range self {
		d.Requests[k] -= v
	}
	sub(d.RespBytes, a.respB, b.respB)
	sub(d.WatchEv, a.watchEv, b.watchEv)
	sub(d.WatchB, a.watchB, b.watchB)
	for k, v := range b.open {
		if strings.HasPrefix(k, "WATCH ") {
			d.OpenWatch[strings.TrimPrefix(k, "WATCH ")] = v
			if dv := v - a.open[k]; dv != 0 {
				d.Requests[k] += dv
			}
		}
	}
	for k, v := range d.Requests {
		if v == 0 {
			delete(d.Requests, k)
		}
	}
	return d
}

// fleetOnly is d minus the baseline's same window (per second of each, so
// windows of slightly different length compare).
func fleetOnly(d, base *cpDelta) *cpDelta {
	if base == nil {
		return d
	}
	out := &cpDelta{Seconds: d.Seconds, Requests: map[string]float64{}, RespBytes: map[string]float64{}, WatchEv: map[string]float64{},
		WatchB: map[string]float64{}, OpenWatch: map[string]float64{}, CPU: d.CPU - base.CPU*d.Seconds/base.Seconds,
		RSSKiB: d.RSSKiB, FleetCPU: d.FleetCPU, FleetIn: d.FleetIn, Changes: d.Changes}
	scale := d.Seconds / base.Seconds
	minus := func(dst, x, y map[string]float64, scaled bool) {
		for k, v := range x {
			b := y[k]
			if scaled {
				b *= scale
			}
			dst[k] = v - b
		}
		for k, v := range y {
			if _, ok := x[k]; !ok {
				b := v
				if scaled {
					b *= scale
				}
				dst[k] = -b
			}
		}
	}
	// The churn writes are the same script in both: not scaled by time.
	churn := d.Changes != nil
	minus(out.Requests, d.Requests, base.Requests, !churn)
	minus(out.RespBytes, d.RespBytes, base.RespBytes, !churn)
	minus(out.WatchEv, d.WatchEv, base.WatchEv, !churn)
	minus(out.WatchB, d.WatchB, base.WatchB, !churn)
	minus(out.OpenWatch, d.OpenWatch, base.OpenWatch, false)
	return out
}

// sums of a delta: read requests (GET, LIST, WATCH opened), bytes sent
// (answers to GET/LIST plus watch events).
func (d *cpDelta) reads() float64 {
	t := 0.0
	for k, v := range d.Requests {
		if verb, _, _ := strings.Cut(k, " "); verb == "GET" || verb == "LIST" || verb == "WATCH" {
			t += v
		}
	}
	return t
}

// serverBytes is what the server's metrics say it sent: GET/LIST answers
// plus the watch events it encoded. An event's encoding is cached and
// counted once, however many watchers it is sent to, so this undercounts
// what shared events cost; bytes() is what the fleet read.
func (d *cpDelta) serverBytes() float64 {
	t := 0.0
	for _, v := range d.RespBytes {
		t += v
	}
	for _, v := range d.WatchB {
		t += v
	}
	return t
}

// bytes is what the fleet read from the API server: rchar of its
// processes, which receive nothing else (TLS records, so a few percent
// over the payload).
func (d *cpDelta) bytes() float64 { return d.FleetIn }

func (d *cpDelta) openWatches() float64 {
	t := 0.0
	for _, v := range d.OpenWatch {
		t += v
	}
	return t
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (cp *controlPlane) fleet(name string) *cpFleetResult {
	for _, f := range cp.Fleets {
		if f.Fleet == name && f.Err == "" {
			return f
		}
	}
	return nil
}
