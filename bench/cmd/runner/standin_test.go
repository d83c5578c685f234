package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestStandInKubelet: each node's /pods lists that node's pods only, over
// TLS verified with the CA file it wrote, and the bytes it sent are
// counted.
func TestStandInKubelet(t *testing.T) {
	pod := func(name, node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}, Spec: corev1.PodSpec{NodeName: node}}
	}
	client := fake.NewClientset(pod("a1", "node-a"), pod("a2", "node-a"), pod("b1", "node-b"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k, err := startStandInKubelet(ctx, client, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer k.close()
	ca, err := os.ReadFile(k.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no certificate in the CA file")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	get := func(path string) (int, corev1.PodList) {
		t.Helper()
		resp, err := hc.Get(k.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var l corev1.PodList
		if resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, l
	}
	code, l := get("/node-a/pods")
	if code != 200 || len(l.Items) != 2 || l.Kind != "PodList" {
		t.Errorf("node-a: %d, %d pods (kind %q); want 200 and its 2 pods", code, len(l.Items), l.Kind)
	}
	for _, p := range l.Items {
		if p.Spec.NodeName != "node-a" {
			t.Errorf("node-a lists %s of %s", p.Name, p.Spec.NodeName)
		}
	}
	if code, l := get("/node-c/pods"); code != 200 || len(l.Items) != 0 {
		t.Errorf("node-c: %d, %d pods; want 200 and none", code, len(l.Items))
	}
	if code, _ := get("/node-a/spec"); code != http.StatusNotFound {
		t.Errorf("/node-a/spec = %d, want 404", code)
	}
	if k.written.Load() == 0 {
		t.Error("the bytes sent were not counted")
	}
}
