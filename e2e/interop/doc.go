// Package interop checks podstamp's gRPC servers and clients against HTTP/2
// and gRPC implementations other than grpc-go's, as real processes on real
// listeners: gRPC's C core (Debian's python3-grpcio), @grpc/grpc-js on
// Node's HTTP/2 (installed with npm into podstamp's cache on first use) and
// curl's nghttp2, as clients of podstamp and as its upstreams. Every case
// (signals, gzip, a message larger than any default flow-control window,
// forwarded headers, a malformed request, an upstream error) must reach
// the upstream byte for byte and come back with its status and message.
// The tools are required, not optional: a missing one fails the tests with
// how to install it.
//
// TestH2Spec runs h2spec, the HTTP/2 conformance suite (its Go packages),
// against both of podstamp's gRPC servers: podstamp's own must fail no case
// grpc-go's passes, and only the cases listed with their reasons.
package interop
