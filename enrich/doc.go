// Package enrich adds Kubernetes pod identity to OTLP export requests.
//
// Given the rule set (Config) and a pod lookup (Resolver), a Stamper adds the
// k8s.* attributes of the pod each resource came from to every resource of a
// protobuf-encoded Export{Traces,Metrics,Logs,Profiles}ServiceRequest,
// working on the wire format directly. PdataStamper applies the same rules
// through a pdata round trip; it is the reference the wire stamper is tested
// and measured against.
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
//   - A non-empty attribute the client sent is never replaced, unless
//     overwrite.keys lists its key or it is a service.name starting with
//     "unknown_service" and overwrite.unknown_service is on. An empty string
//     or an unset value counts as absent.
//   - Each resource finds its pod by the first association source it can use,
//     in the configured order: its own k8s.pod.uid, k8s.pod.ip,
//     k8s.pod.name + k8s.namespace.name or container.id attribute, or the
//     connection's peer. A source that is present but names no known pod
//     does not fall through: nothing is stamped on that resource, so a
//     forwarder relaying other pods' data never gets its own identity stamped
//     on theirs.
//   - The peer is resolved (Resolver.ResolvePeer, which may hold the request)
//     at most once per request and only if some resource needs it. The
//     returned Result is resource_attribute when no resource needed the peer,
//     else the peer's Result. When ctx ends while held, Enrich returns
//     ctx's error and no output.
//   - k8s.pod.ip is only ever an address of the resolved pod: its first
//     address of the peer's family when found through the connection, else its
//     first address. Never the peer address itself.
//   - Container attributes (k8s.container.name, container.image.name,
//     container.image.tag, container.id) are stamped only when the pod has one
//     container or the resource names its container by container.id or
//     k8s.container.name.
//   - A request whose envelope or resource level is not valid protobuf gets
//     an error wrapping ErrMalformed.
//   - Cost: one output buffer (appended to the caller's dst) and a constant
//     number of allocations per request, none per span; encoded attributes are
//     cached per pod. EnrichSegments returns the same output without the
//     output buffer: as segments that reference body's unchanged ranges of
//     2 KiB or more, and put everything else (new lengths, attributes,
//     short ranges) in a small side buffer the caller reuses; with reused
//     slices it allocates nothing in steady state. body is never modified
//     or retained, but the segments alias it while the caller uses them.
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
//   - Falling back to the connection when a resource attribute names an
//     unknown pod, and stamping anything on a resource whose pod is unknown
//     (k8s.cluster.name included).
//   - Validating UTF-8 of keys and values the client sent.
package enrich
