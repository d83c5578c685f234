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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/utils/ptr"
)

// Times in the local zone, as metav1.Time decodes them.
var (
	created = metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Local())
	started = metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 9, 0, time.UTC).Local())
	deleted = metav1.NewTime(time.Date(2026, 1, 2, 4, 0, 0, 0, time.UTC).Local())
)

func fullMeta() metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: "web-7c9d8f6b50-x2x4z", Namespace: "team", UID: "pod-uid", ResourceVersion: "42",
		CreationTimestamp: created, DeletionTimestamp: &deleted, DeletionGracePeriodSeconds: ptr.To[int64](30),
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
		ObjectMeta: fullMeta(),
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
			StartTime:  &started,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", ContainerID: "containerd://init-1", Image: "registry.example/init:0.1",
				State:                corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, ContainerID: "containerd://init-1"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, ContainerID: "containerd://init-0"}}}},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "app", ContainerID: "containerd://app-2", Ready: true, RestartCount: 1,
					State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
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
		TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: fullMeta(),
		Spec: PodSpec{
			NodeName: "node-a", HostNetwork: true,
			InitContainers: []Container{{Name: "init", Image: "registry.example/init:0.1"}},
			Containers: []Container{{Name: "app", Image: "registry.example:5000/team/app:1.2"},
				{Name: "sidecar", Image: "registry.example/sidecar@sha256:0123"}},
		},
		Status: PodStatus{
			Phase: PodRunning, PodIP: "10.1.0.7", PodIPs: []PodIP{{IP: "10.1.0.7"}, {IP: "fd00::7"}}, StartTime: &started,
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
		TypeMeta:   metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "node-a", UID: "node-uid", Labels: map[string]string{"zone": "z1"}, Annotations: map[string]string{"a": "b"}},
		Spec:       NodeSpec{PodCIDR: "10.1.0.0/24", PodCIDRs: []string{"10.1.0.0/24", "fd00:1::/64"}},
		Status:     NodeStatus{Addresses: []NodeAddress{{Address: "192.0.2.1"}, {Address: "node-a"}}},
	}
}

func fullPodList() *PodList {
	other := fullPod()
	other.Name, other.UID, other.Status.Phase = "other", "other-uid", PodSucceeded
	return &PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"},
		ListMeta: metav1.ListMeta{ResourceVersion: "50", Continue: "next"}, Items: []Pod{*fullPod(), *other}}
}

// populated fails for every field of this package's types in v that is
// zero: a field added to a type must be set in the fixtures, so that the
// JSON and deep-copy tests cover it.
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
		if v.Type().PkgPath() != reflect.TypeFor[Pod]().PkgPath() {
			return // metav1 types: non-zero is enough
		}
		for i := 0; i < v.NumField(); i++ {
			populated(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	}
}

// decodeJSON decodes b the way the pod cache's REST client does: with the
// JSON serializer of a scheme that AddToScheme filled (case-sensitive field
// names, unknown fields ignored).
func decodeJSON(t *testing.T, b []byte) runtime.Object {
	t.Helper()
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	obj, gvk, err := serializer.NewCodecFactory(s).UniversalDeserializer().Decode(b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if gvk.GroupVersion() != SchemeGroupVersion {
		t.Errorf("decoded as %v", gvk)
	}
	return obj
}

// TestJSONFromCoreV1: what the API server sends for a core/v1 Pod, PodList
// or Node decodes into these types with every field set, so a JSON name that
// is not the Kubernetes API's cannot go unnoticed.
func TestJSONFromCoreV1(t *testing.T) {
	for _, want := range []runtime.Object{fullPod(), fullNode(), fullPodList()} {
		populated(t, reflect.ValueOf(want), reflect.TypeOf(want).Elem().Name())
	}

	corePods := &corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"},
		ListMeta: metav1.ListMeta{ResourceVersion: "50", Continue: "next"}}
	other := fullCorePod()
	other.Name, other.UID, other.Status.Phase = "other", "other-uid", corev1.PodSucceeded
	corePods.Items = []corev1.Pod{*fullCorePod(), *other}

	for _, tc := range []struct {
		core runtime.Object
		want runtime.Object
	}{
		{fullCorePod(), fullPod()},
		{fullCoreNode(), fullNode()},
		{corePods, fullPodList()},
	} {
		b, err := json.Marshal(tc.core)
		if err != nil {
			t.Fatal(err)
		}
		got := decodeJSON(t, b)
		// The decoder may leave kind and apiVersion out; they are not
		// what is compared.
		got.GetObjectKind().SetGroupVersionKind(tc.want.GetObjectKind().GroupVersionKind())
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%T from JSON\n%#v\nwant\n%#v", tc.want, got, tc.want)
		}
	}

	// A field name differing only in case is not the API's: the REST
	// client's decoder does not match it.
	got := decodeJSON(t, []byte(`{"kind":"Pod","apiVersion":"v1","status":{"podIps":[{"ip":"10.1.0.7"}],"podIP":"10.1.0.7"}}`)).(*Pod)
	if len(got.Status.PodIPs) != 0 || got.Status.PodIP != "10.1.0.7" {
		t.Errorf("status %+v", got.Status)
	}
}

// shares reports the first reference a and b have in common: a pointer,
// slice array or map reachable from both, which a deep copy must not have.
func shares(a, b reflect.Value, path string) string {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		return shares(a.Elem(), b.Elem(), path)
	case reflect.Map:
		if !a.IsNil() && !b.IsNil() && a.Pointer() == b.Pointer() {
			return path
		}
	case reflect.Slice:
		if a.Len() > 0 && b.Len() > 0 && a.Pointer() == b.Pointer() {
			return path
		}
		for i := 0; i < min(a.Len(), b.Len()); i++ {
			if p := shares(a.Index(i), b.Index(i), path+"[]"); p != "" {
				return p
			}
		}
	case reflect.Struct:
		if a.Type() == reflect.TypeFor[time.Time]() {
			return "" // its *Location is shared on purpose
		}
		for i := 0; i < a.NumField(); i++ {
			if p := shares(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); p != "" {
				return p
			}
		}
	}
	return ""
}

func TestDeepCopyObject(t *testing.T) {
	for _, tc := range []struct {
		orig  runtime.Object
		fresh func() runtime.Object
		// scribble changes what the copy references.
		scribble func(runtime.Object)
	}{
		{fullPod(), func() runtime.Object { return fullPod() }, func(o runtime.Object) {
			p := o.(*Pod)
			p.Labels["app"] = "changed"
			p.OwnerReferences[0].Name = "changed"
			p.DeletionTimestamp.Time = time.Time{}
			p.Spec.Containers[0].Image = "changed"
			p.Spec.InitContainers[0].Name = "changed"
			p.Status.PodIPs[0].IP = "changed"
			p.Status.StartTime.Time = time.Time{}
			p.Status.ContainerStatuses[0].LastTerminationState.Terminated.ContainerID = "changed"
			p.Status.InitContainerStatuses[0].ContainerID = "changed"
		}},
		{fullPodList(), func() runtime.Object { return fullPodList() }, func(o runtime.Object) {
			l := o.(*PodList)
			l.Items[0].Annotations["note"] = "changed"
			l.Items[1].Status.ContainerStatuses[1].LastTerminationState.Terminated.ContainerID = "changed"
		}},
		{fullNode(), func() runtime.Object { return fullNode() }, func(o runtime.Object) {
			n := o.(*Node)
			n.Labels["zone"] = "changed"
			n.Spec.PodCIDRs[0] = "changed"
			n.Status.Addresses[0].Address = "changed"
		}},
	} {
		name := reflect.TypeOf(tc.orig).Elem().Name()
		c := tc.orig.DeepCopyObject()
		if !reflect.DeepEqual(c, tc.orig) {
			t.Errorf("%s: copy differs\n%#v\nwant\n%#v", name, c, tc.orig)
		}
		if p := shares(reflect.ValueOf(tc.orig), reflect.ValueOf(c), name); p != "" {
			t.Errorf("%s: copy shares %s with the original", name, p)
		}
		tc.scribble(c)
		if !reflect.DeepEqual(tc.orig, tc.fresh()) {
			t.Errorf("%s: changing the copy changed the original: %#v", name, tc.orig)
		}
	}

	// nil and empty stay what they are.
	if (*Pod)(nil).DeepCopyObject() != nil || (*PodList)(nil).DeepCopyObject() != nil || (*Node)(nil).DeepCopyObject() != nil {
		t.Error("copy of nil is not nil")
	}
	empty := &Pod{Spec: PodSpec{Containers: []Container{}}}
	if c := empty.DeepCopy(); c.Spec.Containers == nil || c.Spec.InitContainers != nil || c.Status.StartTime != nil {
		t.Errorf("copy of %#v is %#v", empty, c)
	}
}
