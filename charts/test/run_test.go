package charttest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podstamp/podstamp/e2e/cluster"
)

// buildPodstamp builds the podstamp binary of this repository.
func buildPodstamp(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "podstamp")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/podstamp")
	cmd.Dir = filepath.Dir(filepath.Dir(chartDir(t)))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/podstamp: %v\n%s", err, out)
	}
	return bin
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runUnderChart runs podstamp the way the rendered DaemonSet would: its
// arguments and environment (downward API and Secret values filled in, the
// listeners on 127.0.0.1), the rendered ConfigMap as --config, and a
// ServiceAccount token bound to the chart's RBAC. A pod of a Deployment on
// this node must reach the pod cache, with the workload UID when the config
// asks for it, and no API request may be forbidden (except the optional node
// read when the chart grants no node access).
func runUnderChart(ctx context.Context, t *testing.T, c *cluster.Cluster, bin string, o objects, token, podIP string, nodeGranted bool) {
	t.Helper()
	dir := t.TempDir()
	ns := o.DaemonSet.Namespace
	node := "node-" + ns
	ctr := container(t, o)

	// The Deployment and its pod on this node.
	dep, err := c.CreateDeployment(ctx, ns, "app", "5d4f8b7c9")
	if err != nil {
		t.Fatal(err)
	}
	pod, err := c.StartPod(ctx, cluster.Pod{Namespace: ns, Name: "app-1", NodeName: node, Owner: dep},
		cluster.PodStatus{IPs: []netip.Addr{netip.MustParseAddr(podIP)}, HostIP: netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}

	// Files the DaemonSet mounts under /etc/podstamp.
	root := filepath.Join(dir, "etc")
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("config.yaml", o.ConfigMap.Data["config.yaml"])
	certPEM, keyPEM := selfSigned(t)
	for _, v := range o.DaemonSet.Spec.Template.Spec.Volumes {
		if v.Secret == nil {
			continue
		}
		var mount string
		for _, m := range ctr.VolumeMounts {
			if m.Name == v.Name {
				mount = strings.TrimPrefix(m.MountPath, "/etc/podstamp/")
			}
		}
		for _, it := range v.Secret.Items {
			content := certPEM
			if strings.HasSuffix(it.Path, ".key") {
				content = keyPEM
			}
			write(filepath.Join(mount, it.Path), content)
		}
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := c.WriteKubeconfig(kubeconfig, c.URL, token); err != nil {
		t.Fatal(err)
	}

	// Environment: literal values and what the kubelet would fill in.
	vars := map[string]string{"PATH": "/usr/bin:/bin"}
	var env []string
	for _, e := range ctr.Env {
		val := e.Value
		switch {
		case e.ValueFrom == nil:
		case e.ValueFrom.FieldRef != nil:
			var ok bool
			val, ok = map[string]string{"spec.nodeName": node, "status.hostIP": "127.0.0.1", "status.hostIPs": "127.0.0.1", "metadata.namespace": ns}[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				t.Fatalf("env %s: no test value for field %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		case e.ValueFrom.SecretKeyRef != nil:
			val = "secret-" + e.ValueFrom.SecretKeyRef.Key
		default:
			t.Fatalf("env %s: unsupported source %+v", e.Name, e.ValueFrom)
		}
		val = varRef.ReplaceAllStringFunc(val, func(m string) string { return vars[varRef.FindStringSubmatch(m)[1]] })
		vars[e.Name] = val
		env = append(env, e.Name+"="+val)
	}
	env = append(env, "PATH=/usr/bin:/bin")
	var args []string
	var admin, debug string
	for _, a := range ctr.Args {
		a = varRef.ReplaceAllStringFunc(a, func(m string) string { return vars[varRef.FindStringSubmatch(m)[1]] })
		a = strings.ReplaceAll(a, "/etc/podstamp/", root+"/")
		for _, f := range []string{"--grpc-listen=:", "--http-listen=:", "--admin-listen=:"} {
			if strings.HasPrefix(a, f) { // service mode listens on every address; keep to loopback here
				a = strings.Replace(a, "=:", "=127.0.0.1:", 1)
			}
		}
		if v, ok := strings.CutPrefix(a, "--admin-listen="); ok {
			admin = v
		}
		if v, ok := strings.CutPrefix(a, "--debug-listen="); ok {
			debug = v
		}
		args = append(args, a)
	}
	args = append(args, "--kubeconfig="+kubeconfig)
	if admin == "" || debug == "" {
		t.Fatalf("no --admin-listen or --debug-listen in %v", args)
	}

	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("podstamp %s\n%s", strings.Join(args, " "), logs.String())
		}
	}()

	// Ready, then the pod is in the cache with what the config asks for.
	deadline := time.Now().Add(60 * time.Second)
	get := func(path string) (int, []byte) {
		base := "http://" + admin
		if strings.HasPrefix(path, "/debug/") {
			base = "http://" + debug // never on the admin listener
		}
		resp, err := http.Get(base + path)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	var last string
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("podstamp exited: %v", err)
		default:
		}
		code, body := get("/debug/pods?ip=" + podIP)
		var res struct {
			Result string `json:"result"`
			Pod    *struct {
				Name      string `json:"name"`
				Workloads []struct {
					Kind string `json:"kind"`
					Name string `json:"name"`
					UID  string `json:"uid"`
				} `json:"workloads"`
			} `json:"pod"`
		}
		if code == http.StatusOK && json.Unmarshal(body, &res) == nil && res.Pod != nil && res.Pod.Name == pod.Name {
			// Ready once the cache synced and the node was read: the pod
			// may show up a moment before.
			rc, _ := get("/readyz")
			if rc != http.StatusOK && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond) // polling a separate process; no event to await
				continue
			}
			if rc != http.StatusOK {
				t.Errorf("/readyz %d with the pod cache populated", rc)
			}
			if lc, _ := get("/livez"); lc != http.StatusOK {
				t.Errorf("/livez %d", lc)
			}
			wantUID := strings.Contains(o.ConfigMap.Data["config.yaml"], "k8s.deployment.uid")
			var found, pending bool
			for _, w := range res.Pod.Workloads {
				if w.Kind == "deployment" && w.Name == dep.Name {
					found = true
					// Metadata is read off the watch loop: the pod is
					// published first, its workload UIDs once read.
					pending = wantUID && w.UID == "" && time.Now().Before(deadline)
					if wantUID && !pending && w.UID != string(dep.DeploymentUID) {
						t.Errorf("deployment UID %q, want %q (read through the ReplicaSet under the chart's RBAC)", w.UID, dep.DeploymentUID)
					}
				}
			}
			if !found {
				t.Errorf("pod's workloads %+v lack deployment %s", res.Pod.Workloads, dep.Name)
			}
			if !pending {
				break
			}
		}
		last = fmt.Sprintf("%d %s", code, body)
		if time.Now().After(deadline) {
			t.Fatalf("pod %s never showed up in /debug/pods; last answer: %s", pod.Name, last)
		}
		time.Sleep(100 * time.Millisecond) // polling a separate process; no event to await
	}

	for _, line := range strings.Split(logs.String(), "\n") {
		l := strings.ToLower(line)
		if !strings.Contains(l, "forbidden") {
			continue
		}
		if !nodeGranted && (strings.Contains(l, `"kind":"node"`) || strings.Contains(l, "kind=node")) {
			continue // the optional node read for the SNAT diagnosis
		}
		t.Errorf("podstamp was denied something under the chart's RBAC: %s", line)
	}
}

// selfSigned returns a throwaway certificate and key (PEM).
func selfSigned(t *testing.T) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "podstamp-chart-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
}
