//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/podstamp/podstamp/e2e/cluster"
	"github.com/podstamp/podstamp/informer/kubetypes"
)

// TestKubetypesProtoRealServer: what a real kube-apiserver answers in
// protobuf (a GET, a paged LIST, a 404 Status, a streaming-list watch with
// its initial-events-end bookmark, MODIFIED and DELETED events) decodes with package kubetypes to what its JSON answer to
// the same request decodes to with encoding/json.
func TestKubetypesProtoRealServer(t *testing.T) {
	if bin, ok := cluster.CachedKubeAPIServer(); !ok {
		t.Skipf("kube-apiserver not built yet (%s); run make e2e once", bin)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	hc, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)

	const ns, node = "team", "node-a"
	if err := c.CreateNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	d, err := c.CreateDeployment(ctx, ns, "web", "7c9d8f6b50")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i, ips := range [][]netip.Addr{
		{netip.MustParseAddr("10.244.0.7"), netip.MustParseAddr("fd00::7")},
		{netip.MustParseAddr("10.244.0.8")},
		{netip.MustParseAddr("192.0.2.1")},
	} {
		p, err := c.StartPod(ctx, cluster.Pod{Namespace: ns, NodeName: node, Owner: d, HostNetwork: i == 2,
			Annotations: map[string]string{"note": fmt.Sprint(i)},
			Containers:  []cluster.Container{{Name: "app", Image: "registry.example/app:1"}, {Name: "sidecar", Image: "registry.example/s:2"}}},
			cluster.PodStatus{IPs: ips, HostIP: netip.MustParseAddr("192.0.2.1")})
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, p.Name)
	}
	// A pod with a sidecar init container, a finalizer and a deletion
	// timestamp (deleted, but kept by its finalizer).
	kept, err := c.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kept", Finalizers: []string{"example.com/f"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "cm", UID: "cm-uid", Controller: ptr.To(false)}}},
		Spec: corev1.PodSpec{NodeName: node, Hostname: "kept-host",
			InitContainers: []corev1.Container{{Name: "init", Image: "registry.example/init:1", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}},
			Containers:     []corev1.Container{{Name: "app", Image: "registry.example/app:1", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, kept.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	names = append(names, kept.Name)
	t.Cleanup(func() {
		patch := []byte(`{"metadata":{"finalizers":null}}`)
		_, _ = c.Client.CoreV1().Pods(ns).Patch(context.Background(), "kept", types.MergePatchType, patch, metav1.PatchOptions{})
	})

	get := func(path, accept string) (int, string, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Config.Host+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", accept)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), b
	}
	both := func(path string) (pb, js []byte, code int) {
		t.Helper()
		code, ctype, pb := get(path, kubetypes.ContentTypeProtobuf)
		if ctype != kubetypes.ContentTypeProtobuf {
			t.Fatalf("%s: Content-Type %q", path, ctype)
		}
		jcode, _, js := get(path, "application/json")
		if jcode != code {
			t.Fatalf("%s: %d in protobuf, %d in JSON", path, code, jcode)
		}
		return pb, js, code
	}
	same := func(what string, fromProto, fromJSON any) {
		t.Helper()
		emptyAsNilE2E(fromProto)
		emptyAsNilE2E(fromJSON)
		if !reflect.DeepEqual(fromProto, fromJSON) {
			t.Errorf("%s: protobuf and JSON differ\nprotobuf %#v\nJSON     %#v", what, fromProto, fromJSON)
		}
	}

	var sizes []string
	for _, name := range names {
		pb, js, code := both("/api/v1/namespaces/" + ns + "/pods/" + name)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", name, code, js)
		}
		p, jp := &kubetypes.Pod{}, &kubetypes.Pod{}
		if err := kubetypes.UnmarshalPodProto(pb, p); err != nil {
			t.Fatalf("GET %s: %v", name, err)
		}
		if err := json.Unmarshal(js, jp); err != nil {
			t.Fatal(err)
		}
		same("GET "+name, p, jp)
		sizes = append(sizes, fmt.Sprintf("%s %d/%d", name, len(pb), len(js)))
	}
	t.Logf("pod bytes protobuf/JSON: %s", strings.Join(sizes, ", "))
	var k kubetypes.Pod
	if _, _, pb := get("/api/v1/namespaces/"+ns+"/pods/kept", kubetypes.ContentTypeProtobuf); kubetypes.UnmarshalPodProto(pb, &k) != nil ||
		k.DeletionTimestamp.IsZero() || len(k.Spec.InitContainers) != 1 || k.Spec.InitContainers[0].RestartPolicy != "Always" ||
		len(k.OwnerReferences) != 1 || k.OwnerReferences[0].Controller == nil || *k.OwnerReferences[0].Controller {
		t.Errorf("kept pod: %+v", k)
	}

	// A paged list: two pages of two, with a continue token.
	var listed []string
	for cont := ""; ; {
		pb, js, code := both("/api/v1/namespaces/" + ns + "/pods?limit=2&fieldSelector=spec.nodeName%3D" + node + "&continue=" + cont)
		if code != http.StatusOK {
			t.Fatalf("LIST: %d %s", code, js)
		}
		l, jl := &kubetypes.PodList{}, &kubetypes.PodList{}
		if err := kubetypes.UnmarshalPodListProto(pb, l); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(js, jl); err != nil {
			t.Fatal(err)
		}
		same("LIST", l, jl)
		for _, p := range l.Items {
			listed = append(listed, p.Name)
		}
		if cont = l.Continue; cont == "" {
			break
		}
	}
	if len(listed) != len(names) {
		t.Errorf("listed %v, want %v", listed, names)
	}

	// A refusal is a Status.
	pb, js, code := both("/api/v1/namespaces/" + ns + "/pods/nope")
	s, js2 := &kubetypes.Status{}, &kubetypes.Status{}
	if err := kubetypes.UnmarshalStatusProto(pb, s); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, js2); err != nil {
		t.Fatal(err)
	}
	same("404", s, js2)
	if code != http.StatusNotFound || s.Code != 404 || s.Reason != kubetypes.StatusReasonNotFound {
		t.Errorf("404: %d %+v", code, s)
	}

	// A streaming list: the pods as ADDED, the initial-events-end bookmark,
	// then what happens.
	watchPath := "/api/v1/namespaces/" + ns + "/pods?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan"
	pw := openWatch(t, ctx, hc, c.Config.Host+watchPath, kubetypes.ContentTypeProtobuf)
	jw := openWatch(t, ctx, hc, c.Config.Host+watchPath, "application/json")
	if want := kubetypes.ContentTypeProtobuf + ";stream=watch"; pw.ctype != want {
		t.Errorf("watch Content-Type %q, want %q", pw.ctype, want)
	}
	next := func() (string, any, any) {
		t.Helper()
		typ, obj := pw.next(t)
		var je kubetypes.WatchEvent
		if err := jw.dec.Decode(&je); err != nil {
			t.Fatal(err)
		}
		if je.Type != typ {
			t.Fatalf("event %s in protobuf, %s in JSON", typ, je.Type)
		}
		var got, want any = &kubetypes.Pod{}, &kubetypes.Pod{}
		var err error
		if typ == kubetypes.Error {
			got, want = &kubetypes.Status{}, &kubetypes.Status{}
			err = kubetypes.UnmarshalStatusProto(obj, got.(*kubetypes.Status))
		} else {
			err = kubetypes.UnmarshalPodProto(obj, got.(*kubetypes.Pod))
		}
		if err != nil {
			t.Fatalf("%s event: %v", typ, err)
		}
		if err := json.Unmarshal(je.Object, want); err != nil {
			t.Fatal(err)
		}
		return typ, got, want
	}
	for i := range names {
		typ, got, want := next()
		if typ != kubetypes.Added {
			t.Fatalf("initial event %d: %s", i, typ)
		}
		same("initial ADDED", got, want)
	}
	typ, got, _ := next()
	if bm, ok := got.(*kubetypes.Pod); typ != kubetypes.Bookmark || !ok || bm.Annotations["k8s.io/initial-events-end"] != "true" || bm.ResourceVersion == "" {
		t.Fatalf("after the initial events: %s %+v", typ, got)
	}
	if _, err := c.Client.CoreV1().Pods(ns).Patch(ctx, names[0], types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeletePod(ctx, ns, names[1]); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{kubetypes.Modified, kubetypes.Deleted} {
		typ, got, jwant := next()
		// Bookmarks may come in between, with resource versions that differ
		// between the two watches; a deletion sets deletionTimestamp first
		// (MODIFIED).
		for typ == kubetypes.Bookmark || (typ == kubetypes.Modified && want == kubetypes.Deleted) {
			if typ == kubetypes.Modified {
				same(typ, got, jwant)
			}
			typ, got, jwant = next()
		}
		if typ != want {
			t.Fatalf("event %s, want %s", typ, want)
		}
		same(typ, got, jwant)
	}
	pw.close()
	jw.close()
}

// emptyAsNilE2E: containers and items are [] in JSON, absent in protobuf.
func emptyAsNilE2E(v any) {
	switch v := v.(type) {
	case *kubetypes.Pod:
		normalizePod(v)
	case *kubetypes.PodList:
		normalizeList(v)
	}
}

type watchStream struct {
	body   io.ReadCloser
	cancel context.CancelFunc
	ctype  string
	dec    *json.Decoder
	buf    []byte
}

func openWatch(t *testing.T, ctx context.Context, hc *http.Client, url, accept string) *watchStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("watch %s: %d %s", url, resp.StatusCode, b)
	}
	w := &watchStream{body: resp.Body, cancel: cancel, ctype: resp.Header.Get("Content-Type"), dec: json.NewDecoder(resp.Body)}
	t.Cleanup(w.close)
	return w
}

// next is the next protobuf event: its type and object.
func (w *watchStream) next(t *testing.T) (string, []byte) {
	t.Helper()
	frame, err := kubetypes.ReadFrame(w.body, w.buf, 4<<20)
	if err != nil {
		t.Fatalf("watch frame: %v", err)
	}
	w.buf = frame
	if bytes.HasPrefix(frame, []byte("k8s\x00")) {
		t.Errorf("a watch event in an envelope: the API server sends it bare")
	}
	typ, obj, err := kubetypes.UnmarshalWatchEventProto(frame)
	if err != nil {
		t.Fatal(err)
	}
	return typ, bytes.Clone(obj)
}

func (w *watchStream) close() {
	w.cancel()
	w.body.Close()
}
