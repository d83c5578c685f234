// Package enrich adds Kubernetes pod identity to OTLP export requests.
//
// Given the rule set (Config, compiled once into Rules by Compile or Load)
// and a pod lookup (Resolver), a Stamper adds the k8s.* attributes of the pod
// each resource came from to every resource of a protobuf-encoded
// Export{Traces,Metrics,Logs,Profiles}ServiceRequest, working on the wire
// format directly, and counts the request's items in the same pass. The package's tests apply the same rules through a pdata round
// trip (PdataStamper): the reference the wire stamper is tested and
// measured against.
//
// # Promises
//
//   - Only the request envelope, each Resource<Signal>'s Resource and that
//     Resource's attribute keys (and the string values association and
//     container selection read) are parsed. Spans, data points, log records,
//     profiles, the profiles dictionary, schema URLs and unknown fields are
//     copied byte for byte.
//   - When nothing is added the output is byte-identical to the input.
//     Otherwise new attributes are appended to the resource's attributes
//     (a Resource<Signal> without a Resource gets one), client attributes
//     podstamp replaces are removed, and only the two enclosing lengths change.
//   - Each added key appears exactly once in its resource.
//   - The connection is authoritative. A sender that matches no
//     trusted_relays rule gets every resource stamped with the pod the
//     Resolver finds behind its peer address; its resource attributes only
//     choose among that pod's containers (container.id, k8s.container.name).
//     When the peer resolves to no pod (unknown, hold timeout, no budget,
//     NAT, host network) nothing is stamped and nothing is replaced.
//   - Identity keys are k8s.namespace.name, k8s.pod.name, k8s.pod.uid,
//     k8s.pod.ip, k8s.node.name, container.id and k8s.<workload>.name /
//     .uid of deployment, replicaset, statefulset, daemonset, job, cronjob.
//     Such an attribute from an untrusted sender contradicts its pod when it
//     is a non-empty value other than the pod's; k8s.pod.ip when it is none
//     of the pod's addresses (or not an address); container.id only when the
//     Lookup knows it as a container of another pod (an unknown ID may be a
//     container whose status has not reached the cache, and is kept); a
//     workload UID the cache did not look up is not checked. Every
//     occurrence of a contradicting key is removed and the pod's true value,
//     when it has one, added, whatever the overwrite settings and metadata
//     list say. Each resource with a contradiction is reported once to the
//     WithConflictHandler callback, with copies of the claimed values.
//   - A sender matches a trusted_relays rule when all of the rule's fields
//     match: its address is in one of cidrs, its pod is in one of namespaces,
//     its pod has every pod_selector.match_labels label. A trusted relay's
//     resources find their pod by the first association source they can
//     use, in the configured order: their own k8s.pod.uid, k8s.pod.ip,
//     k8s.pod.name + k8s.namespace.name or container.id attribute, or the
//     connection's peer. A source that is present but names no known pod
//     does not fall through: nothing is stamped on that resource, so a relay
//     never gets its own identity stamped on other pods' data. Nothing a
//     trusted relay sends is checked for contradictions.
//   - Apart from contradicting identity keys, a non-empty attribute the
//     client sent is never replaced, unless overwrite.keys lists its key or
//     it is a service.name starting with "unknown_service" and
//     overwrite.unknown_service is on. An empty string or an unset value
//     counts as absent.
//   - The peer is resolved (Resolver.ResolvePeer, which may hold the request)
//     at most once per request, and only if the request has a resource and
//     the sender is not already trusted by a rule that only names cidrs. The
//     returned Result is the peer's Result when it was resolved, else
//     resource_attribute. When ctx ends while held, Stamp returns ctx's
//     error and no output.
//   - k8s.pod.ip is only ever an address of the resolved pod: its first
//     address of the peer's family when found through the connection, else its
//     first address. Never the peer address itself.
//   - Container attributes (k8s.container.name, container.image.name,
//     container.image.tag(s), container.image.repo_digests, container.id) are
//     stamped only for the container the resource names by container.id or
//     k8s.container.name (init and sidecar containers included), or else the
//     pod's only regular container (init and sidecar containers do not
//     count). container.id is that of the run the resource's container.id
//     or k8s.container.restart_count names: the current run, or the
//     previous one; another run gets none, never a wrong one.
//   - A pod that the filter or exclude rules leave out is stamped like an
//     unknown pod: nothing.
//   - A rule file in the k8sattributes processor's layout (a key only the
//     processor has, or its block under k8sattributes:) decodes with every
//     default the processor's; a key podstamp cannot honour is an error
//     naming it and why, never ignored. Both layouts compile into one Rules.
//   - A request whose envelope or resource level is not valid protobuf gets
//     an error wrapping ErrMalformed.
//   - Cost: no copy of the request. The output is segments that reference
//     body's unchanged ranges of 2 KiB or more, with everything else (new
//     lengths, attributes, short ranges) in a small side buffer the caller
//     reuses; with reused slices a request allocates nothing in steady
//     state, none per span; encoded attributes are cached per pod. Checking
//     identity keys allocates nothing unless a container.id is not one of
//     the pod's or a contradiction is found. body is never modified or
//     retained, but the segments alias it while the caller uses them.
//
// Attributes the rules produce, first rule wins for a key: metadata,
// k8s.cluster.name, otel_annotations (resource.opentelemetry.io/<key>),
// label rules, annotation rules, then service.* derivation in the order of
// the semantic conventions (annotation, then opt-in well-known labels
// app.kubernetes.io/{instance,name,version}, then workload, pod and
// container names; service.instance.id is <namespace>.<pod>.<container>).
//
// # Non-goals
//
//   - Validating what is below the resource level: a span with broken bytes
//     is forwarded as received.
//   - Decompression, JSON, or talking to Kubernetes: callers decode the
//     transport, and the pod cache (package informer) implements Resolver.
//   - Falling back to the connection when a trusted relay's resource
//     attribute names an unknown pod, and stamping anything on a resource
//     whose pod is unknown (k8s.cluster.name included).
//   - Checking attributes other than the identity keys (k8s.container.name,
//     service.*, labels) against the pod.
//   - Validating UTF-8 of keys and values the client sent.
package enrich
