// Command runner is `make bench`: it starts a real API server with pods on
// a benchmark node (addresses 127.0.1.x), then measures in one run, with
// the same load generator and sink:
//
//	(A) load straight to the sink
//	(R) a naive raw gRPC pass-through proxy (bench/cmd/rawproxy), the floor
//	(B) podstamp (./cmd/podstamp, --node-name + --kubeconfig)
//	(C) an OpenTelemetry Collector with k8sattributes (bench/collector)
//
// and writes bench/RESULTS.md. --quick makes a short run.
package main
