package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podstamp/podstamp/bench/loadgen"
	"github.com/podstamp/podstamp/bench/sink"
	"github.com/podstamp/podstamp/e2e/cluster"
	"github.com/podstamp/podstamp/e2e/proc"
)

const (
	benchNode = "bench-node"
	benchNS   = "bench"
	scaleNS   = "scale"
)

// metadata is the attribute list both (B) and (C) stamp: podstamp's default.
var metadata = []string{
	"k8s.namespace.name", "k8s.pod.name", "k8s.pod.uid", "k8s.pod.start_time", "k8s.node.name", "k8s.pod.ip",
	"k8s.deployment.name", "k8s.replicaset.name", "k8s.statefulset.name", "k8s.daemonset.name",
	"k8s.job.name", "k8s.cronjob.name", "k8s.container.name", "container.image.name",
	"container.image.tag", "container.id",
}

type runner struct {
	o        options
	log      *slog.Logger
	root     string
	work     string
	started  time.Time
	finished time.Time

	podstampBin, rawproxyBin, otelcolBin string
	variantBin                           string          // (S)'s own build (--variant-build), else podstampBin
	kubelet                              *standInKubelet // the control-plane run's kubelets
	tcprelayBin                          string
	apiserverBin                         string

	cl       *cluster.Cluster
	kubecfg  string
	sink     *sink.Sink
	sources  []string
	expected map[string]sink.Expected

	mu               sync.Mutex
	procs            []*proc.Proc
	matrix           []*ingressResult
	cp               *controlPlane
	scaleR           *scaleResult
	profile          string // pprof top of podstamp's CPU
	profileCum       string // the same by cumulative time
	profileGzip      string // under gzip load, flat
	profileJSON      string // under OTLP/HTTP JSON load, flat
	profileJSONCum   string // the same, cumulative
	profilePaced     string // at the paced rate, by cumulative time
	profilePacedFlat string // the same, flat
	heapProfile      string // and of its heap in use
	cmdRepl          *strings.Replacer
	collectorErr     error
	loadStart        string // /proc/loadavg at start
	loadEnd          string // and at the end
}

type phaseResult struct {
	Summary       loadgen.Summary
	CPUSeconds    float64
	CPUPerMillion float64 // forwarder CPU seconds per million items acked
	SinkItems     int64
	Lost          int64 // acked items the sink never received
	Identity      sink.IdentityReport
	// RoundCPU is CPUPerMillion of each paced round, in order (paced
	// phases only): two set-ups' same round ran seconds apart, so their
	// ratios show how far the machine alone moves one run's figure.
	RoundCPU []float64
}

type targetResult struct {
	Key, Name  string
	Command    string
	Saturated  phaseResult
	Paced      phaseResult
	PeakRSSKiB int64
	Mem        memory // read with PeakRSSKiB: what the resident set is made of
	HasProcess bool
	Err        string
}

type scaleResult struct {
	BasePods, OtherPods, OtherNodes int
	CreateSeconds                   float64
	BaseHWM, BaseRSS                int64
	AfterHWM, AfterRSS              int64
	Identity                        sink.IdentityReport
	Command                         string
}

func (r *runner) cleanup() {
	r.mu.Lock()
	ps := r.procs
	r.procs = nil
	r.mu.Unlock()
	for _, p := range ps {
		p.Stop(stopGrace)
	}
	if r.sink != nil {
		_ = r.sink.Close()
	}
	if r.cl != nil {
		r.cl.Stop()
	}
}

func (r *runner) track(p *proc.Proc) {
	r.mu.Lock()
	r.procs = append(r.procs, p)
	r.mu.Unlock()
}

func (r *runner) untrack(p *proc.Proc) {
	p.Stop(stopGrace)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, q := range r.procs {
		if q == p {
			r.procs = append(r.procs[:i], r.procs[i+1:]...)
			return
		}
	}
}

func (r *runner) prepare(ctx context.Context) error {
	bin := filepath.Join(r.work, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	r.podstampBin = filepath.Join(bin, "podstamp")
	r.rawproxyBin = filepath.Join(bin, "rawproxy")
	r.log.Info("building podstamp, rawproxy and tcprelay")
	if err := goBuild(ctx, r.root, r.podstampBin, "./cmd/podstamp", buildFlags); err != nil {
		return err
	}
	// (S) runs a file of its own even when it is the same build: podstamp
	// pages its binary out after start-up (MADV_PAGEOUT), which leaves the
	// pages another process maps, so (B) and (S) on one file would each
	// keep the pages the other touches (about 8 MiB more peak RSS each).
	r.variantBin = filepath.Join(bin, "podstamp-variant")
	switch {
	case r.o.variantBin == "" && r.o.variantBuild == "":
		if err := copyFile(r.podstampBin, r.variantBin); err != nil {
			return err
		}
	case r.o.variantBin != "":
		abs, err := filepath.Abs(r.o.variantBin)
		if err != nil {
			return err
		}
		r.variantBin = abs
	case r.o.variantBuild != "":
		r.variantBin = filepath.Join(bin, "podstamp-variant")
		flags := append(append([]string{}, buildFlags...), strings.Fields(r.o.variantBuild)...)
		if err := goBuild(ctx, r.root, r.variantBin, "./cmd/podstamp", flags); err != nil {
			return err
		}
	}
	if err := goBuild(ctx, filepath.Join(r.root, "bench"), r.rawproxyBin, "./cmd/rawproxy", buildFlags); err != nil {
		return err
	}
	r.tcprelayBin = filepath.Join(bin, "tcprelay")
	if err := goBuild(ctx, filepath.Join(r.root, "bench"), r.tcprelayBin, "./cmd/tcprelay", buildFlags); err != nil {
		return err
	}
	if r.want("C") {
		var err error
		if r.otelcolBin, err = collectorBinary(ctx, r.root, r.log); err != nil {
			if ctx.Err() != nil {
				return err
			}
			// Measure the rest; the report says why (C) is missing.
			r.collectorErr = err
			r.log.Error("the Collector could not be built; (C) is left out", "err", err)
		}
	}
	cache, _ := cluster.CacheDir()
	r.cmdRepl = strings.NewReplacer(bin+"/", "", r.work, "$WORK", cache+"/", "")

	r.log.Info("starting etcd and kube-apiserver")
	var err error
	r.apiserverBin, err = cluster.KubeAPIServer(ctx, r.log)
	if err != nil {
		return err
	}
	r.cl, err = cluster.Start(ctx, cluster.Options{Log: r.log, KubeAPIServer: r.apiserverBin})
	if err != nil {
		return err
	}
	// The helpers use Client; give it a rate limit that does not throttle
	// creating thousands of objects.
	fast := *r.cl.Config
	fast.QPS, fast.Burst = 5000, 5000
	if r.cl.Client, err = kubernetes.NewForConfig(&fast); err != nil {
		return err
	}
	r.kubecfg = r.cl.KubeconfigPath
	r.cmdRepl = strings.NewReplacer(bin+"/", "", r.work, "$WORK", cache+"/", "", r.cl.Dir, "$CLUSTER")
	if _, err := r.cl.CreateNode(ctx, cluster.Node{Name: benchNode, InternalIPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}); err != nil {
		return err
	}
	if err := r.cl.CreateNamespace(ctx, benchNS, map[string]string{"team": "bench"}); err != nil {
		return err
	}
	start := time.Now()
	if err := r.createBenchPods(ctx); err != nil {
		return err
	}
	r.log.Info("pods on the benchmark node", "pods", r.o.pods, "took", time.Since(start).Round(time.Millisecond))

	r.sink, err = sink.Start(sink.Config{GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", MaxRecords: -1, Logger: r.log})
	return err
}

func (r *runner) createBenchPods(ctx context.Context) error {
	const perDeployment = 10
	nDeps := (r.o.pods + perDeployment - 1) / perDeployment
	deps := make([]*cluster.Deployment, nDeps)
	for i := range deps {
		d, err := r.cl.CreateDeployment(ctx, benchNS, fmt.Sprintf("app-%02d", i), fmt.Sprintf("%010x", 0x5eed0000+i))
		if err != nil {
			return err
		}
		deps[i] = d
	}
	pods := make([]*corev1.Pod, r.o.pods)
	err := parallel(ctx, 16, r.o.pods, func(i int) error {
		addr := netip.AddrFrom4([4]byte{127, byte(1 + i/250), byte(1 + i%250)})
		p, err := r.cl.StartPod(ctx, cluster.Pod{
			Namespace: benchNS, NodeName: benchNode, Owner: deps[i/perDeployment],
			Annotations: map[string]string{"resource.opentelemetry.io/team": "bench"},
		}, cluster.PodStatus{IPs: []netip.Addr{addr}, HostIP: netip.MustParseAddr("127.0.0.1")})
		if err != nil {
			return err
		}
		pods[i] = p
		return nil
	})
	if err != nil {
		return err
	}
	// The load generator's connections come from pods spread over the node.
	r.expected = map[string]sink.Expected{}
	r.sources = nil
	for c := 0; c < r.o.conns; c++ {
		i := c * r.o.pods / r.o.conns
		p := pods[i]
		src := p.Status.PodIP
		r.sources = append(r.sources, src)
		r.expected[src] = sink.Expected{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID)}
	}
	return nil
}

// parallel runs fn(0..n-1) on workers goroutines, stopping at the first error.
func parallel(ctx context.Context, workers, n int, fn func(i int) error) error {
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && first.Load() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return err
	}
	return ctx.Err()
}

func (r *runner) want(key string) bool {
	if key == "C" && r.o.skipCollector {
		return false
	}
	return r.o.only == "" || strings.Contains(r.o.only, key)
}

// start launches target key ("T", "R", "B", "S", "C") for ingress ing; it
// returns the process, the endpoint to load (host:port) and podstamp's
// debug listener.
func (r *runner) start(ctx context.Context, key string, ing ingress, tag string) (*proc.Proc, string, string, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, "", "", err
	}
	comp := "none"
	if ing.Gzip {
		comp = "gzip"
	}
	logPath := filepath.Join(r.work, fmt.Sprintf("%s-%s.log", key, tag))
	switch key {
	case "T":
		up := r.sink.GRPCAddr()
		if ing.Protocol == "http" {
			up = r.sink.HTTPAddr()
		}
		p, err := startProc("tcprelay", logPath, nil, r.tcprelayBin, "--listen", listen, "--upstream", up)
		if err != nil {
			return nil, "", "", err
		}
		r.track(p)
		return p, listen, "", p.WaitReady(ctx, 30*time.Second, tcpUp(listen))
	case "R":
		argv := []string{r.rawproxyBin, "--listen", listen, "--upstream", r.sink.GRPCAddr(), "--upstream-compression", comp}
		argv = append(argv, strings.Fields(r.o.rawArgs)...)
		endpoint := listen
		if ing.Protocol == "http" {
			if endpoint, err = freeAddr(); err != nil {
				return nil, "", "", err
			}
			argv = append(argv, "--http-listen", endpoint, "--http-upstream", r.sink.HTTPAddr())
		}
		p, err := startProc("rawproxy", logPath, nil, argv...)
		if err != nil {
			return nil, "", "", err
		}
		r.track(p)
		return p, endpoint, "", p.WaitReady(ctx, 30*time.Second, tcpUp(endpoint))
	case "B", "S":
		admin, err := freeAddr()
		if err != nil {
			return nil, "", "", err
		}
		httpL, err := freeAddr()
		if err != nil {
			return nil, "", "", err
		}
		debug, err := freeAddr()
		if err != nil {
			return nil, "", "", err
		}
		bin := r.podstampBin
		if key == "S" {
			bin = r.variantBin
		}
		argv := []string{bin,
			"--grpc-listen", listen, "--http-listen", httpL, "--admin-listen", admin, "--debug-listen", debug,
			"--upstream", "http://" + r.sink.GRPCAddr(), "--upstream-protocol", "grpc", "--upstream-compression", comp,
			"--node-name", benchNode, "--node-ip", "127.0.0.1", "--kubeconfig", r.kubecfg,
			"--enable-pprof", "--log-level", "warn"}
		argv = append(argv, r.o.podstampArgs...)
		if key == "S" {
			argv = append(argv, strings.Fields(r.o.variantArgs)...) // last, so they win
		}
		endpoint := listen
		if ing.Protocol == "http" {
			endpoint = httpL
		}
		env := append([]string{}, r.o.podstampEnv...)
		if key == "S" {
			env = append(env, r.o.variantEnv...)
		}
		p, err := startProc("podstamp", logPath, env, argv...)
		if err != nil {
			return nil, "", "", err
		}
		r.track(p)
		if err := p.WaitReady(ctx, 60*time.Second, proc.HTTPOK(&http.Client{Timeout: 2 * time.Second}, "http://"+admin+"/readyz")); err != nil {
			return p, endpoint, debug, err
		}
		return p, endpoint, debug, nil
	case "C":
		httpL, err := freeAddr()
		if err != nil {
			return nil, "", "", err
		}
		cfgPath := filepath.Join(r.work, fmt.Sprintf("otelcol-%s.yaml", tag))
		if err := os.WriteFile(cfgPath, []byte(collectorConfig(listen, httpL, r.sink.GRPCAddr(), comp, benchNode)), 0o644); err != nil {
			return nil, "", "", err
		}
		endpoint := listen
		if ing.Protocol == "http" {
			endpoint = httpL
		}
		env := []string{"KUBECONFIG=" + r.kubecfg}
		p, err := startProc("otelcol", logPath, env, r.otelcolBin, "--config", "file:"+cfgPath)
		if err != nil {
			return nil, "", "", err
		}
		r.track(p)
		return p, endpoint, "", p.WaitReady(ctx, 90*time.Second, tcpUp(endpoint))
	}
	return nil, "", "", fmt.Errorf("unknown target %q", key)
}

// collectorConfig is (C): OTLP receiver, k8sattributes with podstamp's
// default attributes and a node filter, OTLP exporter without a sending
// queue (synchronous, like podstamp).
func collectorConfig(grpcListen, httpListen, upstream, compression, node string) string {
	var md strings.Builder
	for _, m := range metadata {
		fmt.Fprintf(&md, "        - %s\n", m)
	}
	return fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
processors:
  k8sattributes:
    auth_type: kubeConfig
    passthrough: false
    wait_for_metadata: true
    wait_for_metadata_timeout: 60s
    filter:
      node: %s
    extract:
      otel_annotations: true
      metadata:
%s    pod_association:
      - sources: [{from: resource_attribute, name: k8s.pod.uid}]
      - sources: [{from: resource_attribute, name: k8s.pod.ip}]
      - sources: [{from: connection}]
exporters:
  otlp_grpc:
    endpoint: %s
    tls:
      insecure: true
    compression: %s
    timeout: 10s
    sending_queue:
      enabled: false
    retry_on_failure:
      enabled: false
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [k8sattributes]
      exporters: [otlp_grpc]
    metrics:
      receivers: [otlp]
      processors: [k8sattributes]
      exporters: [otlp_grpc]
    logs:
      receivers: [otlp]
      processors: [k8sattributes]
      exporters: [otlp_grpc]
`, grpcListen, httpListen, node, md.String(), upstream, compression)
}

func (r *runner) fail(in *instance, what string, err error) {
	in.res.Err = fmt.Sprintf("%s: %v", what, err)
	r.log.Error("target failed", "target", in.res.Key, "phase", what, "err", err)
}

// mergePhase adds phase b to a.
func mergePhase(a, b phaseResult) phaseResult {
	a.Summary = loadgen.Merge(a.Summary, b.Summary)
	a.CPUSeconds += b.CPUSeconds
	a.RoundCPU = append(a.RoundCPU, b.CPUPerMillion)
	if a.Summary.Items > 0 {
		a.CPUPerMillion = a.CPUSeconds / float64(a.Summary.Items) * 1e6
	}
	a.SinkItems += b.SinkItems
	a.Lost += b.Lost
	id := &a.Identity
	id.Resources += b.Identity.Resources
	id.Items += b.Identity.Items
	id.Matched += b.Identity.Matched
	id.MatchedItems += b.Identity.MatchedItems
	id.Wrong += b.Identity.Wrong
	id.Unstamped += b.Identity.Unstamped
	id.Unexpected += b.Identity.Unexpected
	id.Share = 0
	if checked := id.Resources - id.Unexpected; checked > 0 {
		id.Share = float64(id.Matched) / float64(checked)
	}
	return a
}

// phase runs one load against endpoint and accounts the forwarder's CPU.
func (r *runner) phase(ctx context.Context, p *proc.Proc, endpoint string, ing ingress, rate float64, d time.Duration) (phaseResult, error) {
	var res phaseResult
	r.sink.Reset()
	var cpu0 float64
	if p != nil {
		var err error
		if cpu0, err = cpuSeconds(p.PID()); err != nil {
			return res, err
		}
	}
	sum, err := loadgen.Run(ctx, loadgen.Config{
		Endpoint: endpoint, Duration: d, Items: r.o.items, Attrs: r.o.attrs, Conns: r.o.conns,
		Rate: rate, Protocol: ing.Protocol, Encoding: ing.Encoding, Gzip: ing.Gzip, Signal: ing.Signal,
		SourceIPs: r.sources, Timeout: 10 * time.Second, KeepLatencies: rate > 0,
	})
	if err != nil {
		return res, err
	}
	res.Summary = sum
	if p != nil {
		cpu1, err := cpuSeconds(p.PID())
		if err != nil {
			return res, err
		}
		res.CPUSeconds = cpu1 - cpu0
		if sum.Items > 0 {
			res.CPUPerMillion = res.CPUSeconds / float64(sum.Items) * 1e6
		}
	}
	// A synchronous forwarder delivered every acked item before the ack;
	// give stragglers of timed-out requests a moment.
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_ = r.sink.Wait(wctx, func(st sink.Stats) bool { return st.TotalItems >= sum.Items })
	cancel()
	st := r.sink.Stats()
	res.SinkItems = st.TotalItems
	if sum.Items > st.TotalItems {
		res.Lost = sum.Items - st.TotalItems
	}
	res.Identity = r.sink.Identity(r.expected)
	if sum.Sent == 0 {
		return res, fmt.Errorf("nothing was sent")
	}
	return res, nil
}

// cpuProfile records 8 s of podstamp CPU under load (saturated when rate is
// 0, gzip or not) and returns the profile's path.
func (r *runner) cpuProfile(ctx context.Context, p *proc.Proc, endpoint, debug string, ing ingress, rate float64) (string, error) {
	path := filepath.Join(r.work, fmt.Sprintf("podstamp.cpu.%s.rate-%g.pprof", ing.Key, rate))
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + debug + "/debug/pprof/profile?seconds=8")
		if err != nil {
			errc <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			errc <- fmt.Errorf("pprof: %s", resp.Status)
			return
		}
		f, err := os.Create(path)
		if err != nil {
			errc <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		f.Close()
		errc <- err
	}()
	if _, err := r.phase(ctx, p, endpoint, ing, rate, 9*time.Second); err != nil {
		return "", err
	}
	return path, <-errc
}

// flatProfile returns the flat top of a saturated CPU profile under ing's
// load (for gzip and JSON the codec functions are what matter).
func (r *runner) flatProfile(ctx context.Context, p *proc.Proc, endpoint, debug string, ing ingress) (string, error) {
	path, err := r.cpuProfile(ctx, p, endpoint, debug, ing, 0)
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=20", r.podstampBin, path).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof: %w\n%s", err, out)
	}
	return string(out), nil
}

// flatCumProfile is flatProfile and the same profile by cumulative time.
func (r *runner) flatCumProfile(ctx context.Context, p *proc.Proc, endpoint, debug string, ing ingress) (string, string, error) {
	path, err := r.cpuProfile(ctx, p, endpoint, debug, ing, 0)
	if err != nil {
		return "", "", err
	}
	flat, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=20", r.podstampBin, path).CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("go tool pprof: %w\n%s", err, flat)
	}
	cum, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=1000", r.podstampBin, path).CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("go tool pprof: %w\n%s", err, cum)
	}
	return string(flat), string(cum), nil
}

// takeProfile records 8 s of podstamp CPU under saturated load and keeps
// the top of `go tool pprof`. It is taken outside the measured phases.
func (r *runner) takeProfile(ctx context.Context, p *proc.Proc, endpoint, debug string, ing ingress) error {
	path, err := r.cpuProfile(ctx, p, endpoint, debug, ing, 0)
	if err != nil {
		return err
	}
	// At the paced rate per-request costs (wake-ups, syscalls) dominate,
	// which a saturated profile hides.
	if pp, err := r.cpuProfile(ctx, p, endpoint, debug, ing, r.o.rate); err == nil {
		// Every node, so the analysis finds what it looks for; the report
		// prints the top 40.
		if out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=1000", r.podstampBin, pp).CombinedOutput(); err == nil {
			r.profilePaced = string(out)
		}
		if out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=1000", r.podstampBin, pp).CombinedOutput(); err == nil {
			r.profilePacedFlat = string(out)
		}
	} else {
		r.log.Warn("paced profile", "err", err)
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=25", r.podstampBin, path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %w\n%s", err, out)
	}
	r.profile = string(out)
	if out, err = exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=30", r.podstampBin, path).CombinedOutput(); err == nil {
		r.profileCum = string(out)
	}
	// The heap in use right after the load, for the memory targets.
	heap := filepath.Join(r.work, "podstamp.heap.pprof")
	resp, err := http.Get("http://" + debug + "/debug/pprof/heap")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(heap)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	f.Close()
	if err != nil {
		return err
	}
	out, err = exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=15", "-sample_index=inuse_space", r.podstampBin, heap).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof heap: %w\n%s", err, out)
	}
	r.heapProfile = string(out)
	return nil
}

// scale measures podstamp's memory with the bench pods on its node, then
// again after scalePods more pods on other nodes exist.
func (r *runner) scale(ctx context.Context) error {
	r.log.Info("scale run", "node_pods", r.o.pods, "other_pods", r.o.scalePods)
	res := &scaleResult{BasePods: r.o.pods, OtherPods: r.o.scalePods, OtherNodes: r.o.scaleNodes}
	r.scaleR = res
	p, endpoint, _, err := r.start(ctx, "B", ingresses[0], "scale")
	if err != nil {
		return err
	}
	defer r.untrack(p)
	res.Command = commandLine(p.Env(), p.Argv(), r.cmdRepl)
	load := func() error {
		if _, err := r.phase(ctx, p, endpoint, ingresses[0], 0, r.o.warmup); err != nil {
			return err
		}
		ph, err := r.phase(ctx, p, endpoint, ingresses[0], r.o.rate, r.o.paced)
		res.Identity = ph.Identity
		return err
	}
	if err := load(); err != nil {
		return err
	}
	if res.BaseHWM, res.BaseRSS, err = memKiB(p.PID()); err != nil {
		return err
	}
	if err := r.cl.CreateNamespace(ctx, scaleNS, nil); err != nil {
		return err
	}
	start := time.Now()
	err = parallel(ctx, 8, r.o.scaleNodes, func(i int) error {
		_, err := r.cl.CreateNode(ctx, cluster.Node{Name: fmt.Sprintf("other-%03d", i),
			InternalIPs: []netip.Addr{netip.AddrFrom4([4]byte{127, 200, byte(i / 250), byte(1 + i%250)})}})
		return err
	})
	if err != nil {
		return err
	}
	err = parallel(ctx, 48, r.o.scalePods, func(i int) error {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("svc-%03d-%05d", i%200, i), Namespace: scaleNS,
				Labels:      map[string]string{"app.kubernetes.io/name": fmt.Sprintf("svc-%03d", i%200), "tier": "backend"},
				Annotations: map[string]string{"resource.opentelemetry.io/team": "other"},
			},
			Spec: corev1.PodSpec{
				NodeName: fmt.Sprintf("other-%03d", i%r.o.scaleNodes),
				Containers: []corev1.Container{
					{Name: "app", Image: fmt.Sprintf("registry.example/svc-%03d:1.2.3", i%200)},
					{Name: "sidecar", Image: "registry.example/proxy:2.0.0"},
				},
			},
		}
		_, err := r.cl.Client.CoreV1().Pods(scaleNS).Create(ctx, pod, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	res.CreateSeconds = time.Since(start).Seconds()
	r.log.Info("created pods on other nodes", "pods", r.o.scalePods, "took", time.Since(start).Round(time.Millisecond))
	if err := load(); err != nil {
		return err
	}
	res.AfterHWM, res.AfterRSS, err = memKiB(p.PID())
	return err
}

func round2(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }

// copyFile copies the executable src to a new file dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
