// Command demo shows podstamp on one machine, without root and without a
// cluster: it starts a real Kubernetes API server (etcd + kube-apiserver on
// loopback), creates a few pods whose addresses are loopback addresses
// (127.0.0.x), runs podstamp and two OTLP sinks that print what they receive
// the way the Collector's debug exporter does, sends telemetry from each
// "pod" once straight to a sink and once through podstamp, and shows the two
// side by side. Everything it started is stopped and removed at the end.
//
//	make demo        # or: cd e2e && go run ./demo
//
// The first run builds kube-apiserver (several minutes); later runs reuse it.
package main
