package informer

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

// FromClientset adapts a client-go clientset (in the tests, the fake one of
// k8s.io/client-go/kubernetes/fake) to API, converting its core/v1 pods and
// nodes to the lean types of package kubetypes. It lives in a test file so
// that the podstamp binary links neither the typed clientset nor
// k8s.io/api.
func FromClientset(cs kubernetes.Interface) API { return clientsetAPI{cs: cs} }

type clientsetAPI struct{ cs kubernetes.Interface }

// metaOptions is opts as client-go's options.
func metaOptions(opts ListOptions) metav1.ListOptions {
	o := metav1.ListOptions{
		FieldSelector:       opts.FieldSelector,
		ResourceVersion:     opts.ResourceVersion,
		Limit:               opts.Limit,
		Continue:            opts.Continue,
		AllowWatchBookmarks: opts.AllowWatchBookmarks,
	}
	if opts.TimeoutSeconds > 0 {
		o.TimeoutSeconds = &opts.TimeoutSeconds
	}
	return o
}

// leanErr converts the clientset's API errors (*apierrors.StatusError) to
// *StatusError; other errors pass unchanged.
func leanErr(err error) error {
	var se apiStatus
	if errors.As(err, &se) {
		st := se.Status()
		return &StatusError{Status: kubetypes.Status{Status: st.Status, Message: st.Message, Reason: string(st.Reason), Code: st.Code}}
	}
	return err
}

type apiStatus interface{ Status() metav1.Status }

func (a clientsetAPI) ListPods(ctx context.Context, opts ListOptions) (*kubetypes.PodList, error) {
	l, err := a.cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metaOptions(opts))
	if err != nil {
		return nil, leanErr(err)
	}
	return leanPodList(l), nil
}

// WatchPods converts the clientset's watch events: pods to lean pods, a
// *metav1.Status of an ERROR event to a kubetypes.Status.
func (a clientsetAPI) WatchPods(ctx context.Context, opts ListOptions) (Watcher, error) {
	w, err := a.cs.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, metaOptions(opts))
	if err != nil {
		return nil, leanErr(err)
	}
	return newLeanWatch(w), nil
}

// leanWatch converts another watch's events. Unlike watch.Filter, whose
// goroutine blocks for good when its reader stops reading, it ends when
// stopped.
type leanWatch struct {
	in   watch.Interface
	out  chan Event
	stop chan struct{}
	once sync.Once
}

func newLeanWatch(in watch.Interface) *leanWatch {
	w := &leanWatch{in: in, out: make(chan Event), stop: make(chan struct{})}
	go w.loop()
	return w
}

func (w *leanWatch) ResultChan() <-chan Event { return w.out }

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
			out := Event{Type: string(ev.Type)}
			switch o := ev.Object.(type) {
			case *corev1.Pod:
				out.Pod = leanPod(o)
			case *metav1.Status:
				out.Status = &kubetypes.Status{Status: o.Status, Message: o.Message, Reason: string(o.Reason), Code: o.Code}
			}
			select {
			case w.out <- out:
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
		return nil, leanErr(err)
	}
	return leanNode(n), nil
}

func (a clientsetAPI) GetNamespaceMetadata(ctx context.Context, name string) (*kubetypes.PartialObjectMetadata, error) {
	o, err := a.cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, leanErr(err)
	}
	return &kubetypes.PartialObjectMetadata{ObjectMeta: leanMeta(&o.ObjectMeta)}, nil
}

func (a clientsetAPI) GetReplicaSetMetadata(ctx context.Context, ns, name string) (*kubetypes.PartialObjectMetadata, error) {
	o, err := a.cs.AppsV1().ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, leanErr(err)
	}
	return &kubetypes.PartialObjectMetadata{ObjectMeta: leanMeta(&o.ObjectMeta)}, nil
}

func (a clientsetAPI) GetJobMetadata(ctx context.Context, ns, name string) (*kubetypes.PartialObjectMetadata, error) {
	o, err := a.cs.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, leanErr(err)
	}
	return &kubetypes.PartialObjectMetadata{ObjectMeta: leanMeta(&o.ObjectMeta)}, nil
}

// leanMeta converts object metadata field by field.
func leanMeta(m *metav1.ObjectMeta) kubetypes.ObjectMeta {
	out := kubetypes.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               string(m.UID),
		ResourceVersion:   m.ResourceVersion,
		CreationTimestamp: kubetypes.NewTime(m.CreationTimestamp.Time),
		Labels:            maps.Clone(m.Labels),
		Annotations:       maps.Clone(m.Annotations),
	}
	if m.DeletionTimestamp != nil {
		t := kubetypes.NewTime(m.DeletionTimestamp.Time)
		out.DeletionTimestamp = &t
	}
	for _, r := range m.OwnerReferences {
		ref := kubetypes.OwnerReference{APIVersion: r.APIVersion, Kind: r.Kind, Name: r.Name, UID: string(r.UID)}
		if r.Controller != nil {
			c := *r.Controller
			ref.Controller = &c
		}
		out.OwnerReferences = append(out.OwnerReferences, ref)
	}
	return out
}

// leanPod converts a core/v1 pod field by field; nothing is shared with p.
// TestLeanFromJSON checks it against what the REST client decodes from the
// pod's JSON.
func leanPod(p *corev1.Pod) *kubetypes.Pod {
	if p == nil {
		return nil
	}
	out := &kubetypes.Pod{
		TypeMeta:   kubetypes.TypeMeta{Kind: p.Kind, APIVersion: p.APIVersion},
		ObjectMeta: leanMeta(&p.ObjectMeta),
		Spec: kubetypes.PodSpec{
			InitContainers: leanContainers(p.Spec.InitContainers),
			Containers:     leanContainers(p.Spec.Containers),
			NodeName:       p.Spec.NodeName,
			HostNetwork:    p.Spec.HostNetwork,
		},
		Status: kubetypes.PodStatus{
			Phase:                 kubetypes.PodPhase(p.Status.Phase),
			PodIP:                 p.Status.PodIP,
			StartTime:             leanTime(p.Status.StartTime),
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

func leanTime(t *metav1.Time) *kubetypes.Time {
	if t == nil {
		return nil
	}
	out := kubetypes.NewTime(t.Time)
	return &out
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
	out := &kubetypes.PodList{
		TypeMeta: kubetypes.TypeMeta{Kind: l.Kind, APIVersion: l.APIVersion},
		ListMeta: kubetypes.ListMeta{ResourceVersion: l.ResourceVersion, Continue: l.Continue},
	}
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
		TypeMeta:   kubetypes.TypeMeta{Kind: n.Kind, APIVersion: n.APIVersion},
		ObjectMeta: leanMeta(&n.ObjectMeta),
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
	if p := ev.Pod; p == nil || ev.Type != kubetypes.Added || p.Name != "a" || p.Status.PodIP != "10.9.0.1" {
		t.Fatalf("first event %+v", ev)
	}
	ev = <-w.ResultChan()
	if st := ev.Status; st == nil || ev.Type != kubetypes.Error || st.Reason != kubetypes.StatusReasonExpired {
		t.Fatalf("second event %+v", ev)
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
