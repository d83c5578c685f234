package informer

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/informer/kubetypes"
)

// apiServer is a minimal Kubernetes API server: pods of one node as a list
// and as a watch stream, a node, and metadata of a namespace, a ReplicaSet
// and a Job. It answers JSON, as the server does (the shape of which
// TestLeanPodFromJSON checks against what k8s.io/api encodes), and records
// every request.
type apiServer struct {
	t      *testing.T
	fullRS bool // answer the ReplicaSet as a whole object, ignoring as=PartialObjectMetadata

	mu   sync.Mutex
	reqs []*http.Request
}

func (s *apiServer) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// lastRequest returns the last request to path.
func (s *apiServer) lastRequest(path string) *http.Request {
	s.t.Helper()
	reqs := s.requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].URL.Path == path {
			return reqs[i]
		}
	}
	s.t.Fatalf("no request to %s among %d", path, len(reqs))
	return nil
}

func (s *apiServer) write(w http.ResponseWriter, code int, obj any) {
	b, err := json.Marshal(obj)
	if err != nil {
		s.t.Errorf("encoding %T: %v", obj, err)
	}
	w.Header().Set("Content-Type", mediaJSON)
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func (s *apiServer) writeJSON(w http.ResponseWriter, contentType, body string) {
	w.Header().Set("Content-Type", contentType)
	_, _ = io.WriteString(w, body)
}

func status(code int, reason, msg string) *kubetypes.Status {
	return &kubetypes.Status{TypeMeta: kubetypes.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: "Failure",
		Code: int32(code), Reason: reason, Message: msg}
}

const metaContentType = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

func (s *apiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r)
	s.mu.Unlock()
	q := r.URL.Query()
	switch r.URL.Path {
	case "/api/v1/pods":
		if q.Get("watch") == "true" {
			s.watchPods(w, r)
			return
		}
		l := &kubetypes.PodList{TypeMeta: kubetypes.TypeMeta{Kind: "PodList", APIVersion: "v1"},
			ListMeta: kubetypes.ListMeta{ResourceVersion: "10"}, Items: []kubetypes.Pod{
				*mkPod(podSpec{name: "a", ips: []string{"10.1.0.1", "fd00::1"}}),
				*mkPod(podSpec{ns: "other", name: "b", ips: []string{"10.1.0.2"}, labels: map[string]string{"app": "b"}}),
			}}
		s.write(w, http.StatusOK, l)
	case "/api/v1/nodes/" + testNode:
		n := &kubetypes.Node{TypeMeta: kubetypes.TypeMeta{Kind: "Node", APIVersion: "v1"},
			ObjectMeta: kubetypes.ObjectMeta{Name: testNode, UID: "node-uid", Labels: map[string]string{"zone": "z1"}},
			Spec:       kubetypes.NodeSpec{PodCIDRs: []string{"10.1.0.0/24"}},
			Status:     kubetypes.NodeStatus{Addresses: []kubetypes.NodeAddress{{Address: "192.0.2.1"}}}}
		s.write(w, http.StatusOK, n)
	case "/api/v1/nodes/secret":
		s.write(w, http.StatusForbidden, status(http.StatusForbidden, kubetypes.StatusReasonForbidden,
			`nodes "secret" is forbidden: User "podstamp" cannot get resource "nodes"`))
	case "/api/v1/namespaces/team":
		s.writeJSON(w, metaContentType, `{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1",
			"metadata":{"name":"team","uid":"ns-uid","labels":{"team":"blue"},"annotations":{"owner":"ops"}}}`)
	case "/api/v1/namespaces/gone":
		s.write(w, http.StatusNotFound, status(http.StatusNotFound, kubetypes.StatusReasonNotFound, `namespaces "gone" not found`))
	case "/apis/apps/v1/namespaces/team/replicasets/web-7c9d8f6b50":
		if s.fullRS {
			s.writeJSON(w, mediaJSON, `{"kind":"ReplicaSet","apiVersion":"apps/v1",
				"metadata":{"name":"web-7c9d8f6b50","namespace":"team","uid":"rs-uid",
				"ownerReferences":[{"apiVersion":"apps/v1","kind":"Deployment","name":"web","uid":"deploy-uid","controller":true}]},
				"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}}},"status":{"replicas":2}}`)
			return
		}
		s.writeJSON(w, metaContentType, `{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1",
			"metadata":{"name":"web-7c9d8f6b50","namespace":"team","uid":"rs-uid",
			"ownerReferences":[{"apiVersion":"apps/v1","kind":"Deployment","name":"web","uid":"deploy-uid","controller":true}]}}`)
	case "/apis/batch/v1/namespaces/team/jobs/nightly-29000000":
		s.writeJSON(w, metaContentType, `{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1",
			"metadata":{"name":"nightly-29000000","namespace":"team","uid":"job-uid",
			"ownerReferences":[{"apiVersion":"batch/v1","kind":"CronJob","name":"nightly","uid":"cron-uid","controller":true}]}}`)
	case "/apis/batch/v1/namespaces/team/jobs/denied":
		// Forbidden without a Status body (a proxy in between, say).
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, "forbidden\n")
	default:
		// Not found without a Status body.
		http.NotFound(w, r)
	}
}

// watchPods streams three events and ends the watch: one JSON watch event
// a line, as the server frames them.
func (s *apiServer) watchPods(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", mediaJSON+";stream=watch")
	w.WriteHeader(http.StatusOK)
	a := mkPod(podSpec{name: "a", ips: []string{"10.1.0.1"}})
	a.ResourceVersion = "11"
	b := mkPod(podSpec{name: "a", ips: []string{"10.1.0.1"}, phase: kubetypes.PodSucceeded})
	b.ResourceVersion = "12"
	c := clonePod(b)
	c.ResourceVersion = "13"
	enc := json.NewEncoder(w)
	for _, ev := range []struct {
		typ string
		pod *kubetypes.Pod
	}{{kubetypes.Added, a}, {kubetypes.Modified, b}, {kubetypes.Deleted, c}} {
		ev.pod.TypeMeta = kubetypes.TypeMeta{Kind: "Pod", APIVersion: "v1"}
		raw, err := json.Marshal(ev.pod)
		if err != nil {
			s.t.Errorf("encoding pod: %v", err)
			return
		}
		if err := enc.Encode(kubetypes.WatchEvent{Type: ev.typ, Object: raw}); err != nil {
			s.t.Errorf("encoding event: %v", err)
			return
		}
		w.(http.Flusher).Flush()
	}
}

func TestNewAPI(t *testing.T) {
	t.Parallel()
	srv := &apiServer{t: t}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	api, err := NewAPI(&RESTConfig{Host: ts.URL, UserAgent: "podstamp/test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	sel := "spec.nodeName=" + testNode

	// List
	l, err := api.ListPods(ctx, ListOptions{FieldSelector: sel, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range l.Items {
		got = append(got, fmt.Sprintf("%s/%s %s %v %v", p.Namespace, p.Name, p.Spec.NodeName, p.Status.PodIPs, p.Labels))
	}
	want := []string{"default/a node-a [{10.1.0.1} {fd00::1}] map[]", "other/b node-a [{10.1.0.2}] map[app:b]"}
	if !slices.Equal(got, want) || l.ResourceVersion != "10" {
		t.Errorf("list: rv %q, pods\n%q\nwant\n%q", l.ResourceVersion, got, want)
	}
	r := srv.lastRequest("/api/v1/pods")
	if acc := r.Header.Get("Accept"); acc != "application/vnd.kubernetes.protobuf, application/json" {
		t.Errorf("list Accept %q, want protobuf, then JSON (which this server answers)", acc)
	}
	if q := r.URL.Query(); q.Get("fieldSelector") != "spec.nodeName="+testNode || q.Get("limit") != "500" {
		t.Errorf("list query %q", r.URL.RawQuery)
	}
	if ua := r.Header.Get("User-Agent"); ua != "podstamp/test" {
		t.Errorf("User-Agent %q", ua)
	}

	// Watch
	w, err := api.WatchPods(ctx, ListOptions{FieldSelector: sel, ResourceVersion: "10", AllowWatchBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var evs []string
	timeout := time.After(10 * time.Second)
events:
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				break events
			}
			p := ev.Pod
			if p == nil {
				t.Fatalf("watch event %+v without a pod", ev)
			}
			evs = append(evs, fmt.Sprintf("%s %s/%s rv=%s %s %s", ev.Type, p.Namespace, p.Name, p.ResourceVersion, p.Status.Phase, p.Status.PodIP))
		case <-timeout:
			t.Fatalf("watch did not end; events so far %q", evs)
		}
	}
	wantEvs := []string{"ADDED default/a rv=11 Running 10.1.0.1", "MODIFIED default/a rv=12 Succeeded 10.1.0.1", "DELETED default/a rv=13 Succeeded 10.1.0.1"}
	if !slices.Equal(evs, wantEvs) {
		t.Errorf("watch events\n%q\nwant\n%q", evs, wantEvs)
	}
	var wr *http.Request
	for _, r := range srv.requests() {
		if r.URL.Path == "/api/v1/pods" && r.URL.Query().Get("watch") == "true" {
			wr = r
		}
	}
	if wr == nil {
		t.Fatal("no watch request")
	}
	if acc := wr.Header.Get("Accept"); acc != "application/vnd.kubernetes.protobuf, application/json" {
		t.Errorf("watch Accept %q, want protobuf, then JSON (which this server answers)", acc)
	}
	if q := wr.URL.Query(); q.Get("fieldSelector") != "spec.nodeName="+testNode || q.Get("resourceVersion") != "10" ||
		q.Get("allowWatchBookmarks") != "true" {
		t.Errorf("watch query %q", wr.URL.RawQuery)
	}

	// Node: the whole object, as JSON.
	n, err := api.GetNode(ctx, testNode)
	if err != nil {
		t.Fatal(err)
	}
	if n.UID != "node-uid" || n.Labels["zone"] != "z1" || !slices.Equal(n.Spec.PodCIDRs, []string{"10.1.0.0/24"}) ||
		len(n.Status.Addresses) != 1 || n.Status.Addresses[0].Address != "192.0.2.1" {
		t.Errorf("node %+v", n)
	}

	// Metadata only for namespaces, ReplicaSets and Jobs.
	ns, err := api.GetNamespaceMetadata(ctx, "team")
	if err != nil {
		t.Fatal(err)
	}
	if ns.UID != "ns-uid" || ns.Labels["team"] != "blue" || ns.Annotations["owner"] != "ops" {
		t.Errorf("namespace %+v", ns.ObjectMeta)
	}
	rs, err := api.GetReplicaSetMetadata(ctx, "team", "web-7c9d8f6b50")
	if err != nil {
		t.Fatal(err)
	}
	if v := ownedBy(rs, "Deployment"); v.uid != "rs-uid" || v.ownerName != "web" || v.ownerUID != "deploy-uid" {
		t.Errorf("replicaset %+v", v)
	}
	job, err := api.GetJobMetadata(ctx, "team", "nightly-29000000")
	if err != nil {
		t.Fatal(err)
	}
	if v := ownedBy(job, "CronJob"); v.uid != "job-uid" || v.ownerName != "nightly" || v.ownerUID != "cron-uid" {
		t.Errorf("job %+v", v)
	}
	for _, p := range []string{"/api/v1/namespaces/team", "/apis/apps/v1/namespaces/team/replicasets/web-7c9d8f6b50",
		"/apis/batch/v1/namespaces/team/jobs/nightly-29000000"} {
		if acc := srv.lastRequest(p).Header.Get("Accept"); acc != "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json" {
			t.Errorf("%s: Accept %q", p, acc)
		}
	}
	if acc := srv.lastRequest("/api/v1/nodes/" + testNode).Header.Get("Accept"); acc != "application/json" {
		t.Errorf("node Accept %q, want application/json only", acc)
	}
}

// TestNewAPIWholeObject: a server that ignores as=PartialObjectMetadata
// answers with the whole ReplicaSet; its metadata is still read.
func TestNewAPIWholeObject(t *testing.T) {
	t.Parallel()
	srv := &apiServer{t: t, fullRS: true}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	api, err := NewAPI(&RESTConfig{Host: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := api.GetReplicaSetMetadata(t.Context(), "team", "web-7c9d8f6b50")
	if err != nil {
		t.Fatal(err)
	}
	if v := ownedBy(rs, "Deployment"); v.uid != "rs-uid" || v.ownerName != "web" || v.ownerUID != "deploy-uid" {
		t.Errorf("replicaset %+v", v)
	}
}

// TestNewAPIErrors: answers of the server keep their Status meaning, which
// the metadata cache relies on (NotFound is cached as absent, Forbidden for
// the node is reported once).
func TestNewAPIErrors(t *testing.T) {
	t.Parallel()
	srv := &apiServer{t: t}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	api, err := NewAPI(&RESTConfig{Host: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	check := func(what string, err error, is func(error) bool, reason string) {
		t.Helper()
		st, _ := statusOf(err)
		if err == nil || !is(err) || st.Reason != reason {
			t.Errorf("%s: error %v (reason %q), want %s", what, err, st.Reason, reason)
		}
	}
	_, err = api.GetNode(ctx, "secret") // Status
	check("node secret", err, IsForbidden, kubetypes.StatusReasonForbidden)
	if err != nil && !strings.Contains(err.Error(), `cannot get resource "nodes"`) {
		t.Errorf("node secret: the server's message is lost: %v", err)
	}
	_, err = api.GetNode(ctx, "missing") // plain 404
	check("node missing", err, IsNotFound, kubetypes.StatusReasonNotFound)
	_, err = api.GetNamespaceMetadata(ctx, "gone") // Status
	check("namespace gone", err, IsNotFound, kubetypes.StatusReasonNotFound)
	_, err = api.GetReplicaSetMetadata(ctx, "team", "missing") // plain 404
	check("replicaset missing", err, IsNotFound, kubetypes.StatusReasonNotFound)
	_, err = api.GetJobMetadata(ctx, "team", "denied") // plain 403
	check("job denied", err, IsForbidden, kubetypes.StatusReasonForbidden)
}

// TestLeanPodFromJSON: a core/v1 pod as JSON (what the API server sends:
// testdata/pod-full.json is what k8s.io/api encodes for a pod with every
// field the pod cache reads set, and others it does not read; the e2e
// module's TestInformerContractFiles keeps it so) decodes into the lean pod
// with every field the pod cache reads, and toPodObj makes of it what it
// stamps.
func TestLeanPodFromJSON(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/pod-full.json")
	if err != nil {
		t.Fatal(err)
	}
	got := &kubetypes.Pod{}
	if err := json.Unmarshal(b, got); err != nil {
		t.Fatal(err)
	}
	// Times decode in the local zone.
	at := func(d time.Duration) *kubetypes.Time { return &kubetypes.Time{Time: t0.Add(d).Local()} }
	want := mkPod(podSpec{ns: "team", name: "web-7c9d8f6b50-x2x4z", uid: "uid-web", ips: []string{"10.1.0.7", "fd00::7"},
		hostNetwork: true, labels: map[string]string{"app": "web", "pod-template-hash": "7c9d8f6b50"},
		owners: []kubetypes.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7c9d8f6b50", UID: "rs-uid", Controller: new(true)}}})
	want.TypeMeta = kubetypes.TypeMeta{Kind: "Pod", APIVersion: "v1"}
	want.ResourceVersion = "42"
	want.CreationTimestamp, want.DeletionTimestamp, want.Status.StartTime = *at(0), at(time.Hour), at(4*time.Second)
	want.Annotations = map[string]string{"note": "x", lastApplied: `{"kind":"Pod"}`}
	want.Spec.InitContainers = []kubetypes.Container{{Name: "init", Image: "registry.example/init:0.1"}}
	want.Spec.Containers = append(want.Spec.Containers, kubetypes.Container{Name: "sidecar", Image: "registry.example/sidecar@sha256:0123"})
	want.Status.InitContainerStatuses = []kubetypes.ContainerStatus{{Name: "init", ContainerID: "containerd://init-1",
		LastTerminationState: kubetypes.ContainerState{Terminated: &kubetypes.ContainerStateTerminated{ContainerID: "containerd://init-0"}}}}
	want.Status.ContainerStatuses[0].LastTerminationState.Terminated = &kubetypes.ContainerStateTerminated{ContainerID: "containerd://app-0"}
	want.Status.ContainerStatuses = append(want.Status.ContainerStatuses, kubetypes.ContainerStatus{Name: "sidecar", ContainerID: "cri-o://sidecar-1"})
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n%#v\nwant\n%#v", got, want)
	}

	o := toPodObj(got)
	wantPod := &enrich.Pod{
		Namespace: "team", Name: "web-7c9d8f6b50-x2x4z", UID: "uid-web", NodeName: testNode, HostNetwork: true,
		IPs:         []netip.Addr{netip.MustParseAddr("10.1.0.7"), netip.MustParseAddr("fd00::7")},
		StartTime:   got.Status.StartTime.Time,
		Created:     got.CreationTimestamp.Time,
		Labels:      map[string]string{"app": "web", "pod-template-hash": "7c9d8f6b50"},
		Annotations: map[string]string{"note": "x"},
		Workloads:   []enrich.Workload{{Kind: enrich.ReplicaSet, Name: "web-7c9d8f6b50"}, {Kind: enrich.Deployment, Name: "web"}},
		Containers: []enrich.Container{
			{Name: "init", Init: true, ImageName: "registry.example/init", ImageTag: "0.1", ImageVersion: "0.1", IDs: []string{"init-1", "init-0"}},
			{Name: "app", ImageName: "registry.example:5000/team/app", ImageTag: "1.2", ImageVersion: "1.2", IDs: []string{"cid-uid-web", "app-0"}},
			{Name: "sidecar", ImageName: "registry.example/sidecar", IDs: []string{"sidecar-1"}},
		},
	}
	if !reflect.DeepEqual(o.pod, wantPod) {
		t.Errorf("stamped pod\n%+v\nwant\n%+v", o.pod, wantPod)
	}
	if !o.pod.StartTime.Equal(t0.Add(4*time.Second)) || o.phase != kubetypes.PodRunning || !o.deleting ||
		o.rsName != "web-7c9d8f6b50" || o.rsUID != "rs-uid" || o.ownerUIDs[enrich.ReplicaSet] != "rs-uid" ||
		o.Namespace != "team" || o.Name != "web-7c9d8f6b50-x2x4z" || o.UID != "uid-web" || o.ResourceVersion != "42" {
		t.Errorf("pod object %+v", o)
	}

	// A pod without status.podIPs (an old kubelet) is read by status.podIP.
	old := &kubetypes.Pod{}
	if err := json.Unmarshal([]byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"creationTimestamp":null},"spec":{"containers":null},"status":{"podIP":"10.1.0.9"}}`), old); err != nil {
		t.Fatal(err)
	}
	if ips := toPodObj(old).pod.IPs; !slices.Equal(ips, []netip.Addr{netip.MustParseAddr("10.1.0.9")}) {
		t.Errorf("IPs from podIP only: %v", ips)
	}
}
