package kubetypes

import (
	"slices"

	"k8s.io/apimachinery/pkg/runtime"
)

// DeepCopyInto copies p into out; nothing is shared.
func (p *Pod) DeepCopyInto(out *Pod) {
	*out = *p
	p.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	p.Spec.DeepCopyInto(&out.Spec)
	p.Status.DeepCopyInto(&out.Status)
}

// DeepCopy returns a copy of p that shares nothing with it.
func (p *Pod) DeepCopy() *Pod {
	if p == nil {
		return nil
	}
	out := new(Pod)
	p.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (p *Pod) DeepCopyObject() runtime.Object {
	if c := p.DeepCopy(); c != nil {
		return c
	}
	return nil
}

// DeepCopyInto copies l into out; nothing is shared.
func (l *PodList) DeepCopyInto(out *PodList) {
	*out = *l
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]Pod, len(l.Items))
		for i := range l.Items {
			l.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
}

// DeepCopy returns a copy of l that shares nothing with it.
func (l *PodList) DeepCopy() *PodList {
	if l == nil {
		return nil
	}
	out := new(PodList)
	l.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *PodList) DeepCopyObject() runtime.Object {
	if c := l.DeepCopy(); c != nil {
		return c
	}
	return nil
}

// DeepCopyInto copies s into out; nothing is shared.
func (s *PodSpec) DeepCopyInto(out *PodSpec) {
	*out = *s
	out.InitContainers = slices.Clone(s.InitContainers) // Container has no references
	out.Containers = slices.Clone(s.Containers)
}

// DeepCopyInto copies s into out; nothing is shared.
func (s *PodStatus) DeepCopyInto(out *PodStatus) {
	*out = *s
	out.PodIPs = slices.Clone(s.PodIPs) // PodIP has no references
	if s.StartTime != nil {
		out.StartTime = s.StartTime.DeepCopy()
	}
	out.InitContainerStatuses = copyStatuses(s.InitContainerStatuses)
	out.ContainerStatuses = copyStatuses(s.ContainerStatuses)
}

func copyStatuses(in []ContainerStatus) []ContainerStatus {
	if in == nil {
		return nil
	}
	out := make([]ContainerStatus, len(in))
	for i := range in {
		in[i].DeepCopyInto(&out[i])
	}
	return out
}

// DeepCopyInto copies s into out; nothing is shared.
func (s *ContainerStatus) DeepCopyInto(out *ContainerStatus) {
	*out = *s
	s.LastTerminationState.DeepCopyInto(&out.LastTerminationState)
}

// DeepCopyInto copies s into out; nothing is shared.
func (s *ContainerState) DeepCopyInto(out *ContainerState) {
	*out = *s
	if s.Terminated != nil {
		t := *s.Terminated // ContainerStateTerminated has no references
		out.Terminated = &t
	}
}

// DeepCopyInto copies n into out; nothing is shared.
func (n *Node) DeepCopyInto(out *Node) {
	*out = *n
	n.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.Spec.PodCIDRs = slices.Clone(n.Spec.PodCIDRs)
	out.Status.Addresses = slices.Clone(n.Status.Addresses) // NodeAddress has no references
}

// DeepCopy returns a copy of n that shares nothing with it.
func (n *Node) DeepCopy() *Node {
	if n == nil {
		return nil
	}
	out := new(Node)
	n.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (n *Node) DeepCopyObject() runtime.Object {
	if c := n.DeepCopy(); c != nil {
		return c
	}
	return nil
}

var (
	_ runtime.Object = (*Pod)(nil)
	_ runtime.Object = (*PodList)(nil)
	_ runtime.Object = (*Node)(nil)
)
