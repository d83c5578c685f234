// Package proxy is podstamp's OTLP forwarding core: it receives OTLP export
// requests over gRPC and HTTP, passes each through an Enricher (which may add
// pod attributes) and forwards it synchronously to an upstream collector over
// OTLP/gRPC or OTLP/HTTP, returning the upstream's answer to the client.
//
// # Promises
//
//   - All four signals: traces, metrics, logs and profiles (v1development), on
//     gRPC (the Export services, gzip accepted) and HTTP (POST /v1/traces,
//     /v1/metrics, /v1/logs, /v1development/profiles; protobuf or JSON;
//     Content-Encoding gzip; the answer uses the request's content type).
//   - The gRPC path never decodes payloads: a raw codec carries the request
//     bytes to the Enricher and on to the upstream, and the upstream's answer
//     bytes back. JSON requests are decoded with pdata and forwarded as
//     protobuf. Without an Enricher (or when it adds nothing) the upstream
//     receives exactly the bytes the client sent.
//   - An Enricher that is also a SegmentEnricher (enrich.Stamper) returns
//     the stamped request as segments that reference the received request's
//     unchanged bytes; they go upstream (gRPC, or HTTP with or without gzip)
//     without being concatenated, and the received request's buffer is
//     released only when the upstream leg is done with every segment.
//   - Forwarding is synchronous: a client's export completes only when the
//     upstream answered, so nothing is buffered here. The upstream's answer
//     returns unchanged: OK, partial success, and errors with their code,
//     message and details (RetryInfo). gRPC codes and HTTP statuses are mapped
//     onto each other in one place (status.go) keeping OTLP's retryable and
//     permanent classes.
//   - The client's deadline and cancellation propagate upstream; allow-listed
//     headers/metadata are forwarded; static upstream headers are added.
//     Identity headers (Options.IdentityHeaders) are set from the sender's
//     pod after stamping; a client's header of such a name is never
//     forwarded, also when the pod is unknown and none is set.
//   - Admission (Options.Admit) is checked per request before its body is
//     read: on gRPC in the server's tap handle, before the stream's message
//     is read; on HTTP before the body is read, which is left unread (the
//     connection closes). A refused sender gets PERMISSION_DENIED / 403 (a
//     google.rpc.Status in the request's encoding) with the reason, nothing
//     is forwarded, and the refusal is counted as outcome "forbidden".
//   - Bad input is answered by podstamp and not forwarded: a request whose
//     envelope or resource level is not valid protobuf, or JSON that does not
//     parse, gets INVALID_ARGUMENT / 400 with the reason; over
//     MaxRequestBytes (after decompression) RESOURCE_EXHAUSTED / 413; unknown
//     path 404, wrong method 405, unsupported content type or encoding 415.
//   - Serve drains on cancellation: readiness turns false, listeners close,
//     in-flight requests finish within ShutdownTimeout.
//   - On Linux every listener is bound with SO_REUSEPORT, so a new process
//     binds the same ports while the old one drains: a client that
//     reconnects after the old one's GOAWAY reaches the new one.
//   - The admin listener serves /livez, /readyz and /metrics only. /livez
//     runs the liveness checks (the proxy's own: the OTLP listeners' accept
//     loops run; plus Options.LiveChecks), each bounded by LiveTimeout, and
//     answers 503 when one fails or does not answer. /debug/pprof (with
//     EnablePprof) and Options.DebugHandlers are served only on the debug
//     listener.
//   - Metrics (prefix podstamp_) go to an injected prometheus.Registerer;
//     nothing is logged per request.
//
// # Non-goals
//
//   - No queueing, batching or retrying: the client's exporter owns that.
//   - No validation below the resource level: the upstream judges spans,
//     data points, log records and profiles.
package proxy
