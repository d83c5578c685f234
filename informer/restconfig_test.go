package informer

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLoadKubeconfig reads the current context's cluster and user, with
// file paths relative to the kubeconfig, and refuses what it cannot do.
func TestLoadKubeconfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "ca.pem", "CA PEM")
	writeFile(t, dir, "token", "file-token")
	kc := writeFile(t, dir, "config", `apiVersion: v1
kind: Config
current-context: work
clusters:
- name: other
  cluster: {server: "https://other:6443"}
- name: prod
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority: ca.pem
    tls-server-name: kubernetes
contexts:
- name: home
  context: {cluster: other, user: nobody}
- name: work
  context: {cluster: prod, user: admin}
users:
- name: admin
  user:
    tokenFile: token
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
`)
	cfg, err := LoadKubeconfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://10.0.0.1:6443" || string(cfg.CAData) != "CA PEM" || cfg.ServerName != "kubernetes" ||
		cfg.BearerTokenFile != filepath.Join(dir, "token") || string(cfg.CertData) != "CERT" || string(cfg.KeyData) != "KEY" {
		t.Errorf("config %+v", cfg)
	}

	for name, tc := range map[string]struct{ body, want string }{
		"exec": {`current-context: c
clusters: [{name: k, cluster: {server: "https://k"}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {exec: {command: aws}}}]`, "credential plugins"},
		"no context": {`clusters: [{name: k, cluster: {server: "https://k"}}]`, "no current-context"},
		"unknown context": {`current-context: x
contexts: [{name: c, context: {cluster: k}}]`, `context "x" not found`},
		"unknown cluster": {`current-context: c
contexts: [{name: c, context: {cluster: k}}]`, `cluster "k" of context "c" not found`},
		"missing CA file": {`current-context: c
clusters: [{name: k, cluster: {server: "https://k", certificate-authority: nope.pem}}]
contexts: [{name: c, context: {cluster: k}}]`, "certificate-authority"},
		"not YAML": {"{{", "config"},
	} {
		_, err := LoadKubeconfig(writeFile(t, dir, "config", tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one with %q", name, err, tc.want)
		}
	}
	if _, err := LoadKubeconfig(filepath.Join(dir, "absent")); err == nil {
		t.Error("a missing kubeconfig was accepted")
	}
}

// TestInClusterConfig reads the service account of a pod.
func TestInClusterConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if _, err := inClusterConfig(getenv, dir); err != ErrNotInCluster {
		t.Errorf("outside a pod: %v", err)
	}
	env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"] = "fd00::1", "443"
	if _, err := inClusterConfig(getenv, dir); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("without a token: %v", err)
	}
	writeFile(t, dir, "token", "sa-token")
	writeFile(t, dir, "ca.crt", "CA")
	cfg, err := inClusterConfig(getenv, dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://[fd00::1]:443" || cfg.BearerTokenFile != filepath.Join(dir, "token") || string(cfg.CAData) != "CA" {
		t.Errorf("config %+v", cfg)
	}
}

// TestCredentialsSent: the bearer token (from a file, read again when it is
// older than a minute), basic auth and the user agent reach the server.
func TestCredentialsSent(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization")+" "+r.Header.Get("User-Agent"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"metadata":{"name":"n","uid":"u"}}`))
	}))
	t.Cleanup(ts.Close)
	dir := t.TempDir()
	tok := writeFile(t, dir, "token", "one\n")

	api, err := NewAPI(&RESTConfig{Host: ts.URL, BearerTokenFile: tok, UserAgent: "podstamp/x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.GetNode(t.Context(), "n"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "token", "two")
	// Within the minute the token read first stays in use; then the new
	// one is read.
	if _, err := api.GetNode(t.Context(), "n"); err != nil {
		t.Fatal(err)
	}
	ba := api.(*restAPI).client.Transport.(*authTransport)
	ba.mu.Lock()
	ba.read = ba.read.Add(-2 * 60e9)
	ba.mu.Unlock()
	if _, err := api.GetNode(t.Context(), "n"); err != nil {
		t.Fatal(err)
	}
	basic, err := NewAPI(&RESTConfig{Host: ts.URL, Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := basic.GetNode(t.Context(), "n"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"Bearer one podstamp/x", "Bearer one podstamp/x", "Bearer two podstamp/x", "Basic dTpw podstamp"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("requests\n%q\nwant\n%q", got, want)
	}

	for _, bad := range []string{"", "10.0.0.1:6443", "ftp://x"} {
		if _, err := NewAPI(&RESTConfig{Host: bad}); err == nil {
			t.Errorf("host %q accepted", bad)
		}
	}
	if _, err := NewAPI(&RESTConfig{Host: ts.URL, CAData: []byte("not PEM")}); err == nil {
		t.Error("a CA without certificates was accepted")
	}
}
