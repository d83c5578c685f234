// Command rawproxy is the benchmark's floor: a naive OTLP/gRPC pass-through
// proxy. It forwards each Export call's bytes unchanged to one upstream,
// with grpc-go's default buffer and window settings, without decoding and
// without stamping anything. Whatever a stamping proxy costs above this is
// the price of its work, not of being a proxy.
//
// With --http-listen it is also the OTLP/HTTP floor: net/http/httputil's
// ReverseProxy, which passes each request body and answer through unchanged.
//
// --transport lean (lean.go) measures what grpc-go's transport costs: an
// HTTP/2 of its own on golang.org/x/net/http2's framer, where one goroutine
// per client connection reads a call, forwards it on an upstream connection
// of its own, reads the answer and writes it back, with no other goroutine
// involved. lean-server and lean-client replace one side only. They are
// instruments: one call at a time per connection, plain gRPC, no limits.
//
//	rawproxy --listen 127.0.0.1:4317 --upstream 127.0.0.1:14317 [--upstream-compression gzip] \
//	    [--transport grpc|lean|lean-server|lean-client] \
//	    [--http-listen 127.0.0.1:4318 --http-upstream 127.0.0.1:14318]
package main
