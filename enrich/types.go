package enrich

import (
	"context"
	"net/netip"
	"time"
)

// Signal identifies one OTLP signal. Every export request of every signal has
// the same outer shape on the wire: repeated Resource<Signal> = 1, each with
// Resource resource = 1.
type Signal uint8

const (
	Traces Signal = iota
	Metrics
	Logs
	Profiles
)

// Signals lists every signal, in a fixed order.
var Signals = [...]Signal{Traces, Metrics, Logs, Profiles}

func (s Signal) String() string {
	switch s {
	case Traces:
		return "traces"
	case Metrics:
		return "metrics"
	case Logs:
		return "logs"
	case Profiles:
		return "profiles"
	}
	return "unknown"
}

// Pod is what podstamp knows about one pod: only the fields it may stamp or
// associate by. Values are immutable once published by a cache: callers must
// not modify a *Pod they did not create.
type Pod struct {
	Namespace string
	Name      string
	UID       string
	// IPs are the entries of status.podIPs, IPv4 addresses in their 4-byte form.
	IPs       []netip.Addr
	StartTime time.Time
	// Created is metadata.creationTimestamp.
	Created     time.Time
	NodeName    string
	HostNetwork bool
	// Hostname is spec.hostname (k8s.pod.hostname); empty when unset.
	Hostname    string
	Labels      map[string]string
	Annotations map[string]string

	// Workloads are the owners podstamp derived, without cluster-wide watches:
	// the ReplicaSet and its Deployment, StatefulSet, DaemonSet, Job and its CronJob.
	Workloads []Workload

	Containers []Container

	// Namespace and node metadata, filled only when a rule asks for them.
	NamespaceLabels      map[string]string
	NamespaceAnnotations map[string]string
	NodeLabels           map[string]string
	NodeAnnotations      map[string]string
	NodeUID              string
	// ClusterUID is the UID of namespace kube-system, filled only when a
	// rule asks for k8s.cluster.uid.
	ClusterUID string
}

// WorkloadKind is the lower-case kind used in attribute names:
// k8s.<kind>.name and k8s.<kind>.uid.
type WorkloadKind string

const (
	Deployment  WorkloadKind = "deployment"
	ReplicaSet  WorkloadKind = "replicaset"
	StatefulSet WorkloadKind = "statefulset"
	DaemonSet   WorkloadKind = "daemonset"
	Job         WorkloadKind = "job"
	CronJob     WorkloadKind = "cronjob"
)

// Workload is one owner of a pod. UID is empty unless it was looked up;
// Labels and Annotations are filled only when a rule reads them.
type Workload struct {
	Kind        WorkloadKind
	Name        string
	UID         string
	Labels      map[string]string
	Annotations map[string]string
}

// Container is one container of a pod (init containers included).
type Container struct {
	Name string
	// Init is set for an init container, Sidecar for an init container
	// that keeps running (restartPolicy: Always). Neither is a regular
	// container: only regular containers count when deciding that a pod
	// has one container.
	Init, Sidecar bool
	// ImageName and ImageTag are split from the spec's image reference
	// (registry/repo:tag[@digest]); ImageTag defaults to "latest" when the
	// reference has neither tag nor digest.
	ImageName string
	ImageTag  string
	// ImageVersion is the version the reference pins: tag, tag@digest or
	// digest (service.version).
	ImageVersion string
	// RepoDigest is the canonical repository digest the runtime reports
	// (status imageID as repo@sha256:...), when it is one.
	RepoDigest string
	// RestartCount is the restart count of the current run: IDs[0] is that
	// run's ID, IDs[1] (when present) the previous run's.
	RestartCount int
	// IDs are the container IDs of the status, without the runtime prefix
	// ("containerd://"), current and previous restarts.
	IDs []string
}

// Result says how the pod of one request was found, or why it was not. It is
// the label of podstamp_enrich_total.
type Result string

const (
	ResultHit               Result = "hit"                // peer found in the cache at once
	ResultHoldHit           Result = "hold_hit"           // peer found after holding the request
	ResultHoldTimeout       Result = "hold_timeout"       // held until --hold-timeout, forwarded unstamped
	ResultNoBudget          Result = "no_budget"          // hold budget full, forwarded unstamped at once
	ResultNATSuspected      Result = "nat_suspected"      // peer is the node or pod-CIDR gateway: SNAT
	ResultHostNetwork       Result = "host_network"       // peer is a hostNetwork pod / node address
	ResultResourceAttribute Result = "resource_attribute" // peer not resolved: no resources, or a relay trusted by cidrs whose resources named their pods
	ResultUnknown           Result = "unknown"            // peer resolves to no pod (negative cache, disabled)
)

// Results lists every Result, so metrics can be initialised to zero.
var Results = [...]Result{
	ResultHit, ResultHoldHit, ResultHoldTimeout, ResultNoBudget,
	ResultNATSuspected, ResultHostNetwork, ResultResourceAttribute, ResultUnknown,
}

// Lookup finds pods by the keys a resource can carry. Implementations are
// safe for concurrent use and never block.
type Lookup interface {
	ByUID(uid string) *Pod
	ByIP(ip netip.Addr) *Pod
	ByName(namespace, name string) *Pod
	ByContainerID(id string) *Pod
}

// Resolver is a Lookup that can also resolve a connection's peer address,
// waiting (holding the request) while the pod is not yet known.
type Resolver interface {
	Lookup
	// ResolvePeer returns the pod behind peer, or nil with the reason.
	// size is the request's size in bytes, charged to the hold budget while
	// the call waits. It returns a non-nil error only when ctx ended while
	// holding: the caller must then forward nothing.
	ResolvePeer(ctx context.Context, peer Peer, size int) (*Pod, Result, error)
}

// Peer is the connection a request arrived on: the only source of a
// sender's identity (see the package documentation).
type Peer struct {
	// Addr is the connection's remote address; invalid when it has none
	// (e.g. a Unix socket). It may be IPv4-mapped IPv6.
	Addr netip.Addr
	// Accepted is when the connection was accepted; zero when unknown. A
	// Resolver uses it for time-aware IP ownership: a pod that was already
	// deleted when the connection was accepted cannot have opened it, so
	// its address is not attributed to it even within the delete grace
	// period.
	Accepted time.Time
}
