//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podstamp/podstamp/bench/loadgen"
	"github.com/podstamp/podstamp/bench/sink"
	"github.com/podstamp/podstamp/e2e/cluster"
	"github.com/podstamp/podstamp/e2e/netns"
	"github.com/podstamp/podstamp/e2e/proc"
)

// Fixed ports of the OTLP listeners, as the chart uses them.
const (
	grpcPort  = 4317
	httpPort  = 4318
	adminAddr = "127.0.0.1:10291"
)

// suite is what all scenarios share: the binaries, the API server, the
// per-run prefix of every name, and the result table.
type suite struct {
	root    string // repository root
	binDir  string
	logDir  string
	cluster *cluster.Cluster
	prefix  string

	mu   sync.Mutex
	rows []*row
}

// row is one line of the result table.
type row struct {
	ID        string
	Title     string
	Sent      int64 // resources the apps sent
	Acked     int64 // resources the apps got a success for
	Received  int64 // resources from the apps at the sink
	Correct   int64 // ... carrying the right pod, namespace, workload and node
	Wrong     int64 // ... carrying another (or an incomplete) identity
	Unstamped int64 // ... carrying no pod identity
	Lost      int64 // acknowledged but not at the sink
	Notes     []string
	Duration  time.Duration
	Result    string
}

func (r *row) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (s *suite) bin(name string) string { return filepath.Join(s.binDir, name) }

// ensurePackages installs the Debian packages the suite runs, when missing.
// etcd is not one of them: cluster.Start runs the e2e/etcd module's build.
func ensurePackages(t *testing.T) {
	t.Helper()
	need := map[string]string{}
	for tool, pkg := range netns.Tools {
		if _, err := exec.LookPath(tool); err != nil {
			need[pkg] = tool
		}
	}
	if len(need) == 0 {
		return
	}
	pkgs := make([]string, 0, len(need))
	for p := range need {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	t.Logf("installing %v", pkgs)
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{{"update"}, append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/podstamp/podstamp\n")) {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("repository root not found above %s", wd)
		}
	}
}

// buildBinaries builds podstamp (with the race detector: a race in the real
// process fails the scenario), the sink and the load generator.
func (s *suite) buildBinaries(t *testing.T) {
	t.Helper()
	builds := []struct {
		dir  string // module directory, relative to the repository root
		args []string
	}{
		{".", []string{"build", "-race", "-o", s.bin("podstamp"), "./cmd/podstamp"}},
		{"bench", []string{"build", "-o", s.bin("otlpsink"), "./cmd/otlpsink"}},
		{"bench", []string{"build", "-o", s.bin("loadgen"), "./cmd/loadgen"}},
	}
	for _, b := range builds {
		args := b.args
		start := time.Now()
		cmd := exec.Command("go", args...)
		cmd.Dir = filepath.Join(s.root, b.dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("built %s in %v", args[len(args)-1], time.Since(start).Round(time.Millisecond))
	}
}

// ---------------------------------------------------------------- processes

// child is a process run by the suite, stopped by PID at cleanup.
type child struct {
	*proc.Proc
	stopped bool
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// stopGrace is how long a child gets between SIGTERM and SIGKILL; one that
// needs the SIGKILL fails the test.
const stopGrace = 15 * time.Second

// start runs bin inside network namespace ns ("" = the suite's own) with its
// output appended to a log file named after the test; cleanup stops it.
func (s *suite) start(t *testing.T, name, ns, bin string, args ...string) *child {
	t.Helper()
	return s.startWith(t, name, ns, nil, nil, bin, args...)
}

// startWith is start with extra environment and a command that execs the
// rest of the command line (wrap; e.g. one that joins a cgroup first), so the
// PID is still the program's own.
func (s *suite) startWith(t *testing.T, name, ns string, env, wrap []string, bin string, args ...string) *child {
	t.Helper()
	argv := append([]string{bin}, args...)
	if ns != "" {
		// ip netns exec execs the binary: the PID is the program's own.
		argv = append([]string{"ip", "netns", "exec", ns}, argv...)
	}
	argv = append(slices.Clone(wrap), argv...)
	logPath := filepath.Join(s.logDir, unsafeName.ReplaceAllString(t.Name(), "_")+"."+name+".log")
	p, err := proc.Start(name, logPath, proc.Options{Append: true, Env: env}, argv...)
	if err != nil {
		t.Fatal(err)
	}
	c := &child{Proc: p}
	t.Cleanup(func() { c.stop(t) })
	return c
}

// stop sends SIGTERM to the PID, SIGKILL after stopGrace, and waits; it
// fails the test if the child needed the SIGKILL or reported a data race.
func (c *child) stop(t *testing.T) { c.stopWithin(t, stopGrace) }

// stopWithin is stop with grace between SIGTERM and SIGKILL (e.g. the pod's
// terminationGracePeriodSeconds, as the kubelet gives it).
func (c *child) stopWithin(t *testing.T, grace time.Duration) {
	if c.stopped {
		return
	}
	c.stopped = true
	if c.Stop(grace) {
		t.Errorf("%s (PID %d) ignored SIGTERM for %v; killed it", c.Name(), c.PID(), grace)
	}
	if b, _ := os.ReadFile(c.LogPath()); bytes.Contains(b, []byte("WARNING: DATA RACE")) {
		t.Errorf("%s reported a data race; log %s:\n%s", c.Name(), c.LogPath(), tailBytes(b, 8000))
	}
}

func (c *child) logTail() string { return c.LogTail(4000) }

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// httpIn returns an HTTP client whose connections are made inside namespace
// ns ("" = the suite's own).
func httpIn(ns string) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	if ns != "" {
		tr.DialContext = netns.DialContext(ns)
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// waitHTTP polls url until it answers 200, the process exits, or the
// timeout passes. The process is external; its readiness endpoint is the
// only signal it offers.
func waitHTTP(t *testing.T, p *child, c *http.Client, url string, timeout time.Duration) {
	t.Helper()
	err := p.WaitReady(t.Context(), timeout, proc.HTTPOK(c, url))
	if err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------- sink

type sinkProc struct {
	*child
	ns       string
	grpcAddr string
	httpAddr string
	client   *http.Client
}

// startSink runs otlpsink. In the suite's namespace it takes free loopback
// ports; inside a namespace it listens on ip:4317 and ip:4318.
func (s *suite) startSink(t *testing.T, name, ns string, ip netip.Addr) *sinkProc {
	t.Helper()
	sp := &sinkProc{ns: ns, client: httpIn(ns)}
	if ns == "" {
		gp, err := cluster.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		hp, err := cluster.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		sp.grpcAddr = "127.0.0.1:" + strconv.Itoa(gp)
		sp.httpAddr = "127.0.0.1:" + strconv.Itoa(hp)
	} else {
		sp.grpcAddr = netip.AddrPortFrom(ip, grpcPort).String()
		sp.httpAddr = netip.AddrPortFrom(ip, httpPort).String()
	}
	sp.child = s.start(t, name, ns, s.bin("otlpsink"), "--grpc-listen", sp.grpcAddr, "--http-listen", sp.httpAddr)
	waitHTTP(t, sp.child, sp.client, "http://"+sp.httpAddr+"/stats", 30*time.Second)
	return sp
}

// restart starts a new sink process on the same addresses.
func (sp *sinkProc) restart(t *testing.T, s *suite, name string) *sinkProc {
	t.Helper()
	n := &sinkProc{ns: sp.ns, grpcAddr: sp.grpcAddr, httpAddr: sp.httpAddr, client: sp.client}
	n.child = s.start(t, name, sp.ns, s.bin("otlpsink"), "--grpc-listen", sp.grpcAddr, "--http-listen", sp.httpAddr)
	waitHTTP(t, n.child, n.client, "http://"+n.httpAddr+"/stats", 30*time.Second)
	return n
}

func (sp *sinkProc) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := sp.client.Get("http://" + sp.httpAddr + path)
	if err != nil {
		t.Fatalf("sink %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("sink %s: HTTP %d %s", path, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("sink %s: %v", path, err)
	}
}

func (sp *sinkProc) records(t *testing.T) []sink.Record {
	t.Helper()
	var recs []sink.Record
	sp.getJSON(t, "/records", &recs)
	var st sink.Stats
	sp.getJSON(t, "/stats", &st)
	if st.RecordsDropped > 0 {
		t.Fatalf("sink dropped %d records: raise its --max-records", st.RecordsDropped)
	}
	return recs
}

// ---------------------------------------------------------------- podstamp

type podstampProc struct {
	*child
	ns     string
	admin  string // admin listener (host:port inside ns)
	client *http.Client
}

type podstampOpts struct {
	ns         string     // namespace it runs in (node or agent pod)
	listen     netip.Addr // OTLP listen address
	kubeconfig string
	upstream   string // host:port inside ns
	protocol   string // upstream protocol, default grpc
	extra      []string
	// admin is the admin listen address, default adminAddr; a second
	// podstamp in the same namespace needs its own.
	admin string
	// bin replaces the suite's podstamp binary; env and wrap go to startWith.
	bin  string
	env  []string
	wrap []string
	// name names the process and its log, default "podstamp".
	name string
	// chart, when set, is the configuration the chart's DaemonSet renders
	// (e.chartDefaults): its arguments come first and reach podstamp
	// unchanged, with its listen addresses, and its environment; then the
	// harness's endpoints (upstream, kubeconfig, node), then extra, whose
	// flags win (a later value replaces an earlier one in podstamp's parser;
	// list flags accumulate, so extra must not repeat one the chart sets).
	// listen is not used (the chart's listeners are on the node address),
	// and admin, when set, replaces the chart's admin address.
	chart *chartConfig
}

func (e *env) startPodstamp(t *testing.T, o podstampOpts) *podstampProc {
	t.Helper()
	if o.protocol == "" {
		o.protocol = "grpc"
	}
	if o.bin == "" {
		o.bin = e.s.bin("podstamp")
	}
	if o.name == "" {
		o.name = "podstamp"
	}
	if o.chart != nil {
		return e.startChartPodstamp(t, o)
	}
	if o.admin == "" {
		o.admin = adminAddr
	}
	args := []string{
		"--grpc-listen", netip.AddrPortFrom(o.listen, grpcPort).String(),
		"--http-listen", netip.AddrPortFrom(o.listen, httpPort).String(),
		"--admin-listen", o.admin,
		"--upstream", "http://" + o.upstream,
		"--upstream-protocol", o.protocol,
		"--node-name", e.nodeName,
		"--node-ip", netns.NodeIP.String(),
		"--node-ip", netns.NodeIP6.String(),
		"--shutdown-timeout", "5s",
		"--drain-delay", "0s",
		"--log-level", "debug",
	}
	if o.kubeconfig != "" {
		args = append(args, "--kubeconfig", o.kubeconfig)
	}
	args = append(args, o.extra...)
	p := &podstampProc{ns: o.ns, admin: o.admin, client: httpIn(o.ns)}
	p.child = e.s.startWith(t, o.name, o.ns, o.env, o.wrap, o.bin, args...)
	waitHTTP(t, p.child, p.client, "http://"+o.admin+"/readyz", 60*time.Second)
	return p
}

// startChartPodstamp is startPodstamp with the chart's configuration.
func (e *env) startChartPodstamp(t *testing.T, o podstampOpts) *podstampProc {
	t.Helper()
	cc := o.chart
	for _, f := range o.extra {
		name, _, _ := strings.Cut(strings.TrimLeft(f, "-"), "=")
		if _, set := cc.flag(name); set && strings.HasPrefix(f, "-") && listFlags[name] {
			t.Fatalf("scenario flag %s: the chart already sets --%s, and list flags accumulate; merge them deliberately", f, name)
		}
	}
	args := slices.Clone(cc.Args)
	own := o.extra // the scenario's flags, for the row note
	if o.admin != "" {
		args = append(args, "--admin-listen", o.admin)
		own = append([]string{"--admin-listen", o.admin}, o.extra...)
	} else if a, ok := cc.flag("admin-listen"); ok && a != "" {
		o.admin = a
	} else {
		t.Fatal("the chart renders no --admin-listen: the harness has no readiness endpoint to wait for")
	}
	args = append(args,
		"--upstream", "http://"+o.upstream,
		"--upstream-protocol", o.protocol,
		"--node-name", e.nodeName,
		"--node-ip", netns.NodeIP.String(),
		"--node-ip", netns.NodeIP6.String(),
	)
	if o.kubeconfig != "" {
		args = append(args, "--kubeconfig", o.kubeconfig)
	}
	args = append(args, o.extra...)
	// The chart's environment first: a scenario's own wins (exec keeps the
	// last value of a variable).
	env := append(slices.Clone(cc.Env), o.env...)
	e.row.note("%s", cc.describe(o.name, own))
	p := &podstampProc{ns: o.ns, admin: o.admin, client: httpIn(o.ns)}
	p.child = e.s.startWith(t, o.name, o.ns, env, o.wrap, o.bin, args...)
	waitHTTP(t, p.child, p.client, "http://"+o.admin+"/readyz", 60*time.Second)
	return p
}

// listFlags are podstamp's repeatable flags: repeated, they accumulate
// instead of the later value winning.
var listFlags = map[string]bool{
	"allow-cidr": true, "upstream-header": true, "forward-headers": true,
	"upstream-header-from-identity": true, "node-ip": true,
}

// metrics scrapes /metrics into series -> value, the series as Prometheus
// prints it (name{labels}).
func (p *podstampProc) metrics(t *testing.T) metrics {
	t.Helper()
	m, err := p.scrape()
	if err != nil {
		t.Fatalf("scrape podstamp: %v", err)
	}
	return m
}

// scrape is metrics for goroutines other than the test's.
func (p *podstampProc) scrape() (metrics, error) {
	resp, err := p.client.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

type metrics map[string]float64

// sum adds every series whose name{labels} starts with prefix.
func (m metrics) sum(prefix string) float64 {
	var s float64
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			s += v
		}
	}
	return s
}

func (m metrics) enrich(result string) float64 {
	return m[`podstamp_enrich_total{result="`+result+`"}`]
}

// enrichSummary lists the non-zero podstamp_enrich_total results.
func (m metrics) enrichSummary() string {
	var parts []string
	for k, v := range m {
		if strings.HasPrefix(k, "podstamp_enrich_total{") && v > 0 {
			r := strings.TrimSuffix(strings.TrimPrefix(k, `podstamp_enrich_total{result="`), `"}`)
			parts = append(parts, fmt.Sprintf("%s=%g", r, v))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// waitMetric polls podstamp's metrics until cond holds (an external
// process's state; there is no event to subscribe to).
func (p *podstampProc) waitMetric(t *testing.T, what string, timeout time.Duration, cond func(metrics) bool) metrics {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := p.metrics(t)
		if cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("podstamp: %s not reached after %v; log:\n%s", what, timeout, p.logTail())
		}
		select {
		case <-p.Done():
			t.Fatalf("podstamp exited (%v); log:\n%s", p.Err(), p.logTail())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// ---------------------------------------------------------------- scenario env

// env is one scenario's world: its node (network and Node object), its
// Kubernetes namespace, its sink, its apps, and its table row.
type env struct {
	s        *suite
	t        *testing.T
	node     *netns.Node
	nodeName string
	ns       string
	sink     *sinkProc
	row      *row
	apps     []*app
	nextIP   int
	fwdUp    *netns.Forwarder
	deps     map[string]*cluster.Deployment
}

func (s *suite) newEnv(t *testing.T, id, title string) *env {
	t.Helper()
	r := &row{ID: id, Title: title}
	s.mu.Lock()
	s.rows = append(s.rows, r)
	s.mu.Unlock()
	begin := time.Now()
	// Registered first, so it runs last: after every other cleanup.
	t.Cleanup(func() {
		r.Duration = time.Since(begin)
		switch {
		case t.Skipped():
			r.Result = "SKIP"
		case t.Failed():
			r.Result = "FAIL"
		default:
			r.Result = "PASS"
		}
	})
	e := &env{s: s, t: t, row: r, nodeName: "node-" + id, ns: "e2e-" + id + "-" + s.prefix, nextIP: 10}
	e.node = netns.NewNode(t, s.prefix+id)
	ctx := context.Background()
	if err := s.cluster.CreateNamespace(ctx, e.ns, map[string]string{"e2e": id}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.cluster.DeleteNamespace(context.Background(), e.ns); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if _, err := s.cluster.CreateNode(ctx, cluster.Node{
		Name:        e.nodeName,
		InternalIPs: []netip.Addr{netns.NodeIP, netns.NodeIP6},
		PodCIDRs:    []netip.Prefix{netns.PodCIDR, netns.PodCIDR6},
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.cluster.DeleteNode(context.Background(), e.nodeName); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	e.sink = s.startSink(t, "sink", "", netip.Addr{})
	return e
}

// kubeconfig writes a kubeconfig usable inside namespace ns: the API server
// is forwarded to a loopback port there.
func (e *env) kubeconfig(t *testing.T, ns, token string) string {
	t.Helper()
	fwd := netns.Forward(t, ns, "127.0.0.1:0", strings.TrimPrefix(e.s.cluster.URL, "https://"))
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := e.s.cluster.WriteKubeconfig(path, "https://"+fwd.Addr, token); err != nil {
		t.Fatal(err)
	}
	return path
}

// upstream forwards the env's sink (gRPC, or HTTP when http) into namespace ns.
func (e *env) upstream(t *testing.T, ns string, http bool) *netns.Forwarder {
	t.Helper()
	target := e.sink.grpcAddr
	if http {
		target = e.sink.httpAddr
	}
	return netns.Forward(t, ns, "127.0.0.1:0", target)
}

// podstampHostNetwork runs podstamp in the node namespace on the node
// address, as the chart's default hostNetwork DaemonSet does.
func (e *env) podstampHostNetwork(t *testing.T, token string, extra ...string) *podstampProc {
	t.Helper()
	if token == "" {
		token = e.s.cluster.AdminToken()
	}
	return e.startPodstamp(t, podstampOpts{
		ns: e.node.NS, listen: netns.NodeIP,
		kubeconfig: e.kubeconfig(t, e.node.NS, token),
		upstream:   e.upstream(t, e.node.NS, false).Addr,
		extra:      extra,
	})
}

// podstampChart runs podstamp in the node namespace with the configuration
// the chart renders (cc, from e.chartDefaults), then extra.
func (e *env) podstampChart(t *testing.T, cc *chartConfig, extra ...string) *podstampProc {
	t.Helper()
	return e.startPodstamp(t, podstampOpts{
		ns: e.node.NS, listen: netns.NodeIP, chart: cc,
		kubeconfig: e.kubeconfig(t, e.node.NS, e.s.cluster.AdminToken()),
		upstream:   e.upstream(t, e.node.NS, false).Addr,
		extra:      extra,
	})
}

// ---------------------------------------------------------------- apps

// app is an application pod: a network namespace on the node and, unless
// deferred, its Pod object with matching status.podIPs.
type app struct {
	Name, Namespace, UID   string
	Deployment, ReplicaSet string
	Node                   string
	IPs                    []netip.Addr
	ContainerIDs           []string
	net                    *netns.Pod
	dep                    *cluster.Deployment
}

// deployment creates (once) a Deployment + ReplicaSet in the env's namespace.
func (e *env) deployment(t *testing.T, name string) *cluster.Deployment {
	t.Helper()
	return e.deploymentIn(t, e.ns, name)
}

// deploymentIn creates (once) a Deployment + ReplicaSet in Kubernetes
// namespace ns (e.g. one made by e.namespace); its apps' pods go there.
func (e *env) deploymentIn(t *testing.T, ns, name string) *cluster.Deployment {
	t.Helper()
	key := ns + "/" + name
	if d := e.deps[key]; d != nil {
		return d
	}
	d, err := e.s.cluster.CreateDeployment(context.Background(), ns, name, hashFor(name))
	if err != nil {
		t.Fatal(err)
	}
	if e.deps == nil {
		e.deps = map[string]*cluster.Deployment{}
	}
	e.deps[key] = d
	return d
}

// namespace creates another Kubernetes namespace for the env,
// "<env namespace>-<suffix>"; cleanup deletes it.
func (e *env) namespace(t *testing.T, suffix string) string {
	t.Helper()
	name := e.ns + "-" + suffix
	if err := e.s.cluster.CreateNamespace(context.Background(), name, map[string]string{"e2e": e.row.ID}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.s.cluster.DeleteNamespace(context.Background(), name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return name
}

func hashFor(name string) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint32(name[i])) * 16777619
	}
	var b strings.Builder
	for i := 0; i < 10; i++ {
		b.WriteByte(alphabet[h%uint32(len(alphabet))])
		h = h*31 + uint32(i)
	}
	return b.String()
}

// addApp creates the pod's network namespace with the next free addresses
// (IPv4, plus IPv6 when v6) and, when withObject, its Pod object, running.
func (e *env) addApp(t *testing.T, dep *cluster.Deployment, v6, withObject bool) *app {
	t.Helper()
	n := e.nextIP
	e.nextIP++
	ips := []netip.Addr{netip.AddrFrom4([4]byte{10, 244, 0, byte(n)})}
	if v6 {
		ips = append(ips, netip.MustParseAddr(fmt.Sprintf("fd00:10:244::%x", n)))
	}
	return e.addAppAt(t, dep, ips, withObject)
}

func (e *env) addAppAt(t *testing.T, dep *cluster.Deployment, ips []netip.Addr, withObject bool) *app {
	t.Helper()
	a := &app{Namespace: dep.Namespace, Deployment: dep.Name, ReplicaSet: dep.ReplicaSetName, Node: e.nodeName, IPs: ips, dep: dep}
	a.net = e.node.AddPod(fmt.Sprintf("app%d", len(e.apps)), ips...)
	e.apps = append(e.apps, a)
	if withObject {
		e.createPodObject(t, a)
	}
	return a
}

// createPodObject creates the app's Pod and patches its status (IPs, Running).
func (e *env) createPodObject(t *testing.T, a *app) *corev1.Pod {
	t.Helper()
	pod, err := e.s.cluster.StartPod(context.Background(), cluster.Pod{
		Namespace: a.Namespace, NodeName: e.nodeName, Owner: a.dep,
		Containers: []cluster.Container{{Name: "app", Image: "registry.example/" + a.Deployment + ":1.4.2"}},
	}, cluster.PodStatus{IPs: a.IPs, HostIP: netns.NodeIP})
	if err != nil {
		t.Fatal(err)
	}
	a.Name, a.UID = pod.Name, string(pod.UID)
	a.ContainerIDs = cluster.ContainerIDs(pod)
	return pod
}

// agent creates the podstamp agent's own pod (pod-network mode) at 10.244.0.3.
func (e *env) agent(t *testing.T) *netns.Pod {
	t.Helper()
	ip := netip.MustParseAddr("10.244.0.3")
	p := e.node.AddPod("agent", ip)
	if _, err := e.s.cluster.StartPod(context.Background(), cluster.Pod{
		Namespace: e.ns, Name: "podstamp-agent", NodeName: e.nodeName,
		Labels:     map[string]string{"app.kubernetes.io/name": "podstamp"},
		Containers: []cluster.Container{{Name: "podstamp", Image: "ghcr.io/podstamp/podstamp:dev"}},
	}, cluster.PodStatus{IPs: []netip.Addr{ip}, HostIP: netns.NodeIP}); err != nil {
		t.Fatal(err)
	}
	return p
}

// ---------------------------------------------------------------- load

type loadSpec struct {
	Protocol string // grpc | http
	Encoding string // proto | json
	Gzip     bool
	Signal   string
	Requests int
	Duration time.Duration
	Rate     float64
	Items    int
	Source   netip.Addr // source address; default the app's first IP
	Target   netip.Addr // address of the OTLP endpoint
	Attrs    map[string]string
	Allow    bool // --allow-failures
}

func (l loadSpec) String() string {
	s := l.Protocol + "/" + l.Encoding
	if l.Gzip {
		s += "+gzip"
	}
	return s + " " + l.Signal
}

// mix is the standard traffic of one app: both transports, both encodings,
// gzip, every signal.
func mix(target netip.Addr, requests int) []loadSpec {
	return []loadSpec{
		{Protocol: "grpc", Encoding: "proto", Signal: "traces", Requests: requests, Target: target},
		{Protocol: "grpc", Encoding: "proto", Gzip: true, Signal: "metrics", Requests: requests, Target: target},
		{Protocol: "http", Encoding: "proto", Signal: "logs", Requests: requests, Target: target},
		{Protocol: "http", Encoding: "json", Gzip: true, Signal: "traces", Requests: requests, Target: target},
		{Protocol: "http", Encoding: "json", Signal: "metrics", Requests: requests, Target: target},
	}
}

// tally counts what an app sent and what arrived, by source address.
type tally struct {
	mu    sync.Mutex
	sent  map[string]int64 // by source address
	acked map[string]int64
	fails map[string]int64 // by code
	lat   []float64        // per-run p99 latency, ms
	sums  []loadgen.Summary
}

func newTally() *tally {
	return &tally{sent: map[string]int64{}, acked: map[string]int64{}, fails: map[string]int64{}}
}

// send runs loadgen inside the app's namespace. It records what was sent and
// acknowledged; err is non-nil when loadgen could not run or a request failed
// (unless spec.Allow).
func (e *env) send(ctx context.Context, a *app, spec loadSpec, tl *tally) (loadgen.Summary, error) {
	if spec.Items == 0 {
		spec.Items = 8
	}
	src := spec.Source
	if !src.IsValid() {
		src = a.IPs[0]
	}
	port := grpcPort
	if spec.Protocol == "http" {
		port = httpPort
	}
	ep := netip.AddrPortFrom(spec.Target, uint16(port)).String()
	if spec.Protocol == "http" {
		ep = "http://" + ep
	}
	args := []string{
		"--endpoint", ep, "--protocol", spec.Protocol, "--encoding", spec.Encoding,
		"--signal", spec.Signal, "--items", strconv.Itoa(spec.Items), "--attrs", "4",
		"--source-ip", src.String(), "--timeout", "20s",
		"--resource-attr", "service.name=" + a.Deployment,
	}
	if spec.Gzip {
		args = append(args, "--gzip")
	}
	if spec.Requests > 0 {
		args = append(args, "--requests", strconv.Itoa(spec.Requests))
	}
	if spec.Duration > 0 {
		args = append(args, "--duration", spec.Duration.String())
	}
	if spec.Rate > 0 {
		args = append(args, "--rate", strconv.FormatFloat(spec.Rate, 'f', -1, 64))
	}
	if spec.Allow {
		args = append(args, "--allow-failures")
	}
	keys := make([]string, 0, len(spec.Attrs))
	for k := range spec.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--resource-attr", k+"="+spec.Attrs[k])
	}
	cmd := netns.Cmd(ctx, a.net.NS, e.s.bin("loadgen"), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var sum loadgen.Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		return sum, fmt.Errorf("loadgen %s from %s: %v (run: %v)\nstdout: %s\nstderr: %s", spec, src, err, runErr, stdout.Bytes(), stderr.Bytes())
	}
	tl.mu.Lock()
	tl.sent[src.String()] += sum.Sent
	tl.acked[src.String()] += sum.Acked
	for c, n := range sum.FailedByCode {
		tl.fails[c] += n
	}
	tl.lat = append(tl.lat, sum.LatencyMs.P99)
	tl.sums = append(tl.sums, sum)
	tl.mu.Unlock()
	if runErr != nil {
		return sum, fmt.Errorf("loadgen %s from %s: %v: %s", spec, src, runErr, bytes.TrimSpace(stderr.Bytes()))
	}
	return sum, nil
}

// sendAll runs every spec for every app: apps in parallel, each app's specs
// one after the other. It fails the test on any loadgen error.
func (e *env) sendAll(t *testing.T, apps []*app, specs func(*app) []loadSpec, tl *tally) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for _, a := range apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, sp := range specs(a) {
				if _, err := e.send(ctx, a, sp, tl); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// ---------------------------------------------------------------- checks

// identity is the result of checking received resources against the apps.
type identity struct {
	received, correct, wrong, unstamped int64
	bySource                            map[string]int64
	examples                            []string
}

// identityAttrs are the attributes a correctly stamped resource carries.
func (a *app) identityAttrs() map[string]string {
	return map[string]string{
		"k8s.pod.name":        a.Name,
		"k8s.pod.uid":         a.UID,
		"k8s.namespace.name":  a.Namespace,
		"k8s.node.name":       a.Node,
		"k8s.deployment.name": a.Deployment,
		"k8s.replicaset.name": a.ReplicaSet,
	}
}

// check classifies every record whose loadgen.source is one of the apps'
// addresses and that keep accepts (nil: all).
func check(recs []sink.Record, apps []*app, keep func(sink.Record) bool) identity {
	bySrc := map[string]*app{}
	for _, a := range apps {
		for _, ip := range a.IPs {
			bySrc[ip.String()] = a
		}
	}
	id := identity{bySource: map[string]int64{}}
	for _, r := range recs {
		src := r.Attributes[loadgen.SourceAttr]
		a := bySrc[src]
		if a == nil || (keep != nil && !keep(r)) {
			continue
		}
		id.received++
		id.bySource[src]++
		if r.Attributes["k8s.pod.name"] == "" && r.Attributes["k8s.pod.uid"] == "" {
			id.unstamped++
			continue
		}
		var bad []string
		for k, want := range a.identityAttrs() {
			if got := r.Attributes[k]; got != want {
				bad = append(bad, fmt.Sprintf("%s=%q (want %q)", k, got, want))
			}
		}
		if ip := r.Attributes["k8s.pod.ip"]; ip != "" && !slices.ContainsFunc(a.IPs, func(x netip.Addr) bool { return x.String() == ip }) {
			bad = append(bad, fmt.Sprintf("k8s.pod.ip=%q (want one of %v)", ip, a.IPs))
		}
		if cid := r.Attributes["container.id"]; cid != "" && !slices.Contains(a.ContainerIDs, cid) {
			bad = append(bad, fmt.Sprintf("container.id=%q (want one of %v)", cid, a.ContainerIDs))
		}
		if cn := r.Attributes["k8s.container.name"]; cn != "" && cn != "app" {
			bad = append(bad, fmt.Sprintf("k8s.container.name=%q (want \"app\")", cn))
		}
		if len(bad) == 0 {
			id.correct++
			continue
		}
		id.wrong++
		if len(id.examples) < 5 {
			sort.Strings(bad)
			id.examples = append(id.examples, fmt.Sprintf("%s via %s from %s: %s", r.Signal, r.Transport, src, strings.Join(bad, ", ")))
		}
	}
	return id
}

// account adds a tally and its identity check to the row and returns the
// resources acknowledged but missing at the sink.
func (r *row) account(tl *tally, id identity) int64 {
	var lost int64
	for src, acked := range tl.acked {
		if got := id.bySource[src]; got < acked {
			lost += acked - got
		}
	}
	for _, n := range tl.sent {
		r.Sent += n
	}
	for _, n := range tl.acked {
		r.Acked += n
	}
	r.Received += id.received
	r.Correct += id.correct
	r.Wrong += id.wrong
	r.Unstamped += id.unstamped
	r.Lost += lost
	return lost
}

// expectAllCorrect asserts that every acknowledged resource arrived and that
// every resource that arrived carries the right identity.
func expectAllCorrect(t *testing.T, tl *tally, id identity, lost int64) {
	t.Helper()
	var acked int64
	for _, n := range tl.acked {
		acked += n
	}
	if acked == 0 {
		t.Error("no export was acknowledged")
	}
	if lost != 0 {
		t.Errorf("%d acknowledged resources are missing at the sink", lost)
	}
	if id.wrong != 0 {
		t.Errorf("%d resources stamped with a wrong identity, e.g.:\n%s", id.wrong, strings.Join(id.examples, "\n"))
	}
	if id.unstamped != 0 {
		t.Errorf("%d of %d resources arrived without a pod identity", id.unstamped, id.received)
	}
	if id.correct != id.received {
		t.Errorf("stamped correctly: %d of %d", id.correct, id.received)
	}
}

// ---------------------------------------------------------------- table

func (s *suite) printTable(total time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "\n| # | scenario | result | sent | acked | received | stamped correctly | stamped wrongly | unstamped | lost | time | notes |\n")
	fmt.Fprintf(&b, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range s.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %d | %d | %d | %d | %d | %.1fs | %s |\n",
			r.ID, r.Title, r.Result, r.Sent, r.Acked, r.Received, r.Correct, r.Wrong, r.Unstamped, r.Lost,
			r.Duration.Seconds(), strings.Join(r.Notes, "; "))
	}
	fmt.Fprintf(&b, "| | total | | | | | | | | | %.1fs | |\n", total.Seconds())
	fmt.Print(b.String())
}

// ---------------------------------------------------------------- misc

func newLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
