// Command rawproxy is the benchmark's floor: a naive OTLP/gRPC pass-through
// proxy. It forwards each Export call's bytes unchanged to one upstream,
// with grpc-go's default buffer and window settings, without decoding and
// without stamping anything. Whatever a stamping proxy costs above this is
// the price of its work, not of being a proxy.
//
//	rawproxy --listen 127.0.0.1:4317 --upstream 127.0.0.1:14317 [--upstream-compression gzip]
package main
