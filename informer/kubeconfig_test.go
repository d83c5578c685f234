package informer

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCA issues certificates for tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns the PEM certificate and key of cn, a server certificate
// for dnsNames if any, else a client certificate.
func (ca *testCA) issue(t *testing.T, cn string, dnsNames ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: dnsNames,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if len(dnsNames) > 0 {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// tlsAPIServer is an HTTP/2 TLS server on 127.0.0.1 whose certificate is
// for the name "kubernetes" only (so a client must be told that name), and
// which asks for a client certificate issued by ca.
func tlsAPIServer(t *testing.T, ca *testCA, h http.Handler) *httptest.Server {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, "apiserver", "kubernetes")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	ts := httptest.NewUnstartedServer(h)
	ts.EnableHTTP2 = true
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes the tests make fail on purpose
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

// connectProxy is an HTTP CONNECT proxy on 127.0.0.1 that records the
// addresses it was asked for.
func connectProxy(t *testing.T) (*httptest.Server, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var targets []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		mu.Lock()
		targets = append(targets, r.Host)
		mu.Unlock()
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			up.Close()
			return
		}
		_, _ = conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
		go func() {
			defer up.Close()
			_, _ = io.Copy(up, bufio.NewReader(buf))
		}()
		go func() {
			defer conn.Close()
			_, _ = io.Copy(conn, up)
		}()
	}))
	t.Cleanup(ts.Close)
	return ts, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(targets)
	}
}

// TestKubeconfigFieldsCovered: every field of client-go's kubeconfig types
// has a decision in kubeconfigFields (used, ignored for a stated reason, or
// refused), so a field client-go adds is noticed when it is upgraded.
// testdata/kubeconfig-fields.json lists those fields (the e2e module's
// TestInformerContractFiles keeps it equal to client-go's types).
func TestKubeconfigFieldsCovered(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/kubeconfig-fields.json")
	if err != nil {
		t.Fatal(err)
	}
	var clientGo map[string][]string
	if err := json.Unmarshal(b, &clientGo); err != nil {
		t.Fatal(err)
	}
	if len(clientGo) != len(kubeconfigFields) {
		t.Errorf("client-go's kubeconfig has parts %v, kubeconfigFields %d", slices.Sorted(maps.Keys(clientGo)), len(kubeconfigFields))
	}
	for what, names := range clientGo {
		for _, name := range names {
			if _, ok := kubeconfigFields[what][name]; !ok {
				t.Errorf("%s field %q of client-go's kubeconfig has no decision in kubeconfigFields", what, name)
			}
		}
		for name := range kubeconfigFields[what] {
			if !slices.Contains(names, name) {
				t.Errorf("kubeconfigFields[%s] lists %q, which client-go's kubeconfig does not have", what, name)
			}
		}
	}
}

// TestKubeconfigRefusals: fields podstamp does not implement, unknown
// fields and contradictions are errors naming the field, never dropped.
func TestKubeconfigRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "ca.pem", "CA")
	writeFile(t, dir, "token", "tok")
	const head = "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
	cluster := func(fields string) string {
		return head + "users: [{name: u, user: {token: t}}]\nclusters: [{name: k, cluster: {server: \"https://k\", " + fields + "}}]\n"
	}
	user := func(fields string) string {
		return head + "clusters: [{name: k, cluster: {server: \"https://k\"}}]\nusers: [{name: u, user: {" + fields + "}}]\n"
	}
	for name, tc := range map[string]struct{ body, want string }{
		"exec":                 {user("exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}"), `exec: credential plugins`},
		"auth-provider":        {user("auth-provider: {name: gcp}"), `auth-provider: credential plugins`},
		"unknown user field":   {user("token: t, tokn: x"), `field "tokn"`},
		"unknown cluster":      {cluster("certificate-authority-dat: x"), `field "certificate-authority-dat"`},
		"unknown top level":    {user("token: t") + "users-extra: 1\n", `field "users-extra"`},
		"as-uid without as":    {user("token: t, as-uid: \"1\""), "as-uid, as-groups or as-user-extra without as"},
		"as-groups without as": {user("token: t, as-groups: [admins]"), "without as"},
		"insecure with CA file": {cluster("insecure-skip-tls-verify: true, certificate-authority: ca.pem"),
			"insecure-skip-tls-verify is set with a certificate-authority"},
		"insecure with CA data": {cluster("insecure-skip-tls-verify: true, certificate-authority-data: Q0E="),
			"insecure-skip-tls-verify is set with a certificate-authority"},
		"CA file and data":     {cluster("certificate-authority: ca.pem, certificate-authority-data: Q0E="), "certificate-authority and certificate-authority-data are both set"},
		"cert file and data":   {user("client-certificate: ca.pem, client-certificate-data: Q0E=, client-key-data: Q0E="), "client-certificate and client-certificate-data are both set"},
		"key file and data":    {user("client-certificate-data: Q0E=, client-key: ca.pem, client-key-data: Q0E="), "client-key and client-key-data are both set"},
		"cert without key":     {user("client-certificate-data: Q0E="), "needs both the certificate and its key"},
		"token and tokenFile":  {user("token: t, tokenFile: token"), "token and tokenFile are both set"},
		"token and basic auth": {user("token: t, username: a, password: b"), "token or tokenFile and username/password are both set"},
		"missing user":         {head + "clusters: [{name: k, cluster: {server: \"https://k\"}}]\nusers: [{name: v, user: {token: t}}]\n", `user "u" of context "c" not found`},
		"two clusters named k": {head + "users: [{name: u, user: {token: t}}]\nclusters: [{name: k, cluster: {server: \"https://k\"}}, {name: k, cluster: {server: \"https://evil\"}}]\n", `2 clusters are named "k"`},
		"proxy scheme":         {cluster("proxy-url: \"ftp://proxy:21\""), "proxy URL"},
		"missing tokenFile":    {user("tokenFile: nope"), "tokenFile"},
		"missing cert file":    {user("client-certificate: nope.pem, client-key: ca.pem"), "client-certificate"},
	} {
		_, err := LoadKubeconfig(writeFile(t, dir, "config", tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one with %q", name, err, tc.want)
		}
	}
	// Fields that change neither identity nor trust are accepted, as are
	// plugins of users the current context does not use.
	ok := head + `clusters: [{name: k, cluster: {server: "https://k", extensions: [{name: x, extension: {a: 1}}]}}]
users:
- {name: u, user: {token: t, extensions: [{name: x, extension: {}}]}}
- {name: other, user: {exec: {command: aws}}}
preferences: {colors: true}
extensions: []
kind: Config
apiVersion: v1
`
	ok = strings.Replace(ok, "context: {cluster: k, user: u}", "context: {cluster: k, user: u, namespace: team, extensions: []}", 1)
	cfg, err := LoadKubeconfig(writeFile(t, dir, "config", ok))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BearerToken != "t" || cfg.Host != "https://k" {
		t.Errorf("config %+v", cfg)
	}
	// NewAPI refuses the same contradiction given directly.
	if _, err := NewAPI(&RESTConfig{Host: "https://k", Insecure: true, CAData: newTestCA(t).pem}); err == nil ||
		!strings.Contains(err.Error(), "insecure") {
		t.Errorf("NewAPI with a CA and insecure: %v", err)
	}
}

// TestKubeconfigImplemented: a kubeconfig using every implemented field
// reaches a TLS API server as it says: through its proxy, verifying the
// server as tls-server-name with its CA, presenting its client certificate
// (files relative to the kubeconfig), with its token, impersonating its
// user, groups, UID and extras, and without asking for compression.
func TestKubeconfigImplemented(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	type seen struct {
		cn     string
		header http.Header
	}
	var mu sync.Mutex
	var got []seen
	ts := tlsAPIServer(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{header: r.Header.Clone()}
		if len(r.TLS.PeerCertificates) > 0 {
			s.cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		mu.Lock()
		got = append(got, s)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"metadata":{"name":"n","uid":"u"}}`)
	}))
	proxy, targets := connectProxy(t)
	dir := t.TempDir()
	certPEM, keyPEM := ca.issue(t, "podstamp-client")
	writeFile(t, dir, "ca.pem", string(ca.pem))
	writeFile(t, dir, "client.pem", string(certPEM))
	writeFile(t, dir, "client-key.pem", string(keyPEM))
	writeFile(t, dir, "token", "tok\n")
	kc := writeFile(t, dir, "config", `apiVersion: v1
kind: Config
current-context: c
clusters:
- name: k
  cluster:
    server: `+ts.URL+`
    certificate-authority: ca.pem
    tls-server-name: kubernetes
    proxy-url: `+proxy.URL+`
    disable-compression: true
contexts:
- {name: c, context: {cluster: k, user: u}}
users:
- name: u
  user:
    tokenFile: token
    client-certificate: client.pem
    client-key: client-key.pem
    as: jane
    as-uid: "1234"
    as-groups: [devs, ops]
    as-user-extra:
      example.com/scopes: [read, "write all"]
`)
	cfg, err := LoadKubeconfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CertFile != filepath.Join(dir, "client.pem") || cfg.KeyFile != filepath.Join(dir, "client-key.pem") {
		t.Errorf("certificate files %q %q", cfg.CertFile, cfg.KeyFile)
	}
	api, err := NewAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.GetNode(t.Context(), "n"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("%d requests", len(got))
	}
	h := got[0].header
	for k, want := range map[string][]string{
		"Authorization":                          {"Bearer tok"},
		"Impersonate-User":                       {"jane"},
		"Impersonate-Uid":                        {"1234"},
		"Impersonate-Group":                      {"devs", "ops"},
		"Impersonate-Extra-Example.com%2fscopes": {"read", "write all"},
		"Accept-Encoding":                        nil,
	} {
		if !slices.Equal(h.Values(k), want) {
			t.Errorf("%s: %q, want %q (all headers %v)", k, h.Values(k), want, h)
		}
	}
	if got[0].cn != "podstamp-client" {
		t.Errorf("client certificate %q", got[0].cn)
	}
	if tg := targets(); len(tg) != 1 || tg[0] != ts.Listener.Addr().String() {
		t.Errorf("proxy asked for %q, want %s", tg, ts.Listener.Addr())
	}

	// Without tls-server-name the server's certificate (for "kubernetes")
	// does not match 127.0.0.1: refused. Without disable-compression gzip
	// is asked for.
	cfg.ServerName = ""
	api, err = NewAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.GetNode(t.Context(), "n"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without tls-server-name: %v, want a certificate error", err)
	}
	cfg.ServerName, cfg.DisableCompression = "kubernetes", false
	api, err = NewAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mu.Unlock()
	_, err = api.GetNode(t.Context(), "n")
	mu.Lock()
	if err != nil {
		t.Fatal(err)
	}
	if ae := got[len(got)-1].header.Get("Accept-Encoding"); ae != "gzip" {
		t.Errorf("Accept-Encoding %q with compression", ae)
	}
}

// unauthorized answers 401 as the API server does.
func unauthorized(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`)
}

// TestTokenFileReadOn401: a 401 makes the token file be read at once, not
// only after a minute, and the request is sent once more if the token
// changed; if it did not, the 401 is the answer (no retry loop).
func TestTokenFileReadOn401(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var sent []string
	want := "new"
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sent = append(sent, r.Header.Get("Authorization"))
		ok := r.Header.Get("Authorization") == "Bearer "+want
		mu.Unlock()
		if !ok {
			unauthorized(w)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"metadata":{"name":"n","uid":"u"}}`)
	}))
	t.Cleanup(ts.Close)
	dir := t.TempDir()
	tok := writeFile(t, dir, "token", "old")
	api, err := NewAPI(&RESTConfig{Host: ts.URL, BearerTokenFile: tok})
	if err != nil {
		t.Fatal(err)
	}
	_, err = api.GetNode(t.Context(), "n")
	if st, _ := statusOf(err); st.Code != http.StatusUnauthorized {
		t.Fatalf("with the old token: %v", err)
	}
	writeFile(t, dir, "token", "new\n") // rotated, long before the minute is up
	if _, err := api.GetNode(t.Context(), "n"); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if w := []string{"Bearer old", "Bearer old", "Bearer new"}; !slices.Equal(sent, w) {
		t.Errorf("sent %q, want %q", sent, w)
	}
}

// TestClientCertReadOn401: a 401 makes the client certificate files be
// read at once; a new certificate gets new connections (the server
// authenticates a connection once, at its handshake) and the request is
// sent once more with it.
func TestClientCertReadOn401(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	var mu sync.Mutex
	var seen []string
	want := "old"
	ts := tlsAPIServer(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn := ""
		if len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		mu.Lock()
		seen = append(seen, cn+" "+r.Proto)
		ok := cn == want
		mu.Unlock()
		if !ok {
			unauthorized(w)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"metadata":{"name":"n","uid":"u"}}`)
	}))
	dir := t.TempDir()
	write := func(cn string) {
		c, k := ca.issue(t, cn)
		writeFile(t, dir, "client.pem", string(c))
		writeFile(t, dir, "client-key.pem", string(k))
	}
	write("old")
	api, err := NewAPI(&RESTConfig{Host: ts.URL, ServerName: "kubernetes", CAData: ca.pem,
		CertFile: filepath.Join(dir, "client.pem"), KeyFile: filepath.Join(dir, "client-key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.GetNode(t.Context(), "n"); err != nil {
		t.Fatal(err)
	}
	// The certificate rotates; the server now wants the new one. The
	// HTTP/2 connection made with the old one is still open.
	write("new")
	mu.Lock()
	want = "new"
	mu.Unlock()
	if _, err := api.GetNode(t.Context(), "n"); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if w := []string{"old HTTP/2.0", "old HTTP/2.0", "new HTTP/2.0"}; !slices.Equal(seen, w) {
		t.Errorf("server saw %q, want %q", seen, w)
	}
}
