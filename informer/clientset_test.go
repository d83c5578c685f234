package informer

import (
	"context"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/watchlist"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

// FromClientset adapts a client-go clientset (in the tests, the fake one of
// k8s.io/client-go/kubernetes/fake) to API, converting its core/v1 pods and
// nodes to the lean types of package kubetypes. It lives in a test file so
// that the podstamp binary links neither the typed clientset nor
// k8s.io/api.
func FromClientset(cs kubernetes.Interface) API { return clientsetAPI{cs: cs} }

type clientsetAPI struct{ cs kubernetes.Interface }

func (a clientsetAPI) ListPods(ctx context.Context, opts metav1.ListOptions) (*kubetypes.PodList, error) {
	l, err := a.cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts)
	if err != nil {
		return nil, err
	}
	return leanPodList(l), nil
}

// WatchPods converts the pods of the clientset's watch events; other event
// objects (a *metav1.Status with an error) pass unchanged.
func (a clientsetAPI) WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := a.cs.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, opts)
	if err != nil {
		return nil, err
	}
	return newLeanWatch(w), nil
}

// leanWatch converts the pods of another watch's events. Unlike
// watch.Filter, whose goroutine blocks for good when its reader stops
// reading, it ends when stopped.
type leanWatch struct {
	in   watch.Interface
	out  chan watch.Event
	stop chan struct{}
	once sync.Once
}

func newLeanWatch(in watch.Interface) *leanWatch {
	w := &leanWatch{in: in, out: make(chan watch.Event), stop: make(chan struct{})}
	go w.loop()
	return w
}

func (w *leanWatch) ResultChan() <-chan watch.Event { return w.out }

func (w *leanWatch) Stop() {
	w.once.Do(func() {
		close(w.stop)
		w.in.Stop()
	})
}

func (w *leanWatch) loop() {
	defer close(w.out)
	for {
		select {
		case ev, ok := <-w.in.ResultChan():
			if !ok {
				return
			}
			if p, isPod := ev.Object.(*corev1.Pod); isPod {
				ev.Object = leanPod(p)
			}
			select {
			case w.out <- ev:
			case <-w.stop:
				return
			}
		case <-w.stop:
			return
		}
	}
}

func (a clientsetAPI) GetNode(ctx context.Context, name string) (*kubetypes.Node, error) {
	n, err := a.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return leanNode(n), nil
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

// leanPod converts a core/v1 pod field by field; nothing is shared with p.
// TestLeanFromJSON checks it against what the REST client decodes from the
// pod's JSON.
func leanPod(p *corev1.Pod) *kubetypes.Pod {
	if p == nil {
		return nil
	}
	out := &kubetypes.Pod{
		TypeMeta:   p.TypeMeta,
		ObjectMeta: *p.ObjectMeta.DeepCopy(),
		Spec: kubetypes.PodSpec{
			InitContainers: leanContainers(p.Spec.InitContainers),
			Containers:     leanContainers(p.Spec.Containers),
			NodeName:       p.Spec.NodeName,
			HostNetwork:    p.Spec.HostNetwork,
		},
		Status: kubetypes.PodStatus{
			Phase:                 kubetypes.PodPhase(p.Status.Phase),
			PodIP:                 p.Status.PodIP,
			StartTime:             p.Status.StartTime.DeepCopy(),
			InitContainerStatuses: leanStatuses(p.Status.InitContainerStatuses),
			ContainerStatuses:     leanStatuses(p.Status.ContainerStatuses),
		},
	}
	if p.Status.PodIPs != nil {
		out.Status.PodIPs = make([]kubetypes.PodIP, len(p.Status.PodIPs))
		for i, ip := range p.Status.PodIPs {
			out.Status.PodIPs[i] = kubetypes.PodIP{IP: ip.IP}
		}
	}
	return out
}

func leanContainers(cs []corev1.Container) []kubetypes.Container {
	if cs == nil {
		return nil
	}
	out := make([]kubetypes.Container, len(cs))
	for i, c := range cs {
		out[i] = kubetypes.Container{Name: c.Name, Image: c.Image}
	}
	return out
}

func leanStatuses(ss []corev1.ContainerStatus) []kubetypes.ContainerStatus {
	if ss == nil {
		return nil
	}
	out := make([]kubetypes.ContainerStatus, len(ss))
	for i, s := range ss {
		out[i] = kubetypes.ContainerStatus{Name: s.Name, ContainerID: s.ContainerID}
		if t := s.LastTerminationState.Terminated; t != nil {
			out[i].LastTerminationState.Terminated = &kubetypes.ContainerStateTerminated{ContainerID: t.ContainerID}
		}
	}
	return out
}

func leanPodList(l *corev1.PodList) *kubetypes.PodList {
	out := &kubetypes.PodList{TypeMeta: l.TypeMeta, ListMeta: *l.ListMeta.DeepCopy()}
	if l.Items != nil {
		out.Items = make([]kubetypes.Pod, len(l.Items))
		for i := range l.Items {
			out.Items[i] = *leanPod(&l.Items[i])
		}
	}
	return out
}

func leanNode(n *corev1.Node) *kubetypes.Node {
	out := &kubetypes.Node{
		TypeMeta:   n.TypeMeta,
		ObjectMeta: *n.ObjectMeta.DeepCopy(),
		Spec: kubetypes.NodeSpec{
			PodCIDR:  n.Spec.PodCIDR,
			PodCIDRs: append([]string(nil), n.Spec.PodCIDRs...),
		},
	}
	for _, a := range n.Status.Addresses {
		out.Status.Addresses = append(out.Status.Addresses, kubetypes.NodeAddress{Address: a.Address})
	}
	return out
}

// podObjOf is toPodObj of a core/v1 pod, for tests that build pods with
// mkPod.
func podObjOf(p *corev1.Pod) *podObj { return toPodObj(leanPod(p)) }

// TestLeanWatch: events arrive converted, and a watch stopped while an event
// waits for its reader ends (TestMain checks that no goroutine is left).
func TestLeanWatch(t *testing.T) {
	in := watch.NewFakeWithChanSize(2, false)
	w := newLeanWatch(in)
	in.Add(mkPod(podSpec{name: "a", ips: []string{"10.9.0.1"}}))
	in.Error(&metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonExpired})
	ev := <-w.ResultChan()
	if p, ok := ev.Object.(*kubetypes.Pod); !ok || ev.Type != watch.Added || p.Name != "a" || p.Status.PodIP != "10.9.0.1" {
		t.Fatalf("first event %s %#v", ev.Type, ev.Object)
	}
	ev = <-w.ResultChan()
	if st, ok := ev.Object.(*metav1.Status); !ok || ev.Type != watch.Error || st.Reason != metav1.StatusReasonExpired {
		t.Fatalf("second event %s %#v", ev.Type, ev.Object)
	}
	in.Modify(mkPod(podSpec{name: "a", ips: []string{"10.9.0.1"}, phase: corev1.PodSucceeded}))
	w.Stop() // nobody reads the modification
	w.Stop()
	for range w.ResultChan() {
	}
	if !in.IsStopped() {
		t.Error("the clientset's watch was not stopped")
	}
}
