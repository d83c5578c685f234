package kubetypes

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Times in the local zone, as Time decodes them.
var (
	created = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Local()
	started = time.Date(2026, 1, 2, 3, 4, 9, 0, time.UTC).Local()
	deleted = time.Date(2026, 1, 2, 4, 0, 0, 0, time.UTC).Local()
)

func tp(t time.Time) *Time { return &Time{t} }

func ptrTo[T any](v T) *T { return &v }

// fullMeta is the metadata of testdata/pod.json.
func fullMeta() ObjectMeta {
	return ObjectMeta{
		Name: "web-7c9d8f6b50-x2x4z", Namespace: "team", UID: "pod-uid", ResourceVersion: "42",
		CreationTimestamp: Time{created}, DeletionTimestamp: tp(deleted),
		Labels:      map[string]string{"app": "web", "pod-template-hash": "7c9d8f6b50"},
		Annotations: map[string]string{"note": "x", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
		OwnerReferences: []OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7c9d8f6b50",
			UID: "rs-uid", Controller: ptrTo(true)}},
	}
}

// fullPod is testdata/pod.json as a Pod, field by field.
func fullPod() *Pod {
	return &Pod{
		TypeMeta:   TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: fullMeta(),
		Spec: PodSpec{
			NodeName: "node-a", HostNetwork: true, Hostname: "web-host",
			InitContainers: []Container{{Name: "init", Image: "registry.example/init:0.1", RestartPolicy: "Always"}},
			Containers: []Container{{Name: "app", Image: "registry.example:5000/team/app:1.2", RestartPolicy: "Never"},
				{Name: "sidecar", Image: "registry.example/sidecar@sha256:0123", RestartPolicy: "Always"}},
		},
		Status: PodStatus{
			Phase: PodRunning, PodIP: "10.1.0.7", PodIPs: []PodIP{{IP: "10.1.0.7"}, {IP: "fd00::7"}}, StartTime: tp(started),
			InitContainerStatuses: []ContainerStatus{{Name: "init", ContainerID: "containerd://init-1",
				ImageID: "registry.example/init@sha256:" + strings.Repeat("1", 64), RestartCount: 2,
				LastTerminationState: ContainerState{Terminated: &ContainerStateTerminated{ContainerID: "containerd://init-0"}}}},
			ContainerStatuses: []ContainerStatus{
				{Name: "app", ContainerID: "containerd://app-2", RestartCount: 1,
					ImageID:              "registry.example:5000/team/app@sha256:" + strings.Repeat("2", 64),
					LastTerminationState: ContainerState{Terminated: &ContainerStateTerminated{ContainerID: "containerd://app-1"}}},
				{Name: "sidecar", ContainerID: "cri-o://sidecar-1", ImageID: "sha256:" + strings.Repeat("3", 64), RestartCount: 3,
					LastTerminationState: ContainerState{Terminated: &ContainerStateTerminated{ContainerID: "cri-o://sidecar-0"}}},
			},
		},
	}
}

// fullNode is testdata/node.json as a Node.
func fullNode() *Node {
	return &Node{
		TypeMeta:   TypeMeta{Kind: "Node", APIVersion: "v1"},
		ObjectMeta: ObjectMeta{Name: "node-a", UID: "node-uid", Labels: map[string]string{"zone": "z1"}, Annotations: map[string]string{"a": "b"}},
		Spec:       NodeSpec{PodCIDR: "10.1.0.0/24", PodCIDRs: []string{"10.1.0.0/24", "fd00:1::/64"}},
		Status:     NodeStatus{Addresses: []NodeAddress{{Address: "192.0.2.1"}, {Address: "node-a"}}},
	}
}

// fullPodList is testdata/podlist.json as a PodList.
func fullPodList() *PodList {
	other := fullPod()
	other.Name, other.UID, other.Status.Phase = "other", "other-uid", PodSucceeded
	return &PodList{TypeMeta: TypeMeta{Kind: "PodList", APIVersion: "v1"},
		ListMeta: ListMeta{ResourceVersion: "50", Continue: "next"}, Items: []Pod{*fullPod(), *other}}
}

// populated fails for every field of this package's types in v that is
// zero: a field added to a type must be set in the fixtures, so that the
// JSON test covers it.
func populated(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	if v.IsZero() {
		t.Errorf("%s is zero", path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		populated(t, v.Elem(), path)
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			populated(t, v.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Struct:
		if v.Type().PkgPath() != reflect.TypeFor[Pod]().PkgPath() || v.Type() == reflect.TypeFor[Time]() {
			return // time.Time: non-zero is enough
		}
		for i := 0; i < v.NumField(); i++ {
			populated(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	}
}

// TestJSONFromCoreV1: what the API server sends for a core/v1 Pod, PodList
// or Node decodes into these types with every field set, so a JSON name
// that is not the Kubernetes API's cannot go unnoticed. The files in
// testdata are what k8s.io/api encodes for objects with every field of
// these types set and many others (the e2e module's
// TestInformerContractFiles keeps them so).
func TestJSONFromCoreV1(t *testing.T) {
	t.Parallel()
	for _, want := range []any{fullPod(), fullPodList()} {
		populated(t, reflect.ValueOf(want), reflect.TypeOf(want).Elem().Name())
	}
	// A node has no namespace, owners or deletion: its own fields only.
	node := reflect.ValueOf(fullNode()).Elem()
	for _, f := range []string{"Spec", "Status"} {
		populated(t, node.FieldByName(f), "Node."+f)
	}

	for _, tc := range []struct {
		file string
		got  any
		want any
	}{
		{"testdata/pod.json", &Pod{}, fullPod()},
		{"testdata/node.json", &Node{}, fullNode()},
		{"testdata/podlist.json", &PodList{}, fullPodList()},
	} {
		b, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, tc.got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%T from %s\n%#v\nwant\n%#v", tc.want, tc.file, tc.got, tc.want)
		}
	}
}

// TestTimeJSON: timestamps read as the API writes them (RFC 3339, with or
// without fractions), null and "" as the zero time, and write back in UTC.
func TestTimeJSON(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Time{
		`"2026-01-02T03:04:05Z"`:        time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		`"2026-01-02T04:04:05+01:00"`:   time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		`"2026-01-02T03:04:05.123456Z"`: time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC),
		`null`:                          {},
		`""`:                            {},
	} {
		var got Time
		if err := json.Unmarshal([]byte(in), &got); err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if !got.Equal(want) {
			t.Errorf("%s: %v, want %v", in, got, want)
		}
	}
	var bad Time
	if err := json.Unmarshal([]byte(`"yesterday"`), &bad); err == nil {
		t.Error("an unparseable time was accepted")
	}
	b, err := json.Marshal(struct {
		A Time  `json:"a"`
		B *Time `json:"b,omitempty"`
		C Time  `json:"c,omitzero"`
	}{A: Time{time.Date(2026, 1, 2, 4, 4, 5, 0, time.FixedZone("x", 3600))}})
	if err != nil || string(b) != `{"a":"2026-01-02T03:04:05Z"}` {
		t.Errorf("marshal: %s %v", b, err)
	}
	var nilTime *Time
	if !nilTime.IsZero() || !(&Time{}).IsZero() {
		t.Error("IsZero")
	}
}
