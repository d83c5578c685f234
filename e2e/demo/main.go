package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/podstamp/podstamp/e2e/cluster"
	"github.com/podstamp/podstamp/e2e/proc"
)

func main() {
	keep := flag.Bool("keep", false, "keep everything running until Ctrl-C (to try podstamp by hand)")
	verbose := flag.Bool("v", false, "log progress details")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// A closed stdout (demo | head) must not kill the demo before it has
	// stopped what it started: handled, SIGPIPE only fails the write.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	d := &demo{keep: *keep}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	d.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	err := d.run(ctx)
	d.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type demo struct {
	log      *slog.Logger
	keep     bool
	dir      string
	cl       *cluster.Cluster
	procs    []*proc.Proc
	cleanups []func()
}

func (d *demo) cleanup() {
	for i := len(d.procs) - 1; i >= 0; i-- {
		d.procs[i].Stop(stopGrace)
	}
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

// demoPod is one pod of the demo: its Kubernetes identity and the loopback
// address it sends from.
type demoPod struct {
	deployment string
	service    string // resource.opentelemetry.io/service.name annotation
	ip         netip.Addr
	name, uid  string
}

func (d *demo) run(ctx context.Context) error {
	start := time.Now()
	var err error
	if d.dir, err = os.MkdirTemp("", "podstamp-demo-"); err != nil {
		return err
	}
	d.cleanups = append(d.cleanups, func() { os.RemoveAll(d.dir) })

	root, err := repoRoot()
	if err != nil {
		return err
	}
	if bin, ok := cluster.CachedKubeAPIServer(); !ok {
		step("building kube-apiserver into %s (first run only: several minutes)", bin)
	}
	if _, err := cluster.KubeAPIServer(ctx, d.log); err != nil {
		return err
	}
	step("building podstamp, otlpsink and loadgen")
	for _, b := range []struct{ name, dir, pkg string }{
		{"podstamp", ".", "./cmd/podstamp"}, {"otlpsink", "bench", "./cmd/otlpsink"}, {"loadgen", "bench", "./cmd/loadgen"},
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(d.dir, b.name), b.pkg)
		cmd.Dir = filepath.Join(root, b.dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}

	step("starting etcd and kube-apiserver on 127.0.0.1")
	d.cl, err = cluster.Start(ctx, cluster.Options{Log: d.log})
	if err != nil {
		return err
	}
	d.cleanups = append(d.cleanups, d.cl.Stop)
	fmt.Printf("    API server %s, kubeconfig %s\n", d.cl.URL, d.cl.KubeconfigPath)

	const ns, node = "demo", "demo-node"
	if err := d.cl.CreateNamespace(ctx, ns, nil); err != nil {
		return err
	}
	if _, err := d.cl.CreateNode(ctx, cluster.Node{Name: node, InternalIPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}); err != nil {
		return err
	}
	pods := []*demoPod{
		{deployment: "hello-otel", service: "hello", ip: netip.MustParseAddr("127.0.0.11")},
		{deployment: "hello-otel", service: "hello", ip: netip.MustParseAddr("127.0.0.12")},
		{deployment: "checkout", service: "checkout", ip: netip.MustParseAddr("127.0.0.13")},
	}
	step("creating pods on node %s (their addresses: 127.0.0.11-13)", node)
	deps := map[string]*cluster.Deployment{}
	for _, p := range pods {
		dep := deps[p.deployment]
		if dep == nil {
			if dep, err = d.cl.CreateDeployment(ctx, ns, p.deployment, "7c9d8f6b5"+strconv.Itoa(len(deps))); err != nil {
				return err
			}
			deps[p.deployment] = dep
		}
		pod, err := d.cl.StartPod(ctx, cluster.Pod{
			Namespace: ns, NodeName: node, Owner: dep,
			Annotations: map[string]string{
				"resource.opentelemetry.io/service.name":    p.service,
				"resource.opentelemetry.io/service.version": "0.0.1",
			},
			Containers: []cluster.Container{{Name: p.deployment, Image: "ghcr.io/example/" + p.deployment + ":0.0.1"}},
		}, cluster.PodStatus{IPs: []netip.Addr{p.ip}, HostIP: netip.MustParseAddr("127.0.0.1")})
		if err != nil {
			return err
		}
		p.name, p.uid = pod.Name, string(pod.UID)
		fmt.Printf("    %s/%s  ip %s  uid %s\n", ns, p.name, p.ip, p.uid)
	}

	step("starting two sinks (printing like the Collector's debug exporter) and podstamp")
	direct, err := d.startSink(ctx, "sink-direct")
	if err != nil {
		return err
	}
	via, err := d.startSink(ctx, "sink-via-podstamp")
	if err != nil {
		return err
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	psGRPC := "127.0.0.1:" + strconv.Itoa(ports[0])
	psAdmin := "127.0.0.1:" + strconv.Itoa(ports[2])
	psArgs := []string{
		"--grpc-listen", psGRPC,
		"--http-listen", "127.0.0.1:" + strconv.Itoa(ports[1]),
		"--admin-listen", psAdmin,
		"--upstream", "http://" + via.grpc, "--upstream-protocol", "grpc",
		"--kubeconfig", d.cl.KubeconfigPath,
		"--node-name", node, "--node-ip", "127.0.0.1",
	}
	fmt.Printf("    podstamp %s\n", strings.Join(psArgs, " "))
	ps, err := d.start("podstamp", nil, filepath.Join(d.dir, "podstamp"), psArgs...)
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, ps, "http://"+psAdmin+"/readyz"); err != nil {
		return err
	}

	step("each pod sends one log record straight to a sink, and one through podstamp")
	stranger := netip.MustParseAddr("127.0.0.99")
	for _, src := range append(pods, &demoPod{ip: stranger, service: "not-a-pod"}) {
		for _, target := range []string{direct.grpc, psGRPC} {
			args := []string{"--endpoint", target, "--protocol", "grpc", "--signal", "logs", "--requests", "1",
				"--items", "1", "--attrs", "1", "--source-ip", src.ip.String(),
				"--resource-attr", "service.name=" + src.service, "--resource-attr", "service.version=0.0.1"}
			cmd := exec.CommandContext(ctx, filepath.Join(d.dir, "loadgen"), args...)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("loadgen %v: %v\n%s", args, err, out)
			}
		}
	}
	want := len(pods) + 1
	if err := direct.waitPrinted(ctx, want); err != nil {
		return err
	}
	if err := via.waitPrinted(ctx, want); err != nil {
		return err
	}
	before, after := parsePrint(direct.printed()), parsePrint(via.printed())

	fmt.Println()
	fmt.Println("What the sink behind podstamp printed for the first pod (the Collector's debug exporter format):")
	fmt.Println()
	fmt.Print(indent(firstBlock(via.printed()), "    "))
	for _, p := range append(pods, &demoPod{ip: stranger}) {
		title := fmt.Sprintf("pod %s/%s (%s)", ns, p.name, p.ip)
		if p.name == "" {
			title = fmt.Sprintf("%s: not a pod's address, so podstamp adds nothing", p.ip)
		}
		sideBySide(title, before[p.ip.String()], after[p.ip.String()])
	}
	if d.keep {
		fmt.Printf("\nEverything is still running: podstamp gRPC %s, admin %s, kubeconfig %s. Ctrl-C ends the demo.\n",
			psGRPC, psAdmin, d.cl.KubeconfigPath)
		<-ctx.Done()
	}
	fmt.Printf("\ndemo finished in %v; stopping podstamp, the sinks and the API server.\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// ---------------------------------------------------------------- output

// attrLine is one "-> key: Type(value)" line of the print.
type attrLine struct{ key, text string }

// parsePrint splits the sink's --print output into resources and returns
// each resource's attribute lines, in wire order, by loadgen.source.
func parsePrint(s string) map[string][]attrLine {
	out := map[string][]attrLine{}
	var cur []attrLine
	flush := func() {
		for _, a := range cur {
			if a.key == "loadgen.source" {
				v := strings.TrimSuffix(strings.TrimPrefix(a.text, "-> loadgen.source: Str("), ")")
				out[v] = cur
			}
		}
		cur = nil
	}
	for _, l := range strings.Split(s, "\n") {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, "-> "):
			k, _, _ := strings.Cut(strings.TrimPrefix(t, "-> "), ":")
			cur = append(cur, attrLine{key: k, text: t})
		case strings.HasPrefix(t, "Items:"):
			flush()
		}
	}
	flush()
	return out
}

// sideBySide prints the resource attributes received straight and through
// podstamp in two columns; attributes podstamp added are marked with "+".
func sideBySide(title string, left, right []attrLine) {
	const w = 50
	fmt.Printf("\n%s\n", title)
	fmt.Printf("  %-*s | %s\n", w, "straight to the collector", "through podstamp")
	fmt.Printf("  %s-+-%s\n", strings.Repeat("-", w), strings.Repeat("-", w+2))
	cut := func(s string) string {
		if len(s) > w {
			return s[:w-3] + "..."
		}
		return s
	}
	had := map[string]bool{}
	for _, a := range left {
		had[a.key] = true
	}
	n := max(len(left), len(right))
	added := 0
	for i := range n {
		var l, r, mark string = "", "", " "
		if i < len(left) {
			l = cut(left[i].text)
		}
		if i < len(right) {
			r = right[i].text
			if !had[right[i].key] {
				mark = "+"
				added++
			}
		}
		fmt.Printf("  %-*s | %s %s\n", w, l, mark, r)
	}
	if added == 0 {
		fmt.Printf("  %-*s |   (nothing added)\n", w, "")
	}
}

// firstBlock returns the first request of a --print output.
func firstBlock(s string) string {
	var out []string
	for i, l := range strings.Split(s, "\n") {
		if i > 0 && strings.Contains(l, "\t{\"peer\"") {
			break
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n") + "\n"
}

func indent(s, p string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = p + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}

// ---------------------------------------------------------------- processes

// stopGrace is how long a process gets between SIGTERM and SIGKILL.
const stopGrace = 10 * time.Second

// start runs bin with its output in <name>.log of the demo's directory
// (truncated); stdout, if not nil, also receives what it prints.
func (d *demo) start(name string, stdout io.Writer, bin string, args ...string) (*proc.Proc, error) {
	p, err := proc.Start(name, filepath.Join(d.dir, name+".log"), proc.Options{Stdout: stdout}, append([]string{bin}, args...)...)
	if err != nil {
		return nil, err
	}
	d.procs = append(d.procs, p)
	return p, nil
}

// syncBuffer is a sink's printed output: the process writes it from a
// goroutine of os/exec while the demo reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type sinkProc struct {
	*proc.Proc
	out        *syncBuffer
	grpc, http string
}

func (d *demo) startSink(ctx context.Context, name string) (*sinkProc, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	s := &sinkProc{out: &syncBuffer{}, grpc: "127.0.0.1:" + strconv.Itoa(ports[0]), http: "127.0.0.1:" + strconv.Itoa(ports[1])}
	s.Proc, err = d.start(name, s.out, filepath.Join(d.dir, "otlpsink"), "--grpc-listen", s.grpc, "--http-listen", s.http, "--print")
	if err != nil {
		return nil, err
	}
	return s, waitHTTP(ctx, s.Proc, "http://"+s.http+"/stats")
}

func (s *sinkProc) printed() string { return s.out.String() }

// waitPrinted waits until the sink has printed n resources: it counts them
// before printing, so its counter alone does not say the text is out yet.
func (s *sinkProc) waitPrinted(ctx context.Context, n int) error {
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(s.printed(), "Items:") < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s printed %d of %d resources", s.Name(), strings.Count(s.printed(), "Items:"), n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// waitHTTP polls url until 200 (the process is external: its readiness
// endpoint is all it offers), the process exits, ctx ends or 60s pass.
func waitHTTP(ctx context.Context, p *proc.Proc, url string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	return p.WaitReady(ctx, 60*time.Second, proc.HTTPOK(c, url))
}

func freePorts(n int) ([]int, error) {
	var ps []int
	for range n {
		p, err := cluster.FreePort()
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/podstamp/podstamp\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("run the demo from inside the podstamp repository (make demo)")
		}
	}
}
