// Package informer is podstamp's node-scoped pod cache. It implements
// enrich.Resolver: it finds the pod behind a connection's peer address and
// answers lookups by pod UID, namespace/name, address and container ID.
//
// # What it promises
//
// Only the pods of one node are listed and watched (field selector
// spec.nodeName=<node>; listwatch.go), and each is kept as the few fields
// podstamp stamps, so memory grows with the pods of this node, not with
// the cluster. Workloads come from owner references and names (the
// Deployment of a ReplicaSet, the CronJob of a Job), without cluster-wide
// watches. Namespace, node and workload metadata is read only when Config
// asks for it, with on-demand GETs cached for MetadataTTL (meta.go). The
// watch loop never waits for such a GET, and a failed GET never stops
// stamping: the pod is published without that metadata and again once a
// later GET succeeds.
//
// The pods are read with one streaming list (a watch that starts with
// every pod of the node, sendInitialEvents) where the server offers it,
// else a LIST and a WATCH, as Kubernetes protobuf (JSON when the server
// answers JSON). The watch reconnects by itself; a relist catches up on
// what a broken or expired watch missed (pods gone from it are deleted,
// matched by UID).
// With Config.Kubelet the pods come from the kubelet instead (kubelet.go):
// its /pods, which lists the pods bound to its node from its own copy of
// the API server's objects, read every KubeletPollInterval and at once
// (at most every KubeletRefreshGap) while a request is held for an address
// the cache does not know. No pod is then read from the API server: per
// node, the API server serves one node GET at start and hourly instead of a
// watch. A read is applied as a relist, every pod included: the kubelet
// copies a newer status (the pod's address) into its copy of a pod without
// changing its resource version. With SkipNodeRead as well, the API server
// is not asked anything. NewKubelet reaches the kubelet with the same client
// and credentials as NewAPI; it needs get on nodes/pods (nodes/proxy on
// kubelets before Kubernetes 1.33).
// While the API server is away the cache keeps serving what it has. Every
// failed list or watch is counted (podstamp_cache_watch_errors_total) and
// logged at a bounded rate, and a wait the server asks for (Retry-After) is
// honoured.
//
// # Reading the API
//
// New reads the API server through API, the six reads the cache makes
// (client.go). A refusal of the server is a *StatusError with the server's
// Status: NotFound is cached as an absent object, Forbidden on the node is
// reported once, Gone makes the watch list again. NewAPI implements API on
// net/http with the lean types of package kubetypes; RESTConfig comes from
// the pod's service account (InClusterConfig) or a kubeconfig file
// (LoadKubeconfig), whose every field is used, ignored for a stated reason
// or refused at start with an error naming it (restconfig.go). Answers
// larger than the size caps are errors saying so, never truncated reads.
//
// No client-go, apimachinery or k8s.io/api package is linked, and the main
// module does not require them (the unit tests run on FakeAPI, an in-memory
// API server in a test file): client-go's REST client and informer with
// apimachinery's serializers were 3.7 MB of an 18 MB binary, and on current
// kernels the pages of the binary are most of podstamp's resident memory.
//
// # Addresses
//
// Every entry of status.podIPs is indexed (IPv4 and IPv6); IPv4-mapped IPv6
// peers are unmapped. hostNetwork pods are never indexed by address.
//
// When several cached pods list one address, a live pod wins over one that
// released it (finished, or deleted and within PodDeleteGrace), then the
// newest start time, then the pod seen latest (index.go). So an address
// moves only to a pod that started at the same time or later, or away from
// a holder that finished or was deleted, and the result does not depend on
// the order in which events arrive. A pod that finished or was deleted owns
// its address only for connections accepted before the cache saw it go
// (enrich.Peer.Accepted): a later connection is most likely from a new pod
// that reused the address, and is held rather than stamped with the old
// pod's identity.
//
// # Non-pod peers
//
// Known non-pod addresses (Config.NodeIPs, the node's addresses and the
// gateway of each of its pod CIDRs) are never held: they are answered
// host_network or nat_suspected at once (resolve.go says which is which).
// nat_suspected logs a rate-limited warning naming the cause and both
// fixes: run podstamp with hostNetwork, or send through a Service with
// internalTrafficPolicy: Local. Ready waits for the first read of the node,
// so these addresses are classified from the first request on.
//
// # Holding
//
// ResolvePeer holds a request whose peer is on this node (IsLocal; the
// kernel's routing table decides for an address the cache does not know,
// route.go) but not in the cache, until the informer indexes that address
// (woken by the event, no polling), HoldTimeout passes, or the caller's
// context ends. A peer that is not on this node is answered unknown at
// once. Held bytes are bounded in all (HoldMaxBytes) and per peer address
// (HoldMaxPerPeerRequests, HoldMaxPerPeerBytes): past a bound the answer is
// no_budget at once, for that peer only when its share is spent, so one
// sender cannot spend the budget a new pod's first export needs. An address
// whose hold timed out or was given up is answered unknown for
// HoldNegativeTTL unless a pod with it appears.
//
// # Readiness, metrics, debugging
//
// Ready is nil once the first list of this node's pods is in the cache and
// the node has been read once. Live fails when the cache's lock cannot be
// taken within a short time (a wedged cache). The metrics (metrics.go) are
// registered on the Registerer given to New. Nothing is logged per request.
// DebugHandler serves /debug/pods: how one address resolves and why, or
// every cached pod.
//
// # Not done here
//
// podstamp_enrich_total is counted by the caller from the Result. The cache
// does not watch namespaces, nodes or workloads, does not filter pods, and
// does not identify senders by anything but their address (no socket
// credentials, no conntrack).
package informer
