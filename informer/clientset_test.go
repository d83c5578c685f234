package informer

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/watchlist"
)

// FromClientset adapts a client-go clientset (in the tests, the fake one of
// k8s.io/client-go/kubernetes/fake) to API. It lives in a test file so that
// the podstamp binary does not link the typed clientset.
func FromClientset(cs kubernetes.Interface) API { return clientsetAPI{cs: cs} }

type clientsetAPI struct{ cs kubernetes.Interface }

func (a clientsetAPI) ListPods(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	return a.cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts)
}

func (a clientsetAPI) WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return a.cs.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, opts)
}

func (a clientsetAPI) GetNode(ctx context.Context, name string) (*corev1.Node, error) {
	return a.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
}

func (a clientsetAPI) GetNamespaceMetadata(ctx context.Context, name string) (*metav1.PartialObjectMetadata, error) {
	o, err := a.cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return &metav1.PartialObjectMetadata{ObjectMeta: o.ObjectMeta}, nil
}

func (a clientsetAPI) GetReplicaSetMetadata(ctx context.Context, ns, name string) (*metav1.PartialObjectMetadata, error) {
	o, err := a.cs.AppsV1().ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return &metav1.PartialObjectMetadata{ObjectMeta: o.ObjectMeta}, nil
}

func (a clientsetAPI) GetJobMetadata(ctx context.Context, ns, name string) (*metav1.PartialObjectMetadata, error) {
	o, err := a.cs.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return &metav1.PartialObjectMetadata{ObjectMeta: o.ObjectMeta}, nil
}

// IsWatchListSemanticsUnSupported passes on what the clientset says: the
// fake one cannot stream initial events, so the reflector lists and watches.
func (a clientsetAPI) IsWatchListSemanticsUnSupported() bool {
	return watchlist.DoesClientNotSupportWatchListSemantics(a.cs)
}
