// Package informer is podstamp's node-scoped pod cache. It implements
// enrich.Resolver: it finds the pod behind a connection's peer address and
// answers lookups by pod UID, namespace/name, address and container ID.
//
// # What it watches
//
// One list-and-watch of the pods of one node (field selector
// spec.nodeName=<node>, no resync; reflect.go). Every pod is turned into the
// few fields podstamp stamps as soon as it is decoded, so memory grows
// with the pods of this node, not with the cluster. Workloads are derived
// without cluster-wide watches: the Deployment is the ReplicaSet owner's name
// minus "-<pod-template-hash>", the CronJob is the Job owner's name minus a
// "-<digits>" suffix; StatefulSet, DaemonSet, Job and ReplicaSet come from
// owner references. Namespace labels/annotations, node labels/annotations/UID
// and workload UIDs are read only when Config asks for them, with on-demand
// GETs cached for MetadataTTL and refreshed every MetadataTTL. The watch loop
// never waits for such a GET: a pod is published at once with what is cached
// (an expired value until it is read again), which releases requests held
// for it, and a separate goroutine makes the GETs that are missing (each
// bounded by 2s) and publishes the pod again with them. A failed GET never
// stops stamping: the pod stays published without that metadata, and is
// published again once a later GET (at most one per object every 10s, or
// later if the server said so with Retry-After) succeeds.
//
// The pods are listed (in pages of 500; the first list may come from the
// API server's watch cache), then watched from the list's resource version
// with bookmarks; a watch the server ends after its timeout (5-10 minutes)
// is opened again from the last resource version seen. HTTP/2 pings (after
// 30s of silence, 15s to answer) drop a dead connection to the API server,
// and a watch still open 30s past its timeout with nothing received is
// given up. A watch whose stream breaks (the connection drops, or an event
// cannot be decoded) is counted and, after the backoff below, opened again
// from the last resource version seen; after 3 such breaks in a row with no
// event between them the pods are listed again. Any other failed list or
// watch (it cannot be opened, ends with an ERROR from the server, goes
// silent, or sends one event larger than 16 MiB) is counted
// (podstamp_cache_watch_errors_total), logged at most every 30s, and followed
// after a backoff (0.8s doubling to 30s, with jitter, and at least what the
// server asked for with Retry-After) by a new list, which
// catches up on what was missed: pods that are gone from it are deleted
// (matched by UID), the others upserted. A resource version the server no
// longer has (410 Gone) leads to a fresh list at once. While the API server
// is away the cache keeps serving what it has.
//
// # Reading the API
//
// New reads the API server through API, the six reads the cache makes: list
// and watch pods (New adds the node's field selector), get a node, and get
// the metadata of a namespace, a ReplicaSet or a Job. A refusal of the
// server is a *StatusError with the server's Status: IsNotFound is cached as
// an absent object, IsForbidden on the node is reported once, IsGone makes
// the watch list again.
//
// NewAPI implements API on net/http (HTTP/2 over TLS, a QPS limit), with
// the lean types of package kubetypes: only the fields the cache reads,
// with the Kubernetes API's JSON names. Pods and nodes are read as JSON
// (Accept: application/json). Namespaces, ReplicaSets and Jobs are read as
// metadata only (Accept: application/json;as=PartialObjectMetadata;
// g=meta.k8s.io;v=v1, application/json; an answer with the whole object is
// read the same way), which is all that is used of them (labels,
// annotations, UID, owner references). The same RBAC verbs apply (a
// metadata GET is a get). What it promises in place of client-go:
//
//   - A 429 or 5xx answer with Retry-After (seconds or a date) is waited
//     out, at most 1 minute, and the request sent again, up to 10 times, for
//     lists, watches and GETs alike. When the request's deadline comes
//     first, the error carries the wait (StatusError.RetryAfter) and the
//     cache does not ask again before it.
//   - A list page larger than 256 MiB, a GET answer or one watch event
//     larger than 16 MiB is an error saying so, never a truncated read; a
//     watch stream that breaks ends with an ERROR event the cache tells from
//     the server's.
//   - Token and client certificate files are read again every minute and at
//     once on a 401 answer; if they changed the request is sent once more. A
//     new client certificate gets new connections (the old ones are closed,
//     as the server authenticated them with the old one).
//
// Its configuration, RESTConfig, comes from the pod's service account
// (InClusterConfig: token and CA files) or a kubeconfig file
// (LoadKubeconfig). Every field of the kubeconfig's current context, its
// cluster and its user is implemented — server, CA (file or data),
// tls-server-name, insecure-skip-tls-verify, proxy-url, disable-compression,
// token or tokenFile, basic auth, client certificate and key (files or
// data), impersonation (as, as-uid, as-groups, as-user-extra) — or ignored
// because it changes neither who podstamp is nor what it trusts (extensions,
// the context's namespace, preferences), or refused at start with an error
// naming it: credential plugins (exec, auth-provider), any field podstamp
// does not know, and what client-go refuses too (a CA with
// insecure-skip-tls-verify, the same thing as file and data, a token with a
// token file or with basic auth, a user that the context names but the file
// lacks).
//
// No client-go, apimachinery or k8s.io/api package is linked (the tests use
// client-go's fake clientset through an adapter): client-go's REST client
// and informer with apimachinery's serializers were 3.7 MB of an 18 MB
// binary, k8s.io/api/core/v1 and the typed clientset before them much more,
// and on current kernels the pages of the binary are most of podstamp's
// resident memory.
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
// (enrich.Peer.Accepted, which the proxy records per connection). A connection
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
// # Which senders are on this node
//
// Only a sender on this node can be a pod of this cache, so only such a
// sender is held. IsLocal says a peer is on this node when it is loopback,
// an address of this node (Config.NodeIPs and the node's status.addresses),
// inside one of the node's spec.podCIDRs, or an address of a pod cached on
// this node (hostNetwork pods included). Any other peer, such as a brand-new
// pod whose address the cache has not seen yet on a node without a pod CIDR
// or with an IPAM that does not use it (Calico, AWS VPC CNI), is looked up
// in the kernel's routing table (Config.RouteLookup; netlink RTM_GETROUTE on
// Linux): it is on this node when its route is local, or has no gateway and
// leaves through an interface that carries none of the node's addresses (a
// bridge such as cni0 or docker0, a per-pod veth such as Calico's cali*).
// Off-node hosts on the node's own subnet leave through the node's
// interface; other nodes' pods are reached through a gateway (flannel,
// Calico IPIP, native routing). Route answers are reused for 10s, for at
// most 1024 addresses.
//
// The route can only tell in the node's network namespace (the chart's
// default hostNetwork mode). When no node address is known, when none of
// them is local here (podstamp runs in a pod network namespace, where every
// peer is reached through the pod's eth0), or when the lookup fails, such a
// peer counts as on this node and is held as before. A CNI that routes this
// node's pods through a gateway (Cilium with cluster-pool IPAM) is not
// recognised by the route: its new pods are only local once cached or inside
// a pod CIDR.
//
// # Holding
//
// ResolvePeer holds a request whose peer is on this node but not in the
// cache — before the first sync, every such request — until the informer
// indexes that address (woken by the event handler, no polling), HoldTimeout
// passes, or the caller's context ends. A peer that is not on this node is
// answered unknown at once.
//
// Held bytes are bounded by HoldMaxBytes, and per peer address by
// HoldMaxPerPeerRequests (default 16) and HoldMaxPerPeerBytes (default
// HoldMaxBytes/8): past any of them the answer is no_budget at once, for
// that peer only when its share is spent. So one sender cannot spend the
// budget a new pod's first export needs. An address whose hold timed out, or
// whose caller gave up while held, is answered unknown for HoldNegativeTTL
// unless a pod with it appears: a sender that cancels just before the
// timeout and sends again does not keep its share spent.
//
// # Readiness, metrics, debugging
//
// Ready is nil once the first list of this node's pods has been delivered to
// the cache and the node has been read once. Live fails when the cache's lock
// cannot be taken within 500ms (a wedged cache); only one probe waits for it
// at a time. Metrics, on the Registerer given to New: podstamp_cache_pods,
// podstamp_cache_synced, podstamp_held_bytes, podstamp_held_requests,
// podstamp_hold_duration_seconds{result},
// podstamp_hold_refused_total{reason=peer_requests|peer_bytes|budget|not_local},
// podstamp_cache_watch_errors_total and
// podstamp_metadata_lookup_errors_total{kind}. Nothing is logged per request:
// watch errors, the NAT warning and failed route lookups are rate-limited.
// DebugHandler serves /debug/pods: ?ip=ADDR explains how that address
// resolves and why (owner, competing pods, whether and why it is on this
// node, its held requests and bytes, negative-cache state); without it,
// every cached pod.
//
// # Not done here
//
// podstamp_enrich_total is counted by the caller from the Result. The cache
// does not watch namespaces, nodes or workloads, does not filter pods, and
// does not identify senders by anything but their address (no socket
// credentials, no conntrack).
package informer
