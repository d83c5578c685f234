package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podstamp/podstamp/e2e/proc"
)

const (
	// ServiceCIDR is the cluster's service range; serviceIP is the
	// "kubernetes" Service address the serving certificate also covers.
	ServiceCIDR = "10.96.0.0/16"
	serviceIP   = "10.96.0.1"
	// Issuer is the ServiceAccount token issuer and default API audience.
	Issuer = "https://kubernetes.default.svc.cluster.local"
	// AdminUser is the static-token user of the admin kubeconfig.
	AdminUser = "podstamp-e2e-admin"
)

// Options configure Start. The zero value is usable.
type Options struct {
	// Log receives progress messages; nil discards them.
	Log *slog.Logger
	// KubeAPIServer is the binary to run; "" builds or reuses the cached one
	// (see KubeAPIServer).
	KubeAPIServer string
	// Etcd is the etcd binary to run; "" builds or reuses the cached one
	// (see Etcd). An etcd on PATH is never used on its own.
	Etcd string
	// Dir is the parent of the cluster's temporary directory; "" prefers
	// /dev/shm (etcd fsyncs a lot) and falls back to os.TempDir().
	Dir string
	// StartTimeout bounds each process's start-up (default 90s).
	StartTimeout time.Duration
}

// Cluster is a running etcd + kube-apiserver pair.
type Cluster struct {
	// Dir holds the data, certificates, logs and the admin kubeconfig; Stop removes it.
	Dir string
	// URL is the API server's address, https://127.0.0.1:<port>.
	URL string
	// Port is the API server's secure port on 127.0.0.1.
	Port int
	// KubeconfigPath is the admin kubeconfig (static token, system:masters).
	KubeconfigPath string
	// CAPEM is the CA that signed the serving certificate.
	CAPEM []byte
	// Config and Client act as the admin.
	Config *rest.Config
	Client kubernetes.Interface

	adminToken string
	log        *slog.Logger
	timeout    time.Duration
	apiBin     string
	apiArgs    []string

	mu       sync.Mutex
	etcd     *proc.Proc
	api      *proc.Proc
	apiStart int // how many times the API server was started, for log names
	stopped  bool
}

// Start brings up etcd and kube-apiserver and waits until the API server is
// ready. On error, whatever was started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 90 * time.Second
	}
	apiBin := opts.KubeAPIServer
	if apiBin == "" {
		if apiBin, err = KubeAPIServer(ctx, log); err != nil {
			return nil, err
		}
	}
	etcdBin := opts.Etcd
	if etcdBin == "" {
		if etcdBin, err = Etcd(ctx, log); err != nil {
			return nil, err
		}
	}
	parent := opts.Dir
	if parent == "" {
		parent = os.TempDir()
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			parent = "/dev/shm"
		}
	}
	dir, err := os.MkdirTemp(parent, "podstamp-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, log: log, timeout: timeout, apiBin: apiBin}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()

	p, err := WritePKI(dir, "podstamp-e2e-ca", net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP(serviceIP))
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	c.CAPEM = p.CAPEM
	c.adminToken = randHex(16)
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, fmt.Appendf(nil, "%s,%s,%s,\"system:masters\"\n", c.adminToken, AdminUser, AdminUser), 0o600); err != nil {
		return nil, err
	}

	// etcd
	clientPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	peerPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	c.etcd, err = startProc("etcd", filepath.Join(dir, "etcd.log"), etcdBin,
		"--name", "e2e",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL,
		"--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "e2e="+peerURL,
		"--log-level", "warn",
	)
	if err != nil {
		return nil, err
	}
	if err := c.waitHTTP(ctx, c.etcd, etcdURL+"/health", nil); err != nil {
		return nil, err
	}
	log.Debug("etcd ready", "url", etcdURL, "pid", c.etcd.PID())

	// kube-apiserver
	if c.Port, err = FreePort(); err != nil {
		return nil, err
	}
	c.URL = "https://127.0.0.1:" + strconv.Itoa(c.Port)
	c.apiArgs = []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.Port),
		"--cert-dir=" + filepath.Join(dir, "cert-dir"),
		"--tls-cert-file=" + p.CertFile,
		"--tls-private-key-file=" + p.KeyFile,
		"--token-auth-file=" + tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=" + Issuer,
		"--service-account-key-file=" + p.SAPubKeyFile,
		"--service-account-signing-key-file=" + p.SAKeyFile,
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=1",
	}
	if err := c.startAPIServer(ctx); err != nil {
		return nil, err
	}

	c.Config = &rest.Config{
		Host:            c.URL,
		BearerToken:     c.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAPEM},
		QPS:             200,
		Burst:           400,
		Timeout:         30 * time.Second,
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	c.KubeconfigPath = filepath.Join(dir, "admin.kubeconfig")
	if err := c.WriteKubeconfig(c.KubeconfigPath, "", c.adminToken); err != nil {
		return nil, err
	}
	log.Info("API server ready", "url", c.URL, "kubeconfig", c.KubeconfigPath,
		"etcd_pid", c.etcd.PID(), "apiserver_pid", c.api.PID())
	return c, nil
}

// AdminToken is the admin's bearer token.
func (c *Cluster) AdminToken() string { return c.adminToken }

// APIServerPID is the PID of the running API server, or 0.
func (c *Cluster) APIServerPID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api == nil {
		return 0
	}
	return c.api.PID()
}

// StopAPIServer stops the API server process (SIGTERM, then SIGKILL after
// 10s) and waits until it has exited. etcd keeps running.
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	p := c.api
	c.api = nil
	c.mu.Unlock()
	if p == nil {
		return errors.New("API server is not running")
	}
	p.Stop(10 * time.Second)
	return nil
}

// StartAPIServer starts the API server again after StopAPIServer, with the
// same flags and port, and waits for /readyz.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	running := c.api != nil
	c.mu.Unlock()
	if running {
		return errors.New("API server is already running")
	}
	return c.startAPIServer(ctx)
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return errors.New("cluster stopped")
	}
	c.apiStart++
	logName := filepath.Join(c.Dir, fmt.Sprintf("kube-apiserver.%d.log", c.apiStart))
	c.mu.Unlock()
	var p *proc.Proc
	var err error
	// The port was free a moment ago; after an outage it may still be
	// lingering for a few hundred milliseconds, so retry a bind failure.
	for attempt := 0; ; attempt++ {
		p, err = startProc("kube-apiserver", logName, c.apiBin, c.apiArgs...)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.api = p
		c.mu.Unlock()
		err = c.waitHTTP(ctx, p, c.URL+"/readyz", BearerClient(c.CAPEM, c.adminToken, nil))
		if err == nil || attempt == 2 || !p.Exited() || !strings.Contains(p.LogTail(logTail), "address already in use") {
			break
		}
	}
	if err != nil {
		return err
	}
	c.log.Debug("kube-apiserver ready", "url", c.URL, "pid", p.PID())
	return nil
}

// BearerClient is an HTTPS client for an API server's own endpoints
// (/readyz): it trusts only caPEM, sends token as a bearer token, keeps no
// connection alive, gives up after 5s and dials with dial (nil: the default
// dialer).
func BearerClient(caPEM []byte, token string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &bearer{token: token, rt: &http.Transport{
			DialContext:       dial,
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			DisableKeepAlives: true,
		}},
	}
}

type bearer struct {
	token string
	rt    http.RoundTripper
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.rt.RoundTrip(r)
}

// waitHTTP polls url until it answers 200, the process exits, ctx ends or the
// start timeout passes; a process not ready in time is stopped. The process
// is external: polling its health endpoint is the only readiness signal it
// offers.
func (c *Cluster) waitHTTP(ctx context.Context, p *proc.Proc, url string, client *http.Client) error {
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	}
	err := p.WaitReady(ctx, c.timeout, proc.HTTPOK(client, url))
	if err != nil && !p.Exited() {
		p.Stop(5 * time.Second)
	}
	return err
}

// Stop kills the API server and etcd by PID, waits for them, and removes the
// cluster directory. Safe to call more than once.
func (c *Cluster) Stop() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.stopped = true
	api, etcd := c.api, c.etcd
	c.api, c.etcd = nil, nil
	c.mu.Unlock()
	if api != nil {
		api.Stop(10 * time.Second)
	}
	if etcd != nil {
		etcd.Stop(10 * time.Second)
	}
	if c.Dir != "" && os.Getenv("PODSTAMP_KEEP_CLUSTER_DIR") == "" {
		os.RemoveAll(c.Dir)
	}
}

// WriteKubeconfig writes a kubeconfig for server (""= c.URL) authenticating
// with a bearer token, trusting the cluster's CA.
func (c *Cluster) WriteKubeconfig(path, server, token string) error {
	if server == "" {
		server = c.URL
	}
	return WriteTokenKubeconfig(path, "e2e", server, c.CAPEM, token)
}

// WriteTokenKubeconfig writes a kubeconfig (0600) whose cluster and context
// are called name: server, trusting caPEM, authenticating with a bearer token.
func WriteTokenKubeconfig(path, name, server string, caPEM []byte, token string) error {
	// Written by hand rather than with clientcmd, which would pull in more
	// dependencies than a kubeconfig needs.
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster:
    server: %[2]q
    certificate-authority-data: %[3]s
users:
- name: user
  user:
    token: %[4]q
contexts:
- name: %[1]s
  context:
    cluster: %[1]s
    user: user
current-context: %[1]s
`, name, server, base64.StdEncoding.EncodeToString(caPEM), token)
	return os.WriteFile(path, []byte(kc), 0o600)
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// logTail is how much of a process's log the cluster looks at.
const logTail = 3000

// startProc starts etcd or kube-apiserver. Its log is appended to, so
// retries of a start share one log; it runs in a process group of its own, so
// a terminal's Ctrl-C reaches only the parent, which then stops it.
func startProc(name, logPath, bin string, args ...string) (*proc.Proc, error) {
	return proc.Start(name, logPath, proc.Options{Append: true, NewProcessGroup: true}, append([]string{bin}, args...)...)
}
