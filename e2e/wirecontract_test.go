package e2e

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	"k8s.io/utils/ptr"
)

var updateContract = flag.Bool("update-contract", false, "write the informer's contract files from k8s.io/api and client-go")

// TestInformerContractFiles: the main module does not depend on k8s.io/api
// or client-go, so the informer's unit tests decode JSON files that stand
// for what the API server sends, and check their kubeconfig reader against
// a list of client-go's kubeconfig fields. This test keeps those files
// true: each must be exactly what k8s.io/api encodes (or client-go's
// kubeconfig types list) at the versions this module pins. After an
// upgrade, `go test -run TestInformerContractFiles -update-contract`
// rewrites them, and the informer's tests then say what changed.
func TestInformerContractFiles(t *testing.T) {
	kubeconfigFields := map[string][]string{}
	for what, typ := range map[string]reflect.Type{
		"file":    reflect.TypeFor[clientcmdv1.Config](),
		"cluster": reflect.TypeFor[clientcmdv1.Cluster](),
		"user":    reflect.TypeFor[clientcmdv1.AuthInfo](),
		"context": reflect.TypeFor[clientcmdv1.Context](),
	} {
		for f := range typ.Fields() {
			if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
				kubeconfigFields[what] = append(kubeconfigFields[what], name)
			}
		}
	}
	corePods := &corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"},
		ListMeta: metav1.ListMeta{ResourceVersion: "50", Continue: "next"}}
	other := fullCorePod()
	other.Name, other.UID, other.Status.Phase = "other", "other-uid", corev1.PodSucceeded
	corePods.Items = []corev1.Pod{*fullCorePod(), *other}

	for file, v := range map[string]any{
		"../informer/testdata/pod-full.json":          cachePod(),
		"../informer/testdata/kubeconfig-fields.json": kubeconfigFields,
		"../informer/kubetypes/testdata/pod.json":     fullCorePod(),
		"../informer/kubetypes/testdata/podlist.json": corePods,
		"../informer/kubetypes/testdata/node.json":    fullCoreNode(),
	} {
		want, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, '\n')
		checkContractFile(t, file, want, "k8s.io/api", true)
	}
}

// checkContractFile compares file with want, what source encodes now, or
// writes want to it with -update-contract. show adds want to the error.
func checkContractFile(t *testing.T, file string, want []byte, source string, show bool) {
	t.Helper()
	if *updateContract {
		if err := os.WriteFile(file, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		msg := fmt.Sprintf("%s is not what %s encodes now; run this test with -update-contract and look at what changed",
			filepath.Base(file), source)
		if show {
			msg += "\n" + string(want)
		}
		t.Error(msg)
	}
}

// cachePod is a core/v1 pod with every field the pod cache reads set (init
// containers, last terminated containers, both address families, owner,
// deletion), and others it does not read.
func cachePod() *corev1.Pod {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	start := t0.Add(4 * time.Second)
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "web-7c9d8f6b50-x2x4z", UID: "uid-web", ResourceVersion: "42",
			CreationTimestamp: metav1.NewTime(t0), DeletionTimestamp: &metav1.Time{Time: t0.Add(time.Hour)},
			Labels:      map[string]string{"app": "web", "pod-template-hash": "7c9d8f6b50"},
			Annotations: map[string]string{"note": "x", "kubectl.kubernetes.io/last-applied-configuration": `{"kind":"Pod"}`},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7c9d8f6b50",
				UID: "rs-uid", Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{NodeName: "node-a", HostNetwork: true, ServiceAccountName: "web",
			InitContainers: []corev1.Container{{Name: "init", Image: "registry.example/init:0.1", Command: []string{"sh"}}},
			Containers: []corev1.Container{{Name: "app", Image: "registry.example:5000/team/app:1.2"},
				{Name: "sidecar", Image: "registry.example/sidecar@sha256:0123"}},
			Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, HostIP: "192.0.2.1", PodIP: "10.1.0.7",
			PodIPs:     []corev1.PodIP{{IP: "10.1.0.7"}, {IP: "fd00::7"}},
			StartTime:  &metav1.Time{Time: start},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", ContainerID: "containerd://init-1",
				State:                corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ContainerID: "containerd://init-1"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, ContainerID: "containerd://init-0"}}}},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "app", ContainerID: "containerd://cid-uid-web", Ready: true,
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, ContainerID: "containerd://app-0"}}},
				{Name: "sidecar", ContainerID: "cri-o://sidecar-1", Image: "registry.example/sidecar@sha256:0123"},
			},
		},
	}
}

// The times of fullCorePod.
var (
	created = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	started = time.Date(2026, 1, 2, 3, 4, 9, 0, time.UTC)
	deleted = time.Date(2026, 1, 2, 4, 0, 0, 0, time.UTC)
)

// fullCorePod is a core/v1 Pod with every field of kubetypes.Pod set, each
// to a distinct value, and many that kubetypes.Pod does not have.
func fullCorePod() *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-7c9d8f6b50-x2x4z", Namespace: "team", UID: "pod-uid", ResourceVersion: "42",
			CreationTimestamp: metav1.NewTime(created), DeletionTimestamp: &metav1.Time{Time: deleted}, DeletionGracePeriodSeconds: ptr.To[int64](30),
			Labels:      map[string]string{"app": "web", "pod-template-hash": "7c9d8f6b50"},
			Annotations: map[string]string{"note": "x", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7c9d8f6b50",
				UID: "rs-uid", Controller: ptr.To(true)}},
			Finalizers: []string{"example.com/f"},
		},
		Spec: corev1.PodSpec{
			NodeName: "node-a", HostNetwork: true, ServiceAccountName: "web", RestartPolicy: corev1.RestartPolicyAlways,
			Hostname: "web-host",
			InitContainers: []corev1.Container{{Name: "init", Image: "registry.example/init:0.1",
				Command: []string{"sh"}, Env: []corev1.EnvVar{{Name: "A", Value: "b"}},
				RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}},
			Containers: []corev1.Container{
				{Name: "app", Image: "registry.example:5000/team/app:1.2", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
					RestartPolicy: ptr.To(corev1.ContainerRestartPolicyNever),
					Resources:     corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}},
				{Name: "sidecar", Image: "registry.example/sidecar@sha256:0123", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)},
			},
			Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.1.0.7", HostIP: "192.0.2.1",
			PodIPs:     []corev1.PodIP{{IP: "10.1.0.7"}, {IP: "fd00::7"}},
			StartTime:  &metav1.Time{Time: started},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", ContainerID: "containerd://init-1", Image: "registry.example/init:0.1",
				ImageID: "registry.example/init@sha256:" + strings.Repeat("1", 64), RestartCount: 2,
				State:                corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, ContainerID: "containerd://init-1"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, ContainerID: "containerd://init-0"}}}},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "app", ContainerID: "containerd://app-2", Ready: true, RestartCount: 1,
					ImageID:              "registry.example:5000/team/app@sha256:" + strings.Repeat("2", 64),
					State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}},
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, ContainerID: "containerd://app-1"}}},
				{Name: "sidecar", ContainerID: "cri-o://sidecar-1", ImageID: "sha256:" + strings.Repeat("3", 64), RestartCount: 3,
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ContainerID: "cri-o://sidecar-0"}}},
			},
		},
	}
}

// fullCoreNode is a core/v1 Node with every field of kubetypes.Node set.
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
