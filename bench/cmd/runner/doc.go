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
//
// It promises: only the forwarder's own process is measured (CPU from
// /proc/<pid>/stat, peak RSS from /proc/<pid>/status); every process it
// starts is stopped by its PID before it returns (and gets SIGKILL if the
// runner dies first); the API server, etcd and their directory are removed;
// the results file names no path of the machine it ran on.
package main
