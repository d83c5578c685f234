package node

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podstamp/podstamp/e2e/cluster"
	"github.com/podstamp/podstamp/e2e/netns"
	"github.com/podstamp/podstamp/e2e/proc"
)

// Addresses of the node network; they exist only inside the namespaces the
// cluster creates.
const (
	NodeName    = "node1"
	NodeIP      = "10.77.0.2"
	WireIP      = "10.77.0.1"
	PodCIDR     = "10.244.0.0/24"
	BridgeIP    = "10.244.0.1"
	ClusterCIDR = "10.244.0.0/16"
	ServiceCIDR = "10.96.0.0/16"
	// KubernetesServiceIP is the "kubernetes" Service's ClusterIP.
	KubernetesServiceIP = "10.96.0.1"
	apiPort             = 6443
	// PauseImage is the sandbox image containerd runs for every pod.
	PauseImage = "podstamp.local/pause:e2e"
)

// Options configure Start.
type Options struct {
	// Logf receives progress messages.
	Logf func(string, ...any)
	// Dir is the parent of the cluster's directory (default /var/tmp: the
	// container root file systems need a file system overlayfs can sit on).
	Dir string
}

// Cluster is a running one-node cluster.
type Cluster struct {
	// Dir holds every process's state and logs.
	Dir string
	// NS and Wire are the node's network namespace and the one on the other
	// end of its eth0 (names under /run/netns).
	NS, Wire string
	// Kubeconfig is an admin kubeconfig for the API server as the test
	// reaches it: through a forwarder on 127.0.0.1 into the node namespace.
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface
	// ContainerdSocket is containerd's API socket.
	ContainerdSocket string

	logf      func(string, ...any)
	fwd       net.Listener
	fwdWG     sync.WaitGroup
	procs     []*proc.Proc // in start order
	nsCreated []string
	// shimDirs are the directories containerd 1.6 keeps its shims' sockets
	// in (fixed, not under its state directory) that did not exist before.
	shimDirs []string
	stopOnce sync.Once
}

// Start brings the node up: namespaces, etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, containerd, kubelet and
// kube-proxy, each started with nsenter --net into the node namespace, and
// waits until the node is Ready. images are imported into containerd before
// the kubelet starts. On error whatever was started is stopped.
func Start(ctx context.Context, bins map[string]string, images []string, opts Options) (_ *Cluster, err error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	parent := opts.Dir
	if parent == "" {
		parent = "/var/tmp"
	}
	dir, err := os.MkdirTemp(parent, "podstamp-node-")
	if err != nil {
		return nil, err
	}
	prefix := "psn" + randHex(3)
	c := &Cluster{Dir: dir, NS: prefix + "-node", Wire: prefix + "-wire", logf: logf,
		ContainerdSocket: filepath.Join(dir, "containerd", "containerd.sock")}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if err := c.network(); err != nil {
		return nil, err
	}
	p, err := cluster.WritePKI(dir, "podstamp-node-ca", net.ParseIP("127.0.0.1"), net.ParseIP(NodeIP), net.ParseIP(KubernetesServiceIP))
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}

	// Identities: static tokens. The kubelet is a real node identity under
	// the Node authorizer; kube-proxy has its bootstrap role; the
	// controller-manager and scheduler run as cluster admins.
	tokens := map[string]string{}
	var csv strings.Builder
	for _, id := range []struct{ name, user, groups string }{
		{"admin", "podstamp-node-admin", "system:masters"},
		{"kubelet", "system:node:" + NodeName, "system:nodes"},
		{"kube-proxy", "system:kube-proxy", "system:node-proxier"},
		{"kube-controller-manager", "system:kube-controller-manager", "system:masters"},
		{"kube-scheduler", "system:kube-scheduler", "system:masters"},
	} {
		tokens[id.name] = randHex(16)
		fmt.Fprintf(&csv, "%s,%s,%s,\"%s\"\n", tokens[id.name], id.user, id.user, id.groups)
	}
	tokenFile := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(csv.String()), 0o600); err != nil {
		return nil, err
	}
	nodeAPI := fmt.Sprintf("https://%s:%d", NodeIP, apiPort)
	kc := func(name string) (string, error) {
		path := filepath.Join(dir, name+".kubeconfig")
		return path, cluster.WriteTokenKubeconfig(path, "node", nodeAPI, p.CAPEM, tokens[name])
	}

	// etcd: the build of the e2e/etcd module the e2e suite runs (an etcd on
	// PATH may be too old for Kubernetes 1.34's streaming lists).
	etcdBin, err := cluster.Etcd(ctx, nil)
	if err != nil {
		return nil, err
	}
	etcd, err := c.start(ctx, "etcd", etcdBin, "--name", "node", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "node=http://127.0.0.1:2380", "--log-level", "warn", "--unsafe-no-fsync")
	if err != nil {
		return nil, err
	}
	if err := c.waitHTTP(ctx, etcd, "http://127.0.0.1:2379/health", nil); err != nil {
		return nil, err
	}

	// kube-apiserver on the node address, so that the "kubernetes" Service
	// leads there.
	api, err := c.start(ctx, "kube-apiserver", bins["kube-apiserver"],
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=0.0.0.0",
		"--advertise-address="+NodeIP,
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file="+p.CertFile,
		"--tls-private-key-file="+p.KeyFile,
		"--client-ca-file="+p.CAFile,
		"--token-auth-file="+tokenFile,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p.SAPubKeyFile,
		"--service-account-signing-key-file="+p.SAKeyFile,
		"--service-cluster-ip-range="+ServiceCIDR,
		"--kubelet-preferred-address-types=InternalIP",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=1",
	)
	if err != nil {
		return nil, err
	}
	adminTLS := cluster.BearerClient(p.CAPEM, tokens["admin"], netns.DialContext(c.NS))
	if err := c.waitHTTP(ctx, api, nodeAPI+"/readyz", adminTLS); err != nil {
		return nil, err
	}
	if err := c.forward(); err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(dir, "admin-local.kubeconfig")
	if err := cluster.WriteTokenKubeconfig(c.Kubeconfig, "node", "https://"+c.fwd.Addr().String(), p.CAPEM, tokens["admin"]); err != nil {
		return nil, err
	}
	c.Config = &rest.Config{Host: "https://" + c.fwd.Addr().String(), BearerToken: tokens["admin"],
		TLSClientConfig: rest.TLSClientConfig{CAData: p.CAPEM}, QPS: 100, Burst: 200, Timeout: 30 * time.Second}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	logf("kube-apiserver ready on %s (pid %d), reached from here through %s", nodeAPI, api.PID(), c.fwd.Addr())

	// kube-controller-manager and kube-scheduler
	cmKC, err := kc("kube-controller-manager")
	if err != nil {
		return nil, err
	}
	if _, err := c.start(ctx, "kube-controller-manager", bins["kube-controller-manager"],
		"--kubeconfig="+cmKC,
		"--authentication-kubeconfig="+cmKC, "--authorization-kubeconfig="+cmKC,
		"--bind-address=127.0.0.1",
		"--leader-elect=false",
		"--service-account-private-key-file="+p.SAKeyFile,
		"--root-ca-file="+p.CAFile,
		"--use-service-account-credentials=false",
		"--cluster-cidr="+ClusterCIDR,
		"--service-cluster-ip-range="+ServiceCIDR,
		"--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
		"--v=1",
	); err != nil {
		return nil, err
	}
	schedKC, err := kc("kube-scheduler")
	if err != nil {
		return nil, err
	}
	if _, err := c.start(ctx, "kube-scheduler", bins["kube-scheduler"],
		"--kubeconfig="+schedKC,
		"--authentication-kubeconfig="+schedKC, "--authorization-kubeconfig="+schedKC,
		"--bind-address=127.0.0.1",
		"--leader-elect=false",
		"--v=1",
	); err != nil {
		return nil, err
	}

	// containerd with its own state, and the bridge + portmap CNI network.
	if err := c.startContainerd(ctx); err != nil {
		return nil, err
	}
	for _, img := range images {
		if out, err := c.Ctr(ctx, "images", "import", "--no-unpack=false", img); err != nil {
			return nil, fmt.Errorf("import %s: %w\n%s", img, err, out)
		}
	}
	logf("imported the images of %d tarball(s) into containerd", len(images))

	// kubelet. Its API authenticates service account tokens and authorizes
	// requests through the API server (webhook, as kubeadm configures
	// nodes), so --pod-source kubelet meets what it meets on a real
	// cluster; it serves a certificate of the cluster CA for the node
	// address, as kubelets with serverTLSBootstrap do.
	kubeletKC, err := kc("kubelet")
	if err != nil {
		return nil, err
	}
	kubeletCfg := filepath.Join(dir, "kubelet.yaml")
	if err := os.WriteFile(kubeletCfg, []byte(fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization: {mode: Webhook}
tlsCertFile: %s
tlsPrivateKeyFile: %s
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
containerRuntimeEndpoint: unix://%s
address: %s
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
podCIDR: %s
podLogsDir: %s
resolvConf: ""
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
  nodefs.inodesFree: "1%%"
localStorageCapacityIsolation: false
registerNode: true
nodeStatusReportFrequency: 10s
syncFrequency: 10s
`, p.CAFile, p.CertFile, p.KeyFile, c.ContainerdSocket, NodeIP, PodCIDR, filepath.Join(dir, "pod-logs"))), 0o644); err != nil {
		return nil, err
	}
	kubelet, err := c.start(ctx, "kubelet", bins["kubelet"],
		"--config="+kubeletCfg,
		"--kubeconfig="+kubeletKC,
		"--root-dir="+filepath.Join(dir, "kubelet"),
		"--cert-dir="+filepath.Join(dir, "kubelet-pki"),
		"--hostname-override="+NodeName,
		"--node-ip="+NodeIP,
		"--v=1",
	)
	if err != nil {
		return nil, err
	}
	if err := kubelet.WaitReady(ctx, 90*time.Second, c.nodeReady); err != nil {
		return nil, err
	}
	logf("node %s Ready (kubelet pid %d)", NodeName, kubelet.PID())

	// kube-proxy, iptables mode, for the Services in-cluster clients use.
	proxyKC, err := kc("kube-proxy")
	if err != nil {
		return nil, err
	}
	proxy, err := c.start(ctx, "kube-proxy", bins["kube-proxy"],
		"--kubeconfig="+proxyKC,
		"--proxy-mode=iptables",
		"--hostname-override="+NodeName,
		"--cluster-cidr="+ClusterCIDR,
		"--bind-address="+NodeIP,
		"--healthz-bind-address=127.0.0.1:10256",
		"--metrics-bind-address=127.0.0.1:10249",
		"--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0",
		"--conntrack-tcp-timeout-close-wait=0",
		"--iptables-localhost-nodeports=false",
		"--v=1",
	)
	if err != nil {
		return nil, err
	}
	if err := c.waitHTTP(ctx, proxy, "http://127.0.0.1:10256/healthz", nil); err != nil {
		return nil, err
	}
	logf("kube-proxy ready (pid %d)", proxy.PID())
	return c, nil
}

// network creates the node namespace (eth0 10.77.0.2/24 with a default
// route to the wire namespace, which the kubelet takes its address from)
// and the wire namespace.
func (c *Cluster) network() error {
	for _, ns := range []string{c.NS, c.Wire} {
		if _, err := run("ip", "netns", "add", ns); err != nil {
			return err
		}
		c.nsCreated = append(c.nsCreated, ns)
		if _, err := run("ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	for _, args := range [][]string{
		{"link", "add", "name", "eth0", "netns", c.NS, "type", "veth", "peer", "name", "eth0", "netns", c.Wire},
		{"-n", c.Wire, "addr", "add", WireIP + "/24", "dev", "eth0"},
		{"-n", c.Wire, "link", "set", "eth0", "up"},
		{"-n", c.NS, "addr", "add", NodeIP + "/24", "dev", "eth0"},
		{"-n", c.NS, "link", "set", "eth0", "up"},
		{"-n", c.NS, "route", "add", "default", "via", WireIP},
	} {
		if _, err := run("ip", args...); err != nil {
			return err
		}
	}
	for _, s := range []string{"net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"} {
		if _, err := run("ip", "netns", "exec", c.NS, "sysctl", "-qw", s); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) startContainerd(ctx context.Context) error {
	d := filepath.Join(c.Dir, "containerd")
	cni := filepath.Join(c.Dir, "cni")
	for _, sub := range []string{d, filepath.Join(cni, "net.d"), filepath.Join(cni, "ipam")} {
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return err
		}
	}
	binDir := "/usr/lib/cni"
	for _, plugin := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(binDir, plugin)); err != nil {
			return fmt.Errorf("CNI plugin %s: %w (install the Debian package containernetworking-plugins)", plugin, err)
		}
	}
	conflist := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "podstamp-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, filepath.Join(cni, "ipam"), PodCIDR, BridgeIP)
	if err := os.WriteFile(filepath.Join(cni, "net.d", "10-podstamp.conflist"), []byte(conflist), 0o644); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, filepath.Join(d, "root"), filepath.Join(d, "state"), c.ContainerdSocket, c.ContainerdSocket+".ttrpc",
		filepath.Join(d, "opt"), PauseImage, filepath.Join(d, "runc"), binDir, filepath.Join(cni, "net.d"))
	cfgPath := filepath.Join(d, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	for _, d := range []string{"/run/containerd", "/run/containerd/s"} {
		if _, err := os.Stat(d); os.IsNotExist(err) {
			c.shimDirs = append(c.shimDirs, d)
		}
	}
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return errors.New("containerd not found: install the Debian packages containerd and runc")
	}
	p, err := c.start(ctx, "containerd", bin, "--config", cfgPath)
	if err != nil {
		return err
	}
	return p.WaitReady(ctx, 60*time.Second, func(ctx context.Context) error {
		_, err := c.Ctr(ctx, "version")
		return err
	})
}

// Ctr runs ctr against the cluster's containerd in the k8s.io namespace.
func (c *Cluster) Ctr(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.ContainerdSocket, "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// nodeReady is a WaitReady check: the node object exists and is Ready.
func (c *Cluster) nodeReady(ctx context.Context) error {
	n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1GetOptions)
	if err != nil {
		return err
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == "Ready" {
			if cond.Status == "True" {
				return nil
			}
			return fmt.Errorf("node %s not ready: %s: %s", NodeName, cond.Reason, cond.Message)
		}
	}
	return fmt.Errorf("node %s has no Ready condition yet", NodeName)
}

// start runs bin inside the node namespace (nsenter --net keeps the mount
// namespace, so the cgroup mounts stay visible) with its log in Dir.
func (c *Cluster) start(ctx context.Context, name, bin string, args ...string) (*proc.Proc, error) {
	if bin == "" {
		return nil, fmt.Errorf("%s: no binary", name)
	}
	argv := append([]string{"nsenter", "--net=" + filepath.Join("/run/netns", c.NS), "--", bin}, args...)
	p, err := proc.Start(name, filepath.Join(c.Dir, name+".log"), proc.Options{NewProcessGroup: true}, argv...)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	c.logf("started %s (pid %d)", name, p.PID())
	return p, nil
}

// HTTPClient is a plain HTTP client that dials inside the node namespace,
// for pod addresses and the node address.
func (c *Cluster) HTTPClient() *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DialContext: netns.DialContext(c.NS)}}
}

func (c *Cluster) waitHTTP(ctx context.Context, p *proc.Proc, url string, client *http.Client) error {
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: netns.DialContext(c.NS), DisableKeepAlives: true}}
	}
	return p.WaitReady(ctx, 90*time.Second, proc.HTTPOK(client, url))
}

// forward listens on 127.0.0.1 of the caller's namespace and forwards every
// connection to the API server on the node address inside the node namespace.
func (c *Cluster) forward() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	c.fwd = l
	dial := netns.DialContext(c.NS)
	target := fmt.Sprintf("%s:%d", NodeIP, apiPort)
	c.fwdWG.Add(1)
	go func() {
		defer c.fwdWG.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			c.fwdWG.Add(1)
			go func() {
				defer c.fwdWG.Done()
				defer in.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				out, err := dial(ctx, "tcp", target)
				cancel()
				if err != nil {
					return
				}
				defer out.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(out, in); out.(*net.TCPConn).CloseWrite(); done <- struct{}{} }() //nolint:errcheck
				go func() { io.Copy(in, out); in.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()  //nolint:errcheck
				<-done
				<-done
			}()
		}
	}()
	return nil
}

// Stop removes every pod sandbox through the CRI (so the CNI plugins give
// back addresses and remove their rules, and the shims exit), stops the
// processes by PID in reverse start order, unmounts what is left under Dir,
// deletes the namespaces and removes Dir. Safe to call more than once.
func (c *Cluster) Stop() {
	c.stopOnce.Do(c.stop)
}

func (c *Cluster) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var kubelet *proc.Proc
	for _, p := range c.procs {
		if p.Name() == "kubelet" {
			kubelet = p
		}
	}
	// The kubelet would restart what is removed under it.
	if kubelet != nil {
		kubelet.Stop(20 * time.Second)
	}
	if c.containerdRunning() {
		if err := c.removeSandboxes(ctx); err != nil {
			c.logf("teardown: %v", err)
		}
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		if c.procs[i].Stop(15 * time.Second) {
			c.logf("teardown: %s needed SIGKILL", c.procs[i].Name())
		}
	}
	c.killShims()
	removeEmptyCgroups()
	for _, d := range slices.Backward(c.shimDirs) {
		syscall.Rmdir(d) //nolint:errcheck // fails, harmlessly, when not empty
	}
	if c.fwd != nil {
		c.fwd.Close()
	}
	c.unmountUnder(c.Dir)
	for _, ns := range slices.Backward(c.nsCreated) {
		if _, err := run("ip", "netns", "del", ns); err != nil {
			c.logf("teardown: %v", err)
		}
	}
	if os.Getenv("PODSTAMP_KEEP_NODE_DIR") != "" {
		c.logf("kept %s", c.Dir)
		return
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		c.logf("teardown: %v", err)
	}
}

func (c *Cluster) containerdRunning() bool {
	for _, p := range c.procs {
		if p.Name() == "containerd" {
			return !p.Exited()
		}
	}
	return false
}

// removeSandboxes stops and removes every pod sandbox containerd runs, with
// crictl's CRI calls made through ctr's view: containers first (tasks
// killed), then sandboxes through the CRI plugin, which runs CNI DEL.
func (c *Cluster) removeSandboxes(ctx context.Context) error {
	sandboxes, err := criSandboxes(ctx, c.ContainerdSocket)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range sandboxes {
		if err := criRemoveSandbox(ctx, c.ContainerdSocket, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killShims ends the containerd shims this cluster's containerd started, if
// any outlived it: they are found by the containerd address on their command
// line, which is unique to this cluster, and signalled by PID.
func (c *Cluster) killShims() {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 0 && strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && slices.Contains(args, c.ContainerdSocket) {
			c.logf("teardown: shim pid %d outlived containerd; killing it", pid)
			syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck
		}
	}
}

// removeEmptyCgroups removes the k8s.io cgroup that runc creates under every
// cgroup v1 controller for containerd's k8s.io namespace, when no container
// is left in it (rmdir of a cgroup with children fails and changes nothing).
func removeEmptyCgroups() {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/k8s.io")
	for _, d := range dirs {
		syscall.Rmdir(d) //nolint:errcheck
	}
}

// unmountUnder lazily unmounts every mount point under dir, deepest first.
func (c *Cluster) unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var points []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			points = append(points, fields[4])
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			c.logf("teardown: unmount %s: %v", p, err)
		}
	}
}

// LogTail returns the last n bytes of a component's log.
func (c *Cluster) LogTail(name string, n int) string {
	for _, p := range c.procs {
		if p.Name() == name {
			return p.LogTail(n)
		}
	}
	return ""
}

func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
