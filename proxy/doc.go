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
//     bytes back. JSON requests of traces, metrics and logs are transcoded
//     to protobuf in one pass without pdata (otlpjson.go: it decodes as
//     pdata does, checked against it; where they part is listed there),
//     profiles decoded with pdata; all are forwarded as protobuf. Without an Enricher (or when it adds nothing) the upstream
//     receives exactly the bytes the client sent.
//   - The Enricher (enrich.Stamper) checks, counts and stamps a request in
//     one pass and returns it as segments that reference the received
//     request's unchanged bytes; they go upstream (gRPC, or HTTP with or
//     without gzip) without being concatenated, and the received request's
//     buffer is released only when the upstream leg is done with every
//     segment. Without an Enricher, enrich.Scan checks and counts.
//   - Forwarding is synchronous: a client's export completes only when the
//     upstream answered, so nothing is buffered here. The upstream's answer
//     returns unchanged: OK, partial success, and errors with their code,
//     message and details (RetryInfo). gRPC codes and HTTP statuses are mapped
//     onto each other in one place (status.go) keeping OTLP's retryable and
//     permanent classes.
//   - An upstream endpoint is accepted by New exactly when ParseEndpoint
//     accepts it, so a command can check its settings before New. A gRPC
//     upstream that is down is redialled with a capped backoff
//     (Config.UpstreamBackoff), so exports succeed soon after it returns.
//   - Target.Transport TransportLean (lean.go) forwards gRPC on HTTP/2
//     connections of the proxy's own instead of grpc-go's client: one call
//     at a time per connection, carried by the forwarding goroutine, with
//     the same answers, codes and details, TLS and gzip. It serves host:port
//     endpoints only (New refuses others). Calls go round-robin over the
//     host's resolved addresses, one call after the other, as grpc-go's
//     round_robin policy sends them; the name is resolved again every 30 s,
//     and 5 s after a failed dial or a GOAWAY (a failed resolution keeps the
//     addresses it had). It dials on demand; after a failed dial an address
//     is skipped until the backoff of Config.UpstreamBackoff has passed, and
//     with every address waiting, calls are UNAVAILABLE at once. It retries
//     once a call the upstream refused unprocessed (GOAWAY, REFUSED_STREAM),
//     and checks an idle connection before reusing it; idle ones are tended
//     every second. At most 512 calls per upstream are in progress, each on
//     a connection of its own; more wait for one within their deadline
//     (DEADLINE_EXCEEDED when it passes), so the connections, and the
//     buffers each holds, are bounded whatever the requests. With
//     HTTPS_PROXY set (and the host not in NO_PROXY, nor loopback), it
//     tunnels through that http:// proxy with CONNECT, as grpc-go's client
//     does, and leaves the name to the proxy. TransportAuto (podstamp's
//     default) is TransportLean for the targets it serves and grpc-go's
//     client for the others (unix sockets, other resolvers); Target's zero
//     value stays grpc-go's client.
//   - Config.GRPCTransport TransportLean (leanserver.go) serves the gRPC
//     listener on an HTTP/2 of the proxy's own instead of grpc-go's server:
//     one goroutine per connection reads its frames and never blocks on a
//     call; a complete call runs on a pool of workers (or a goroutine of its
//     own when all are busy) that writes its answer itself. Answers,
//     admission, limits and accounting are grpc-go's (the package's tests
//     run on both servers); where they differ: an unknown grpc-encoding is
//     refused before the stream is charged; a header list over 64 KiB is
//     refused with RESOURCE_EXHAUSTED / HTTP 431 (grpc-go's default takes
//     16 MiB), and one far over it ends the connection, as the HTTP/2
//     framer decides; answers are not compressed (gRPC allows it whatever
//     the client accepts). A request that is not well-formed HTTP/2 (a
//     pseudo-header missing or empty, a connection-specific field, TE
//     other than "trailers"), a stream depending on itself and a stream's
//     send window pushed past 2^31-1 end that stream with RST_STREAM
//     (PROTOCOL_ERROR, FLOW_CONTROL_ERROR); WINDOW_UPDATE on a stream not
//     yet opened ends the connection. h2spec, the HTTP/2 conformance suite,
//     runs against both servers (e2e/interop): the lean one fails no case
//     grpc-go's passes, and fewer (10 of 145 against 27-28, each explained
//     there).
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
//     parse, gets INVALID_ARGUMENT / 400 with the reason; over the size
//     limit (after decompression: MaxGRPCRequestBytes, MaxRequestBytes for
//     HTTP, MaxJSONRequestBytes for JSON) RESOURCE_EXHAUSTED / 413; unknown
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
// # Bounded resources
//
// What clients send at once is bounded by limits (limits.go), not by
// the clients; each refusal is counted in podstamp_rejected_total{reason}
// and, for a request, as outcome "rejected".
//
//   - In-flight bytes: every request is charged to a budget of
//     MaxInflightBytes (podstamp_inflight_bytes) before its bytes are read
//     or copied, and gives the charge back when its answer is written,
//     whatever ended it. HTTP with a Content-Length is charged its body and
//     forwarding copy (the stamped copy, or the body compressed for the
//     upstream) up front, and the body's buffer starts at 64 KiB and grows
//     as bytes arrive: a client that announces 20 MiB and sends nothing
//     holds a charge, not 20 MiB. A gzip or chunked body is charged for
//     each buffer before it is taken, then the forwarding copy. JSON is
//     also charged, before decoding, the most its protobuf can take: its
//     size plus 6 bytes per ',' for traces, metrics and logs (protobuf can
//     outgrow JSON: "0," in a list of fixed 64-bit numbers becomes 8
//     bytes; see otlpJSONBound), 256 bytes per '{' and ',' for profiles
//     (decoding into pdata measured up to 205 bytes per item); then the
//     protobuf's buffer and its forwarding copy. A gRPC stream is
//     charged 2 × MaxGRPCRequestBytes in the tap, before its message is
//     read (the received bytes, and their decompressed form or the
//     handler's contiguous copy), trued up to the message and its
//     forwarding copy once it is in. Not charged: upstream answers (up to
//     16 MiB, a few bytes in OTLP), gzip and JSON state per request.
//   - One peer address holds at most MaxInflightBytesPerPeer of the budget
//     (default: half, and at least one largest request), so a sender that
//     keeps its share full leaves the rest to every other pod.
//   - A request whose charge does not fit waits up to 100ms for charges to
//     be given back (a gRPC stream in the tap, which holds its
//     connection's reader that long at most), so a burst of ordinary
//     exports is delayed rather than refused.
//   - Over the budget or the peer's share, or with MaxRequestsPerPeer
//     requests of the peer address in flight (both ingresses together):
//     RESOURCE_EXHAUSTED with
//     a RetryInfo of 1s / 429 with Retry-After: 1 and a google.rpc.Status,
//     which OTLP exporters retry; nothing is acknowledged that was not
//     forwarded. JSON whose decoding alone would need more than the whole
//     budget is 413 (permanent). With the defaults (64 MiB, 4 MiB gRPC
//     messages), eight gRPC streams whose messages are being received at
//     the same instant take the whole budget; a ninth is refused and
//     retried, however small the messages turn out to be.
//   - Time: HTTP headers within ReadHeaderTimeout and the body within
//     ReadTimeout, else 503 with Retry-After and the connection closes. A
//     gRPC connection's HTTP/2 preface within ReadHeaderTimeout; a gRPC
//     message within ReadTimeout of its headers, else its connection is
//     closed (a transport cannot be stopped from receiving one stream), and
//     with it the charge. A stream gRPC refuses after the tap (an unknown
//     grpc-encoding) or that the client resets keeps its charge until the
//     connection's next stream, a budget shortfall or that check sweeps it,
//     or the connection closes.
//   - Connections: over MaxConnections on a listener, or
//     MaxConnectionsPerPeer of one address over both, a connection is
//     closed at accept. An idle accepted gRPC connection costs ~21 KiB
//     (three goroutines and HTTP/2 state; no read buffer, see below), an
//     HTTP one ~14 KiB: at the default caps (512 each) about 18 MiB.
//   - Per connection, at most MaxStreamsPerConnection concurrent streams
//     (gRPC and HTTP/2; gRPC refuses more with REFUSED_STREAM, not
//     counted). A gRPC connection's transport buffers what its admitted
//     streams received and have not read, at most the 4 MiB stream window
//     each and the 8 MiB connection window together, all within their
//     charges; data of refused streams is discarded. Besides that it takes
//     a 64 KiB read buffer from a pool when bytes have arrived, until it has
//     parsed them (capConn.ReadOnReady), and a 64 KiB write buffer while it
//     writes: a connection without a request in flight holds about 128 KiB
//     at worst, an idle one neither.
//   - With GRPCTransport lean the same bounds hold: SETTINGS announce
//     MaxStreamsPerConnection (more are refused with REFUSED_STREAM) and
//     the same windows; a stream is charged when its headers arrive, before
//     any of its message is read, and gives the charge back when it ends,
//     reset or not; a message announced past MaxGRPCRequestBytes is refused
//     before it is read, and one within it is read into a buffer that
//     starts at 64 KiB and grows as its bytes arrive (DATA payloads go
//     from the connection's read buffer straight into it). A frame
//     over 16 KiB (SETTINGS_MAX_FRAME_SIZE, kept at its default) ends the
//     connection with FRAME_SIZE_ERROR, so the framer's read buffer stays
//     within 16 KiB per connection. An idle
//     connection costs ~11 KiB (one goroutine, HTTP/2 state, no read
//     buffer: measured against grpc-go's server in the same process, ~11
//     KiB less). PINGs more often than every 10 s, three times without an
//     answer written between, end the connection (GOAWAY ENHANCE_YOUR_CALM,
//     grpc-go's enforcement policy as podstamp sets it); a connection idle
//     for 5 minutes gets GOAWAY; an answer the client does not read (socket
//     or flow-control window) for 10 s ends the connection.
//
// # Non-goals
//
//   - No queueing, batching or retrying: the client's exporter owns that.
//   - No validation below the resource level: the upstream judges spans,
//     data points, log records and profiles.
package proxy
