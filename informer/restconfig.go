package informer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"
)

// RESTConfig says how to reach and authenticate to an API server:
// InClusterConfig reads it from the pod's service account, LoadKubeconfig
// from a kubeconfig file.
type RESTConfig struct {
	Host string // https://host[:port]

	// Credentials: a bearer token (BearerTokenFile is read again every
	// minute, as service account tokens rotate), basic auth, or a client
	// certificate.
	BearerToken        string
	BearerTokenFile    string
	Username, Password string
	CertData, KeyData  []byte // PEM

	CAData     []byte // PEM; none: the system's roots
	Insecure   bool   // skip verifying the server's certificate
	ServerName string // name to verify the certificate against

	UserAgent string
	QPS       float32 // requests per second; 0: unlimited
	Burst     int
}

// ErrNotInCluster is InClusterConfig's error outside a pod.
var ErrNotInCluster = errors.New("not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set")

// Where a pod finds its service account.
var serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// InClusterConfig is the configuration of a pod: the API server from
// KUBERNETES_SERVICE_HOST/PORT, the service account's token and CA.
func InClusterConfig() (*RESTConfig, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, ErrNotInCluster
	}
	tokenFile := filepath.Join(serviceAccountDir, "token")
	if _, err := os.ReadFile(tokenFile); err != nil {
		return nil, fmt.Errorf("service account token: %w", err)
	}
	ca, err := os.ReadFile(filepath.Join(serviceAccountDir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("service account CA: %w", err)
	}
	return &RESTConfig{
		Host:            "https://" + net.JoinHostPort(host, port),
		BearerTokenFile: tokenFile,
		CAData:          ca,
	}, nil
}

// kubeconfig is the part of a kubeconfig file LoadKubeconfig reads.
type kubeconfig struct {
	CurrentContext string `json:"current-context"`
	Clusters       []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server                   string `json:"server"`
			CertificateAuthority     string `json:"certificate-authority"`
			CertificateAuthorityData []byte `json:"certificate-authority-data"`
			InsecureSkipTLSVerify    bool   `json:"insecure-skip-tls-verify"`
			TLSServerName            string `json:"tls-server-name"`
			ProxyURL                 string `json:"proxy-url"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			ClientCertificate     string          `json:"client-certificate"`
			ClientCertificateData []byte          `json:"client-certificate-data"`
			ClientKey             string          `json:"client-key"`
			ClientKeyData         []byte          `json:"client-key-data"`
			Token                 string          `json:"token"`
			TokenFile             string          `json:"tokenFile"`
			Username              string          `json:"username"`
			Password              string          `json:"password"`
			Exec                  *map[string]any `json:"exec"`
			AuthProvider          *map[string]any `json:"auth-provider"`
		} `json:"user"`
	} `json:"users"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
}

// LoadKubeconfig reads the current context of a kubeconfig file: its
// cluster's server and CA, and its user's token, basic auth or client
// certificate. File paths in it are relative to the file. Credential
// plugins (exec, auth-provider) are not supported: podstamp runs in the
// cluster with its service account, and a kubeconfig is for tests and
// local runs.
func LoadKubeconfig(file string) (*RESTConfig, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if kc.CurrentContext == "" {
		return nil, fmt.Errorf("%s: no current-context", file)
	}
	dir := filepath.Dir(file)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	readData := func(data []byte, p, what string) ([]byte, error) {
		if len(data) > 0 || p == "" {
			return data, nil
		}
		d, err := os.ReadFile(rel(p))
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", file, what, err)
		}
		return d, nil
	}
	ctxIdx := -1
	for i, c := range kc.Contexts {
		if c.Name == kc.CurrentContext {
			ctxIdx = i
		}
	}
	if ctxIdx < 0 {
		return nil, fmt.Errorf("%s: context %q not found", file, kc.CurrentContext)
	}
	cx := kc.Contexts[ctxIdx].Context
	cfg := &RESTConfig{}
	found := false
	for _, c := range kc.Clusters {
		if c.Name != cx.Cluster {
			continue
		}
		found = true
		cl := c.Cluster
		if cl.ProxyURL != "" {
			return nil, fmt.Errorf("%s: cluster %q: proxy-url is not supported", file, c.Name)
		}
		cfg.Host, cfg.Insecure, cfg.ServerName = cl.Server, cl.InsecureSkipTLSVerify, cl.TLSServerName
		if cfg.CAData, err = readData(cl.CertificateAuthorityData, cl.CertificateAuthority, "certificate-authority"); err != nil {
			return nil, err
		}
	}
	if !found {
		return nil, fmt.Errorf("%s: cluster %q of context %q not found", file, cx.Cluster, kc.CurrentContext)
	}
	if cfg.Host == "" {
		return nil, fmt.Errorf("%s: cluster %q has no server", file, cx.Cluster)
	}
	for _, u := range kc.Users {
		if u.Name != cx.User {
			continue
		}
		us := u.User
		if us.Exec != nil || us.AuthProvider != nil {
			return nil, fmt.Errorf("%s: user %q: credential plugins (exec, auth-provider) are not supported; use a token or a client certificate", file, u.Name)
		}
		cfg.BearerToken, cfg.BearerTokenFile = us.Token, rel(us.TokenFile)
		cfg.Username, cfg.Password = us.Username, us.Password
		if cfg.CertData, err = readData(us.ClientCertificateData, us.ClientCertificate, "client-certificate"); err != nil {
			return nil, err
		}
		if cfg.KeyData, err = readData(us.ClientKeyData, us.ClientKey, "client-key"); err != nil {
			return nil, err
		}
	}
	if !strings.Contains(cfg.Host, "://") {
		cfg.Host = "https://" + cfg.Host
	}
	return cfg, nil
}

// transport is the HTTP transport for c: TLS as configured, HTTP/2, and
// the credentials on every request.
func (c *RESTConfig) transport() (http.RoundTripper, error) {
	tc := &tls.Config{InsecureSkipVerify: c.Insecure, ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
	if len(c.CAData) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(c.CAData) {
			return nil, errors.New("no certificate in the CA data")
		}
		tc.RootCAs = pool
	}
	if len(c.CertData) > 0 || len(c.KeyData) > 0 {
		cert, err := tls.X509KeyPair(c.CertData, c.KeyData)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	t := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		// A watch can be quiet for minutes: ping an HTTP/2 connection that
		// has been silent for 30s and drop it if no answer comes in 15s, so
		// a dead API server or path is noticed (client-go does the same).
		HTTP2: &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second},
	}
	var rt http.RoundTripper = t
	switch {
	case c.BearerToken != "" || c.BearerTokenFile != "":
		rt = &bearerAuth{next: t, token: c.BearerToken, file: c.BearerTokenFile}
	case c.Username != "":
		rt = &basicAuth{next: t, user: c.Username, pass: c.Password}
	}
	return rt, nil
}

// bearerAuth adds the token to every request. A token file is read again
// once a minute; if it cannot be read, the last token stays in use.
type bearerAuth struct {
	next  http.RoundTripper
	file  string
	mu    sync.Mutex
	token string
	read  time.Time
}

func (b *bearerAuth) current() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file != "" && time.Since(b.read) > time.Minute {
		if t, err := os.ReadFile(b.file); err == nil {
			b.token = strings.TrimSpace(string(t))
		}
		b.read = time.Now()
	}
	return b.token
}

func (b *bearerAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	tok := b.current()
	if tok == "" || r.Header.Get("Authorization") != "" {
		return b.next.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return b.next.RoundTrip(r)
}

type basicAuth struct {
	next       http.RoundTripper
	user, pass string
}

func (b *basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.pass)
	return b.next.RoundTrip(r)
}
