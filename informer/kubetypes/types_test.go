package kubetypes

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Times in the local zone, as Time decodes them.
var (
	created = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Local()
	started = time.Date(2026, 1, 2, 3, 4, 9, 0, time.UTC).Local()
	deleted = time.Date(2026, 1, 2, 4, 0, 0, 0, time.UTC).Local()
)

func tp(t time.Time) *Time { return &Time{t} }

func mtp(t time.Time) *metav1.Time { return &metav1.Time{Time: t} }

// fullMeta is fullCoreMeta as ObjectMeta.
func fullMeta() ObjectMeta {
	return ObjectMeta{
		Name: "web-7c9d8f6b50-x2x4z", Namespace: "team", UID: "pod-uid", ResourceVersion: "42",
		CreationTimestamp: Time{created}, DeletionTimestamp: tp(deleted),
		Labels:      map[string]string{"app": "web", "pod-template-hash": "7c9d8f6b50"},
		Annotations: map[string]string{"note": "x", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
		OwnerReferences: []OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7c9d8f6b50",
			UID: "rs-uid", Controller: ptr.To(true)}},
	}
}

func fullCoreMeta() metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: "web-7c9d8f6b50-x2x4z", Namespace: "team", UID: "pod-uid", ResourceVersion: "42",
		CreationTimestamp: metav1.NewTime(created), DeletionTimestamp: mtp(deleted), DeletionGracePeriodSeconds: ptr.To[int64](30),
		Labels:      map[string]string{"app": "web", "pod-template-hash": "7c9d8f6b50"},
		Annotations: map[string]string{"note": "x", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7c9d8f6b50",
			UID: "rs-uid", Controller: ptr.To(true)}},
		Finalizers: []string{"example.com/f"},
	}
}

// fullCorePod is a core/v1 Pod with every field Pod has set, each to a
// distinct value, and many that Pod does not have.
func fullCorePod() *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: fullCoreMeta(),
		Spec: corev1.PodSpec{
			NodeName: "node-a", HostNetwork: true, ServiceAccountName: "web", RestartPolicy: corev1.RestartPolicyAlways,
			InitContainers: []corev1.Container{{Name: "init", Image: "registry.example/init:0.1",
				Command: []string{"sh"}, Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}},
			Containers: []corev1.Container{
				{Name: "app", Image: "registry.example:5000/team/app:1.2", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
					Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}},
				{Name: "sidecar", Image: "registry.example/sidecar@sha256:0123"},
			},
			Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.1.0.7", HostIP: "192.0.2.1",
			PodIPs:     []corev1.PodIP{{IP: "10.1.0.7"}, {IP: "fd00::7"}},
			StartTime:  mtp(started),
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", ContainerID: "containerd://init-1", Image: "registry.example/init:0.1",
				State:                corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, ContainerID: "containerd://init-1"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, ContainerID: "containerd://init-0"}}}},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "app", ContainerID: "containerd://app-2", Ready: true, RestartCount: 1,
					State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}},
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, ContainerID: "containerd://app-1"}}},
				{Name: "sidecar", ContainerID: "cri-o://sidecar-1",
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ContainerID: "cri-o://sidecar-0"}}},
			},
		},
	}
}

// fullPod is fullCorePod as a Pod, field by field.
func fullPod() *Pod {
	return &Pod{
		TypeMeta:   TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: fullMeta(),
		Spec: PodSpec{
			NodeName: "node-a", HostNetwork: true,
			InitContainers: []Container{{Name: "init", Image: "registry.example/init:0.1"}},
			Containers: []Container{{Name: "app", Image: "registry.example:5000/team/app:1.2"},
				{Name: "sidecar", Image: "registry.example/sidecar@sha256:0123"}},
		},
		Status: PodStatus{
			Phase: PodRunning, PodIP: "10.1.0.7", PodIPs: []PodIP{{IP: "10.1.0.7"}, {IP: "fd00::7"}}, StartTime: tp(started),
			InitContainerStatuses: []ContainerStatus{{Name: "init", ContainerID: "containerd://init-1",
				LastTerminationState: ContainerState{Terminated: &ContainerStateTerminated{ContainerID: "containerd://init-0"}}}},
			ContainerStatuses: []ContainerStatus{
				{Name: "app", ContainerID: "containerd://app-2",
					LastTerminationState: ContainerState{Terminated: &ContainerStateTerminated{ContainerID: "containerd://app-1"}}},
				{Name: "sidecar", ContainerID: "cri-o://sidecar-1",
					LastTerminationState: ContainerState{Terminated: &ContainerStateTerminated{ContainerID: "cri-o://sidecar-0"}}},
			},
		},
	}
}

func fullCoreNode() *corev1.Node {
	return &corev1.Node{
		TypeMeta:   metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "node-a", UID: "node-uid", Labels: map[string]string{"zone": "z1"}, Annotations: map[string]string{"a": "b"}},
		Spec:       corev1.NodeSpec{PodCIDR: "10.1.0.0/24", PodCIDRs: []string{"10.1.0.0/24", "fd00:1::/64"}, ProviderID: "p://1"},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.1"}, {Type: corev1.NodeHostName, Address: "node-a"}},
			Capacity:  corev1.ResourceList{corev1.ResourcePods: resource.MustParse("110")},
		},
	}
}

func fullNode() *Node {
	return &Node{
		TypeMeta:   TypeMeta{Kind: "Node", APIVersion: "v1"},
		ObjectMeta: ObjectMeta{Name: "node-a", UID: "node-uid", Labels: map[string]string{"zone": "z1"}, Annotations: map[string]string{"a": "b"}},
		Spec:       NodeSpec{PodCIDR: "10.1.0.0/24", PodCIDRs: []string{"10.1.0.0/24", "fd00:1::/64"}},
		Status:     NodeStatus{Addresses: []NodeAddress{{Address: "192.0.2.1"}, {Address: "node-a"}}},
	}
}

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
// or Node (client-go's types, encoded as the server does) decodes into these
// types with every field set, so a JSON name that is not the Kubernetes
// API's cannot go unnoticed.
func TestJSONFromCoreV1(t *testing.T) {
	for _, want := range []any{fullPod(), fullPodList()} {
		populated(t, reflect.ValueOf(want), reflect.TypeOf(want).Elem().Name())
	}
	// A node has no namespace, owners or deletion: its own fields only.
	node := reflect.ValueOf(fullNode()).Elem()
	for _, f := range []string{"Spec", "Status"} {
		populated(t, node.FieldByName(f), "Node."+f)
	}

	corePods := &corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"},
		ListMeta: metav1.ListMeta{ResourceVersion: "50", Continue: "next"}}
	other := fullCorePod()
	other.Name, other.UID, other.Status.Phase = "other", "other-uid", corev1.PodSucceeded
	corePods.Items = []corev1.Pod{*fullCorePod(), *other}

	for _, tc := range []struct {
		core any
		got  any
		want any
	}{
		{fullCorePod(), &Pod{}, fullPod()},
		{fullCoreNode(), &Node{}, fullNode()},
		{corePods, &PodList{}, fullPodList()},
	} {
		b, err := json.Marshal(tc.core)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, tc.got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%T from JSON\n%#v\nwant\n%#v", tc.want, tc.got, tc.want)
		}
	}
}

// TestTimeJSON: timestamps read as the API writes them (RFC 3339, with or
// without fractions), null and "" as the zero time, and write back in UTC.
func TestTimeJSON(t *testing.T) {
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
