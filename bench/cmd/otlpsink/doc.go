// Command otlpsink is a counting OTLP receiver (gRPC and HTTP) for tests,
// demos and benchmarks. See package bench/sink for what it records.
//
//	otlpsink --grpc-listen 127.0.0.1:14317 --http-listen 127.0.0.1:14318 --print
//	curl -s 127.0.0.1:14318/stats
//	curl -s -X POST '127.0.0.1:14318/fail?on=1'
package main
