// Package informer is podstamp's node-scoped pod cache. It implements
// enrich.Resolver: it finds the pod behind a connection's peer address and
// answers lookups by pod UID, namespace/name, address and container ID.
//
// # What it watches
//
// One client-go informer on the pods of one node (field selector
// spec.nodeName=<node>, no resync). A transform function turns every pod into
// the few fields podstamp stamps as soon as it is decoded, so memory grows
// with the pods of this node, not with the cluster. Workloads are derived
// without cluster-wide watches: the Deployment is the ReplicaSet owner's name
// minus "-<pod-template-hash>", the CronJob is the Job owner's name minus a
// "-<digits>" suffix; StatefulSet, DaemonSet, Job and ReplicaSet come from
// owner references. Namespace labels/annotations, node labels/annotations/UID
// and workload UIDs are read only when Config asks for them, with on-demand
// GETs cached for MetadataTTL and refreshed every MetadataTTL. A GET that is
// not cached is made when a pod event needs it, before the pod is published,
// bounded by 2s; a failed GET never stops stamping: the pod is published
// without that metadata, and published again once a later GET (at most one
// per object every 10s) succeeds.
//
// The watch reconnects by itself. While the API server is away the cache keeps
// serving what it has; the relist that follows catches up on missed events.
//
// # Reading the API
//
// New reads the API server through API, the six reads the cache makes: list
// and watch pods (New adds the node's field selector), get a node, and get
// the metadata of a namespace, a ReplicaSet or a Job. Errors keep the
// meaning of k8s.io/apimachinery/pkg/api/errors: NotFound is cached as an
// absent object, Forbidden on the node is reported once.
//
// NewAPI implements API on one client-go REST client (rest.RESTClientFor)
// with a scheme of its own: the v1 Pod, PodList and Node of package
// kubetypes plus the meta.k8s.io types. Those are lean types with only the
// fields the cache reads (JSON names as in the Kubernetes API, hand-written
// deep copies), not k8s.io/api/core/v1, so pods and nodes are read as JSON
// (Accept: application/json; protobuf would need core/v1's generated code).
// Namespaces, ReplicaSets and Jobs are read as metadata only
// (Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,
// application/json; an answer with the whole object is read the same way),
// which is all that is used of them (labels, annotations, UID, owner
// references). No k8s.io/api package is linked, and neither is client-go's
// typed clientset with its scheme of every API group: that code alone cost
// an idle podstamp about 16 MiB of resident memory, and core/v1 was about a
// sixth of the binary. The same RBAC verbs apply (a metadata GET is a get).
//
// client-go's reflector streams the initial list when it can (the
// WatchListClient feature, a watch with sendInitialEvents=true) and falls
// back to list+watch when the server refuses; NewAPI's REST client supports
// both, as the typed clientset did. An API that cannot stream (the tests'
// adapter of the fake clientset, which converts its core/v1 objects to the
// lean types) says so with an IsWatchListSemanticsUnSupported() bool method,
// which New passes on to the reflector.
//
// # Addresses
//
// Every entry of status.podIPs is indexed (IPv4 and IPv6); IPv4-mapped IPv6
// peers are unmapped. hostNetwork pods are never indexed by address. Loopback
// pod addresses (127.0.0.x in tests) are ordinary addresses.
//
// When several cached pods list one address, the owner is: a live (pending or
// running) pod over one that released the address (finished Succeeded/Failed,
// or deleted and within the grace period); among equals, the newest start
// time, then the pod first seen latest. So an address moves only to a pod that
// started at the same time or later, or away from a holder that finished or
// was deleted. Deletes are matched by UID. A deleted pod stays resolvable for
// PodDeleteGrace, but never shadows a live pod with the same address. The
// result does not depend on the order in which events arrive.
//
// Ownership is also time-aware: a pod that finished or was deleted owns its
// address only for connections accepted before the cache saw it finish or go
// (enrich.ConnTime, which the proxy records per connection). A connection
// opened later cannot be that pod's; it is most likely from a new pod that reused the address and
// whose status has not reached the cache yet, so its request is held like any
// other miss instead of being stamped with the deleted pod's identity.
//
// # Non-pod peers and the NAT diagnosis
//
// Known non-pod addresses are never held. They are Config.NodeIPs, the node's
// status.addresses and the first address of each spec.podCIDRs (the .1 a
// bridge CNI gives the node side of the pod network); the node object is read
// once per MetadataTTL when RBAC allows it, otherwise only Config.NodeIPs are
// known. The rule:
//
//   - the pod-CIDR gateway: nat_suspected. No pod sends from it; it is what a
//     hostPort (portmap) masquerade produces.
//   - an address of a live hostNetwork pod on this node (usually the node's
//     InternalIP): host_network. A hostNetwork sender and traffic masqueraded to
//     that same address cannot be told apart; the legitimate case wins.
//   - any other node address: nat_suspected (host_network until the first sync,
//     while hostNetwork pods are not known yet).
//
// Until the node has been read, a gateway or node address not in
// Config.NodeIPs is unknown and held like any other; the read releases such
// requests with their classification. Ready waits for that first read.
//
// nat_suspected also logs a rate-limited warning naming the cause and both
// fixes: run podstamp with hostNetwork, or send through a Service with
// internalTrafficPolicy: Local.
//
// # Holding
//
// ResolvePeer holds a request whose peer is not in the cache — before the
// first sync, every such request — until the informer indexes that address
// (woken by the event handler, no polling), HoldTimeout passes, or the
// caller's context ends. Held bytes are bounded by HoldMaxBytes; past it the
// answer is no_budget at once. An address whose hold timed out is answered
// unknown for HoldNegativeTTL unless a pod with it appears.
//
// # Readiness, metrics, debugging
//
// Ready is nil once the first list of this node's pods has been delivered to
// the cache and the node has been read once. Metrics, on the Registerer given
// to New: podstamp_cache_pods, podstamp_cache_synced, podstamp_held_bytes,
// podstamp_held_requests, podstamp_hold_duration_seconds{result},
// podstamp_cache_watch_errors_total and
// podstamp_metadata_lookup_errors_total{kind}. Nothing is logged per request:
// watch errors and the NAT warning are rate-limited. DebugHandler serves
// /debug/pods: ?ip=ADDR explains how that address resolves and why (owner,
// competing pods, held requests, negative-cache state); without it, every
// cached pod.
//
// # Not done here
//
// podstamp_enrich_total is counted by the caller from the Result. The cache
// does not watch namespaces, nodes or workloads, does not filter pods, and
// does not identify senders by anything but their address (no socket
// credentials, no conntrack).
package informer
