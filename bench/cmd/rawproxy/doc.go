// Command rawproxy is the benchmark's floor: a naive OTLP/gRPC pass-through
// proxy. It forwards each Export call's bytes unchanged to one upstream,
// with grpc-go's default buffer and window settings, without decoding and
// without stamping anything. Whatever a stamping proxy costs above this is
// the price of its work, not of being a proxy.
//
// With --http-listen it is also the OTLP/HTTP floor: net/http/httputil's
// ReverseProxy, which passes each request body and answer through unchanged.
//
//	rawproxy --listen 127.0.0.1:4317 --upstream 127.0.0.1:14317 [--upstream-compression gzip] \
//	    [--http-listen 127.0.0.1:4318 --http-upstream 127.0.0.1:14318]
package main
