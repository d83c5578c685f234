// Package kubetypes holds the few Kubernetes core/v1 objects podstamp reads
// from the API server: Pod, PodList and Node, with only the fields the pod
// cache uses. Their JSON names are the Kubernetes API's, so the JSON the API
// server sends for a v1 Pod or Node decodes into them; every other field of
// the object is ignored.
//
// They replace k8s.io/api/core/v1, whose ~200 generated types (with their
// protobuf code, deep copies and documentation, all kept by the linker
// because of reflection) were about a third of the podstamp binary. Without
// generated protobuf code these types are read as JSON only, but for a
// hand-written decoder of the same fields (proto.go) that reads pods, pod
// lists, Status and watch events in the Kubernetes protobuf encoding too.
//
// The object metadata, list metadata, Status and watch event types of
// meta.k8s.io/v1 are here too (meta.go), again with only the fields podstamp
// reads, so that the podstamp binary links no k8s.io/apimachinery package:
// apimachinery and client-go were about a quarter of the binary, and on
// current kernels the pages of the binary are most of podstamp's resident
// memory.
package kubetypes

// Pod is a v1 Pod.
type Pod struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata,omitempty"`

	Spec   PodSpec   `json:"spec,omitempty"`
	Status PodStatus `json:"status,omitempty"`
}

// PodList is a v1 PodList.
type PodList struct {
	TypeMeta `json:",inline"`
	ListMeta `json:"metadata,omitempty"`

	Items []Pod `json:"items"`
}

// PodSpec is the part of a pod's spec podstamp reads.
type PodSpec struct {
	InitContainers []Container `json:"initContainers,omitempty"`
	Containers     []Container `json:"containers"`
	NodeName       string      `json:"nodeName,omitempty"`
	HostNetwork    bool        `json:"hostNetwork,omitempty"`
	Hostname       string      `json:"hostname,omitempty"`
}

// Container is the part of a container podstamp reads.
type Container struct {
	Name  string `json:"name"`
	Image string `json:"image,omitempty"`
	// RestartPolicy is Always for a sidecar (an init container that keeps running).
	RestartPolicy string `json:"restartPolicy,omitempty"`
}

// PodPhase is a pod's status.phase.
type PodPhase string

// The pod phases.
const (
	PodPending   PodPhase = "Pending"
	PodRunning   PodPhase = "Running"
	PodSucceeded PodPhase = "Succeeded"
	PodFailed    PodPhase = "Failed"
	PodUnknown   PodPhase = "Unknown"
)

// PodStatus is the part of a pod's status podstamp reads.
type PodStatus struct {
	Phase                 PodPhase          `json:"phase,omitempty"`
	PodIP                 string            `json:"podIP,omitempty"`
	PodIPs                []PodIP           `json:"podIPs,omitempty"`
	StartTime             *Time             `json:"startTime,omitempty"`
	InitContainerStatuses []ContainerStatus `json:"initContainerStatuses,omitempty"`
	ContainerStatuses     []ContainerStatus `json:"containerStatuses,omitempty"`
}

// PodIP is one entry of status.podIPs.
type PodIP struct {
	IP string `json:"ip"`
}

// ContainerStatus is the part of a container's status podstamp reads: the
// ID of the running container and of the last terminated one.
type ContainerStatus struct {
	Name                 string         `json:"name"`
	LastTerminationState ContainerState `json:"lastState,omitempty"`
	ContainerID          string         `json:"containerID,omitempty"`
	ImageID              string         `json:"imageID,omitempty"`
	RestartCount         int32          `json:"restartCount,omitempty"`
}

// ContainerState is a container's lastState; only terminated is read.
type ContainerState struct {
	Terminated *ContainerStateTerminated `json:"terminated,omitempty"`
}

// ContainerStateTerminated is the part of a terminated container's state
// podstamp reads.
type ContainerStateTerminated struct {
	ContainerID string `json:"containerID,omitempty"`
}

// Node is a v1 Node.
type Node struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata,omitempty"`

	Spec   NodeSpec   `json:"spec,omitempty"`
	Status NodeStatus `json:"status,omitempty"`
}

// NodeSpec is the part of a node's spec podstamp reads.
type NodeSpec struct {
	PodCIDR  string   `json:"podCIDR,omitempty"`
	PodCIDRs []string `json:"podCIDRs,omitempty"`
}

// NodeStatus is the part of a node's status podstamp reads.
type NodeStatus struct {
	Addresses []NodeAddress `json:"addresses,omitempty"`
}

// NodeAddress is one entry of a node's status.addresses; its type
// (InternalIP, Hostname, ...) is not read.
type NodeAddress struct {
	Address string `json:"address"`
}
