// Package loadgen sends OTLP export requests (traces, metrics or logs) over
// gRPC or HTTP (protobuf or JSON, optionally gzip) and measures what came
// back.
//
// Each connection is bound to its own source address (Config.SourceIPs,
// round robin), so a receiver sees distinct peers, and every request of a
// connection carries the resource attribute loadgen.source=<that address>.
// Payloads are built once per connection with pdata and sent as raw bytes,
// so the generator spends its CPU on the transport, not on encoding.
//
// It promises: every request sent is counted exactly once as acked or
// failed (by gRPC code or HTTP status); Run returns when the request
// count or duration is reached or ctx ends, with every goroutine and
// connection it started closed; latency percentiles cover acked and failed
// requests alike.
package loadgen
