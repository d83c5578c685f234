// Command podstamp is a node-local OTLP proxy: it receives OTLP over gRPC and
// HTTP, stamps the Kubernetes identity of the sending pod on every resource
// and forwards the data synchronously to an upstream collector.
//
// Configuration comes from flags, each also settable through a PODSTAMP_*
// environment variable (flags win); the upstream falls back to the standard
// OTEL_EXPORTER_OTLP_* variables. Stamping rules come from an optional YAML
// file (--config). Invalid configuration (flags, variables or rules) fails at
// start with one line naming every bad flag or variable and the reason. Run
// podstamp --help for the reference.
//
// Without --node-name (K8S_NODE_NAME) and outside a cluster, podstamp runs
// without a pod cache and passes data through unchanged.
//
// Only senders on this node are admitted: loopback, --node-ip, and pods the
// pod cache places on this node; --allow-cidr adds networks (0.0.0.0/0,::/0
// admits everyone). /debug/pods and pprof are served on --debug-listen
// (loopback by default), never on the admin listener.
//
// On SIGTERM or SIGINT it drains (see package proxy) and exits 0.
package main
