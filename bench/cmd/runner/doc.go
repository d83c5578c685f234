// Command runner is `make bench`: it starts a real API server with pods on
// a benchmark node (addresses 127.0.1.x), then measures in one run, with
// the same load generator and sink, for every OTLP ingress (gRPC, HTTP
// protobuf, HTTP JSON, each plain and gzip; metrics and logs once):
//
//	(A) load straight to the sink
//	(T) a TCP relay that copies bytes and parses nothing (bench/cmd/tcprelay), the lowest floor
//	(R) a naive raw pass-through proxy (bench/cmd/rawproxy: gRPC, or httputil.ReverseProxy for HTTP)
//	(B) podstamp (./cmd/podstamp, --node-name + --kubeconfig)
//	(C) an OpenTelemetry Collector with k8sattributes (bench/collector)
//
// Then the control-plane run: simulated nodes with pods of every kind of
// workload, a fleet of one podstamp per node, then of one Collector agent
// per node, and what each asks of the API server during a start, a steady
// phase and a churn, from the server's own /metrics. Then the scale run
// (podstamp's memory with many pods elsewhere). It writes bench/RESULTS.md.
// --quick makes a short run.
//
// It promises: only the forwarder's own process is measured (CPU from
// /proc/<pid>/task/*/schedstat, peak RSS from /proc/<pid>/status); every process it
// starts is stopped by its PID before it returns (and gets SIGKILL if the
// runner dies first); the API server, etcd and their directory are removed;
// the results file names no path of the machine it ran on.
package main
