package informer

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"
)

// RESTConfig says how to reach and authenticate to an API server:
// InClusterConfig reads it from the pod's service account, LoadKubeconfig
// from a kubeconfig file. NewAPI refuses a RESTConfig whose fields
// contradict each other (see validate) rather than guessing which one wins.
type RESTConfig struct {
	Host string // https://host[:port][/path]

	// Credentials: a bearer token or basic auth, and/or a client
	// certificate. BearerTokenFile, CertFile and KeyFile are read again
	// every minute, and at once when the server answers 401 Unauthorized
	// (the request is then sent once more if they changed), as service
	// account tokens and certificates rotate.
	BearerToken        string
	BearerTokenFile    string
	Username, Password string
	CertData, KeyData  []byte // PEM
	CertFile, KeyFile  string // PEM files, instead of CertData, KeyData

	// Impersonate makes every request act as another user (the
	// kubeconfig's as, as-uid, as-groups and as-user-extra).
	Impersonate Impersonation

	CAData     []byte // PEM; none: the system's roots
	Insecure   bool   // skip verifying the server's certificate (refused with CAData)
	ServerName string // name to verify the certificate against

	// ProxyURL is an http, https or socks5 proxy for every request; empty:
	// HTTPS_PROXY, HTTP_PROXY and NO_PROXY of the environment.
	ProxyURL string
	// DisableCompression stops asking for gzip-compressed answers.
	DisableCompression bool

	UserAgent string
	QPS       float32 // requests per second; 0: unlimited
	Burst     int
}

// Impersonation is the identity requests act as (Impersonate-User,
// Impersonate-Uid, Impersonate-Group and Impersonate-Extra-* headers).
type Impersonation struct {
	UserName string
	UID      string
	Groups   []string
	Extra    map[string][]string
}

func (i Impersonation) set() bool {
	return i.UserName != "" || i.UID != "" || len(i.Groups) > 0 || len(i.Extra) > 0
}

// validate refuses what client-go refuses: fields that contradict each other.
func (c *RESTConfig) validate() error {
	var errs []error
	if c.Insecure && len(c.CAData) > 0 {
		errs = append(errs, errors.New("a CA and insecure (skip TLS verification) are both set; specifying a root certificate with the insecure flag is not allowed"))
	}
	if len(c.CertData) > 0 && c.CertFile != "" {
		errs = append(errs, errors.New("the client certificate is given both as data and as a file"))
	}
	if len(c.KeyData) > 0 && c.KeyFile != "" {
		errs = append(errs, errors.New("the client key is given both as data and as a file"))
	}
	if hasCert, hasKey := len(c.CertData) > 0 || c.CertFile != "", len(c.KeyData) > 0 || c.KeyFile != ""; hasCert != hasKey {
		errs = append(errs, errors.New("a client certificate needs both the certificate and its key"))
	}
	if c.BearerToken != "" && c.BearerTokenFile != "" {
		errs = append(errs, errors.New("a bearer token and a bearer token file are both set; keep one"))
	}
	if (c.BearerToken != "" || c.BearerTokenFile != "") && (c.Username != "" || c.Password != "") {
		errs = append(errs, errors.New("a bearer token and basic auth are both set; only one is allowed"))
	}
	if c.Password != "" && c.Username == "" {
		errs = append(errs, errors.New("a password without a username"))
	}
	if c.Impersonate.set() && c.Impersonate.UserName == "" {
		errs = append(errs, errors.New("impersonating a UID, groups or user extra needs a user to impersonate"))
	}
	if c.ProxyURL != "" {
		u, err := url.Parse(c.ProxyURL)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("proxy URL: %w", err))
		case u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5" && u.Scheme != "socks5h" || u.Host == "":
			errs = append(errs, fmt.Errorf("proxy URL %q: want http, https or socks5://host[:port]", c.ProxyURL))
		}
	}
	return errors.Join(errs...)
}

// ErrNotInCluster is InClusterConfig's error outside a pod.
var ErrNotInCluster = errors.New("not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set")

// serviceAccountDir is where a pod finds its service account.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// InClusterConfig is the configuration of a pod: the API server from
// KUBERNETES_SERVICE_HOST/PORT, the service account's token and CA.
func InClusterConfig() (*RESTConfig, error) {
	return inClusterConfig(os.Getenv, serviceAccountDir)
}

// inClusterConfig is InClusterConfig with the environment read by getenv
// and the service account in saDir.
func inClusterConfig(getenv func(string) string, saDir string) (*RESTConfig, error) {
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, ErrNotInCluster
	}
	tokenFile := filepath.Join(saDir, "token")
	if _, err := os.ReadFile(tokenFile); err != nil {
		return nil, fmt.Errorf("service account token: %w", err)
	}
	ca, err := os.ReadFile(filepath.Join(saDir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("service account CA: %w", err)
	}
	return &RESTConfig{
		Host:            "https://" + net.JoinHostPort(host, port),
		BearerTokenFile: tokenFile,
		CAData:          ca,
	}, nil
}

// kubeconfigFile is a kubeconfig file (client-go's clientcmd/api/v1
// Config). The entries are kept raw until the current context picks its
// cluster and user, whose fields are then checked one by one.
type kubeconfigFile struct {
	CurrentContext string       `json:"current-context"`
	Clusters       []namedEntry `json:"clusters"`
	Users          []namedEntry `json:"users"`
	Contexts       []namedEntry `json:"contexts"`
}

type namedEntry struct {
	Name    string          `json:"name"`
	Cluster json.RawMessage `json:"cluster"`
	User    json.RawMessage `json:"user"`
	Context json.RawMessage `json:"context"`
}

type kcCluster struct {
	Server                   string `json:"server"`
	TLSServerName            string `json:"tls-server-name"`
	InsecureSkipTLSVerify    bool   `json:"insecure-skip-tls-verify"`
	CertificateAuthority     string `json:"certificate-authority"`
	CertificateAuthorityData []byte `json:"certificate-authority-data"`
	ProxyURL                 string `json:"proxy-url"`
	DisableCompression       bool   `json:"disable-compression"`
}

type kcUser struct {
	ClientCertificate     string              `json:"client-certificate"`
	ClientCertificateData []byte              `json:"client-certificate-data"`
	ClientKey             string              `json:"client-key"`
	ClientKeyData         []byte              `json:"client-key-data"`
	Token                 string              `json:"token"`
	TokenFile             string              `json:"tokenFile"`
	As                    string              `json:"as"`
	AsUID                 string              `json:"as-uid"`
	AsGroups              []string            `json:"as-groups"`
	AsUserExtra           map[string][]string `json:"as-user-extra"`
	Username              string              `json:"username"`
	Password              string              `json:"password"`
}

type kcContext struct {
	Cluster string `json:"cluster"`
	User    string `json:"user"`
}

// What LoadKubeconfig does with every field of the kubeconfig format
// (client-go's clientcmd/api/v1 types): "" is a field it implements, any
// other value why the field is ignored (it changes neither who podstamp
// is nor what it trusts) or, starting with "refused: ", why it is refused.
// A field not listed here, such as one a later format adds, is refused:
// podstamp cannot know what it would change.
const refused = "refused: "

var kubeconfigFields = map[string]map[string]string{
	"file": {
		"kind": "informational", "apiVersion": "informational", "preferences": "kubectl's display preferences",
		"clusters": "", "users": "", "contexts": "", "current-context": "",
		"extensions": "read by no client; kept for tools that write the file",
	},
	"cluster": {
		"server": "", "tls-server-name": "", "insecure-skip-tls-verify": "", "certificate-authority": "",
		"certificate-authority-data": "", "proxy-url": "", "disable-compression": "",
		"extensions": "cluster information for credential plugins, which are refused",
	},
	"user": {
		"client-certificate": "", "client-certificate-data": "", "client-key": "", "client-key-data": "",
		"token": "", "tokenFile": "", "as": "", "as-uid": "", "as-groups": "", "as-user-extra": "",
		"username": "", "password": "",
		"exec":          refused + "credential plugins (exec, auth-provider) are not supported; use a token or a client certificate",
		"auth-provider": refused + "credential plugins (exec, auth-provider) are not supported; use a token or a client certificate",
		"extensions":    "read by no client; kept for tools that write the file",
	},
	"context": {
		"cluster": "", "user": "",
		"namespace":  "podstamp reads pods of all namespaces",
		"extensions": "read by no client; kept for tools that write the file",
	},
}

// checkFields refuses the fields of one kubeconfig object (what: file,
// cluster, user or context) that LoadKubeconfig neither implements nor may
// ignore. A field set to null is absent.
func checkFields(raw json.RawMessage, what, name string) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return fmt.Errorf("%s %q: %w", what, name, err)
	}
	known := kubeconfigFields[what]
	where := fmt.Sprintf("%s %q", what, name)
	if what == "file" {
		where = "kubeconfig"
	}
	var errs []error
	for _, f := range slices.Sorted(maps.Keys(fields)) {
		if string(fields[f]) == "null" {
			continue
		}
		use, ok := known[f]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: field %q is not one podstamp knows; refusing to run without knowing what it changes", where, f))
		case strings.HasPrefix(use, refused):
			errs = append(errs, fmt.Errorf("%s: %s: %s", where, f, strings.TrimPrefix(use, refused)))
		}
	}
	return errors.Join(errs...)
}

// pick returns the raw object of the entry called name (of: whose it is,
// for errors); more than one entry with that name is an error, as is none.
func pick(entries []namedEntry, what, name, of string, obj func(namedEntry) json.RawMessage) (json.RawMessage, error) {
	var found []json.RawMessage
	for _, e := range entries {
		if e.Name == name {
			found = append(found, obj(e))
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%s %q%s not found", what, name, of)
	case 1:
		if err := checkFields(found[0], what, name); err != nil {
			return nil, err
		}
		return found[0], nil
	}
	return nil, fmt.Errorf("%d %ss are named %q%s", len(found), what, name, of)
}

// LoadKubeconfig reads the current context of a kubeconfig file: its
// cluster (server, CA, TLS server name, insecure-skip-tls-verify, proxy,
// compression) and its user (token or token file, basic auth, client
// certificate as data or files, impersonation). File paths in it are
// relative to the file; token and certificate files are read again as they
// rotate (see RESTConfig). Every field of the current context, its cluster
// and its user is either used or ignored because it changes neither who
// podstamp is nor what it trusts (kubeconfigFields); anything else is
// refused with an error naming the field: credential plugins (exec,
// auth-provider), fields of a later format, and contradictions client-go
// also refuses (a CA with insecure-skip-tls-verify, data and file of the
// same thing, a token with a token file or with basic auth). podstamp runs
// in the cluster with its service account; a kubeconfig is for tests and
// local runs.
func LoadKubeconfig(file string) (*RESTConfig, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	cfg, err := parseKubeconfig(b, filepath.Dir(file))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return cfg, nil
}

func parseKubeconfig(b []byte, dir string) (*RESTConfig, error) {
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, err
	}
	if err := checkFields(js, "file", ""); err != nil {
		return nil, err
	}
	var kc kubeconfigFile
	if err := json.Unmarshal(js, &kc); err != nil {
		return nil, err
	}
	if kc.CurrentContext == "" {
		return nil, errors.New("no current-context")
	}
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	readFile := func(p, what string) ([]byte, error) {
		d, err := os.ReadFile(rel(p))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return d, nil
	}

	raw, err := pick(kc.Contexts, "context", kc.CurrentContext, "", func(e namedEntry) json.RawMessage { return e.Context })
	if err != nil {
		return nil, err
	}
	var cx kcContext
	if err := unmarshalEntry(raw, &cx, "context", kc.CurrentContext); err != nil {
		return nil, err
	}

	of := fmt.Sprintf(" of context %q", kc.CurrentContext)
	raw, err = pick(kc.Clusters, "cluster", cx.Cluster, of, func(e namedEntry) json.RawMessage { return e.Cluster })
	if err != nil {
		return nil, err
	}
	var cl kcCluster
	if err := unmarshalEntry(raw, &cl, "cluster", cx.Cluster); err != nil {
		return nil, err
	}
	where := fmt.Sprintf("cluster %q", cx.Cluster)
	if cl.Server == "" {
		return nil, fmt.Errorf("%s has no server", where)
	}
	if cl.CertificateAuthority != "" && len(cl.CertificateAuthorityData) > 0 {
		return nil, fmt.Errorf("%s: certificate-authority and certificate-authority-data are both set; keep one", where)
	}
	if cl.InsecureSkipTLSVerify && (cl.CertificateAuthority != "" || len(cl.CertificateAuthorityData) > 0) {
		return nil, fmt.Errorf("%s: insecure-skip-tls-verify is set with a certificate-authority; specifying a root certificate with the insecure flag is not allowed", where)
	}
	cfg := &RESTConfig{Host: cl.Server, Insecure: cl.InsecureSkipTLSVerify, ServerName: cl.TLSServerName,
		CAData: cl.CertificateAuthorityData, ProxyURL: cl.ProxyURL, DisableCompression: cl.DisableCompression}
	if cl.CertificateAuthority != "" {
		if cfg.CAData, err = readFile(cl.CertificateAuthority, "certificate-authority"); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	if !strings.Contains(cfg.Host, "://") {
		cfg.Host = "https://" + cfg.Host
	}

	// No user: anonymous requests. A user that is named must exist: falling
	// back to anonymous would be a different identity.
	if cx.User != "" {
		raw, err = pick(kc.Users, "user", cx.User, of, func(e namedEntry) json.RawMessage { return e.User })
		if err != nil {
			return nil, err
		}
		var us kcUser
		if err := unmarshalEntry(raw, &us, "user", cx.User); err != nil {
			return nil, err
		}
		where := fmt.Sprintf("user %q", cx.User)
		for _, both := range []struct {
			a, b     string
			isA, isB bool
		}{
			{"client-certificate", "client-certificate-data", us.ClientCertificate != "", len(us.ClientCertificateData) > 0},
			{"client-key", "client-key-data", us.ClientKey != "", len(us.ClientKeyData) > 0},
			{"token", "tokenFile", us.Token != "", us.TokenFile != ""},
			{"token or tokenFile", "username/password", us.Token != "" || us.TokenFile != "", us.Username != "" || us.Password != ""},
		} {
			if both.isA && both.isB {
				return nil, fmt.Errorf("%s: %s and %s are both set; only one is allowed", where, both.a, both.b)
			}
		}
		if us.As == "" && (us.AsUID != "" || len(us.AsGroups) > 0 || len(us.AsUserExtra) > 0) {
			return nil, fmt.Errorf("%s: as-uid, as-groups or as-user-extra without as (the user to impersonate)", where)
		}
		cfg.BearerToken, cfg.BearerTokenFile = us.Token, rel(us.TokenFile)
		cfg.Username, cfg.Password = us.Username, us.Password
		cfg.CertData, cfg.CertFile = us.ClientCertificateData, rel(us.ClientCertificate)
		cfg.KeyData, cfg.KeyFile = us.ClientKeyData, rel(us.ClientKey)
		cfg.Impersonate = Impersonation{UserName: us.As, UID: us.AsUID, Groups: us.AsGroups, Extra: us.AsUserExtra}
		// Files are read now so that a missing one is an error at start.
		for _, f := range []struct{ p, what string }{{us.TokenFile, "tokenFile"}, {us.ClientCertificate, "client-certificate"}, {us.ClientKey, "client-key"}} {
			if f.p != "" {
				if _, err := readFile(f.p, f.what); err != nil {
					return nil, fmt.Errorf("%s: %w", where, err)
				}
			}
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func unmarshalEntry(raw json.RawMessage, v any, what, name string) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s %q: %w", what, name, err)
	}
	return nil
}

// transport is the HTTP transport for c: TLS as configured, HTTP/2, the
// proxy, and the credentials and impersonation on every request.
func (c *RESTConfig) transport() (http.RoundTripper, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	tc := &tls.Config{InsecureSkipVerify: c.Insecure, ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
	if len(c.CAData) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(c.CAData) {
			return nil, errors.New("no certificate in the CA data")
		}
		tc.RootCAs = pool
	}
	proxy := http.ProxyFromEnvironment
	if c.ProxyURL != "" {
		u, _ := url.Parse(c.ProxyURL) // checked by validate
		proxy = http.ProxyURL(u)
	}
	imp := c.Impersonate
	imp.Groups, imp.Extra = slices.Clone(imp.Groups), maps.Clone(imp.Extra)
	a := &authTransport{
		tls: tc, proxy: proxy, noGzip: c.DisableCompression,
		user: c.Username, pass: c.Password, imp: imp,
		tokenFile: c.BearerTokenFile, token: c.BearerToken,
		certData: c.CertData, keyData: c.KeyData, certFile: c.CertFile, keyFile: c.KeyFile,
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.reloadLocked(); err != nil {
		return nil, err
	}
	return a, nil
}

// credentialsRefresh is how often token and certificate files are read
// again without a 401 asking for it.
const credentialsRefresh = time.Minute

// authTransport sends every request with the credentials and impersonation
// of the configuration. Token and certificate files are read again every
// credentialsRefresh, and at once on a 401 answer: if they changed, the
// request is sent once more. A file that cannot be read, or a certificate
// and key that do not match (caught mid-rotation), leave the last good
// credentials in use. A new client certificate gets a new HTTP transport and
// every connection made with the old one is closed (watches on it end and
// are resumed), as the server authenticates a connection only once, at its
// TLS handshake.
type authTransport struct {
	tls        *tls.Config // without the client certificate
	proxy      func(*http.Request) (*url.URL, error)
	noGzip     bool
	user, pass string
	imp        Impersonation

	tokenFile         string
	certData, keyData []byte
	certFile, keyFile string

	mu      sync.Mutex
	token   string
	keyPair []byte // the PEM of the certificate and key rt presents
	rt      *http.Transport
	dialer  *trackingDialer
	read    time.Time // when the files were last read
	gen     uint64    // counts the transports, so a request knows whether its was replaced
}

func (a *authTransport) rotates() bool {
	return a.tokenFile != "" || a.certFile != "" || a.keyFile != ""
}

// reloadLocked reads the token and certificate files and, the first time or
// when the certificate changed, makes a new transport. Errors leave what was
// in use; at start (from transport) any error is fatal.
func (a *authTransport) reloadLocked() error {
	a.read = time.Now()
	var errs []error
	if a.tokenFile != "" {
		if b, err := os.ReadFile(a.tokenFile); err != nil {
			errs = append(errs, fmt.Errorf("token file: %w", err))
		} else {
			a.token = strings.TrimSpace(string(b))
		}
	}
	certPEM, keyPEM := a.certData, a.keyData
	readOK := true
	for _, f := range []struct {
		path, what string
		to         *[]byte
	}{{a.certFile, "client certificate", &certPEM}, {a.keyFile, "client key", &keyPEM}} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			errs, readOK = append(errs, fmt.Errorf("%s: %w", f.what, err)), false
			continue
		}
		*f.to = b
	}
	if pair := slices.Concat(certPEM, []byte{0}, keyPEM); readOK && (a.rt == nil || !bytes.Equal(pair, a.keyPair)) {
		var cert *tls.Certificate
		if len(certPEM) > 0 || len(keyPEM) > 0 {
			c, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				return errors.Join(append(errs, fmt.Errorf("client certificate: %w", err))...)
			}
			cert = &c
		}
		old, oldDialer := a.rt, a.dialer
		a.rt, a.dialer = a.newTransport(cert)
		a.keyPair = pair
		a.gen++
		if old != nil {
			old.CloseIdleConnections()
			oldDialer.closeAll()
		}
	}
	return errors.Join(errs...)
}

func (a *authTransport) newTransport(cert *tls.Certificate) (*http.Transport, *trackingDialer) {
	tc := a.tls.Clone()
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	d := &trackingDialer{Dialer: net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}, conns: map[*trackedConn]struct{}{}}
	return &http.Transport{
		Proxy:               a.proxy,
		DialContext:         d.DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  a.noGzip,
		// A watch can be quiet for minutes: ping an HTTP/2 connection that
		// has been silent for 30s and drop it if no answer comes in 15s, so
		// a dead API server or path is noticed (client-go does the same).
		HTTP2: &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second},
	}, d
}

// current returns the credentials to send, reading the files again when
// they are older than credentialsRefresh.
func (a *authTransport) current() (token string, rt *http.Transport, gen uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rotates() && time.Since(a.read) > credentialsRefresh {
		_ = a.reloadLocked() // the last good credentials stay in use
	}
	return a.token, a.rt, a.gen
}

func (a *authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, rt, gen := a.current()
	resp, err := rt.RoundTrip(a.authorize(r, tok))
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !a.rotates() || (r.Body != nil && r.Body != http.NoBody) {
		return resp, err
	}
	// The token or certificate may have rotated since they were read: read
	// them now, and if they changed (here or in another request meanwhile)
	// send the request once more with them.
	a.mu.Lock()
	_ = a.reloadLocked()
	changed := a.token != tok || a.gen != gen
	tok, rt = a.token, a.rt
	a.mu.Unlock()
	if !changed {
		return resp, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return rt.RoundTrip(a.authorize(r, tok))
}

// authorize returns r with the credentials and impersonation headers.
func (a *authTransport) authorize(r *http.Request, token string) *http.Request {
	r = r.Clone(r.Context())
	switch {
	case r.Header.Get("Authorization") != "":
	case token != "":
		r.Header.Set("Authorization", "Bearer "+token)
	case a.user != "":
		r.SetBasicAuth(a.user, a.pass)
	}
	if a.imp.UserName != "" {
		r.Header.Set("Impersonate-User", a.imp.UserName)
		if a.imp.UID != "" {
			r.Header.Set("Impersonate-Uid", a.imp.UID)
		}
		for _, g := range a.imp.Groups {
			r.Header.Add("Impersonate-Group", g)
		}
		for k, vs := range a.imp.Extra {
			for _, v := range vs {
				r.Header.Add("Impersonate-Extra-"+headerKeyEscape(k), v)
			}
		}
	}
	return r
}

// headerKeyEscape percent-encodes what may not appear in a header name, as
// client-go does for Impersonate-Extra-<key> (keys are often URLs).
func headerKeyEscape(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '%' || !isTokenChar(c) {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// trackingDialer remembers the connections it made, so that all of them can
// be closed when the client certificate changes.
type trackingDialer struct {
	net.Dialer
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func (d *trackingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.Dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, d: d}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		c.Close()
		return nil, errors.New("the client certificate changed while connecting")
	}
	d.conns[tc] = struct{}{}
	return tc, nil
}

func (d *trackingDialer) closeAll() {
	d.mu.Lock()
	conns := d.conns
	d.conns, d.closed = nil, true
	d.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	d *trackingDialer
}

func (c *trackedConn) Close() error {
	c.d.mu.Lock()
	delete(c.d.conns, c)
	c.d.mu.Unlock()
	return c.Conn.Close()
}
