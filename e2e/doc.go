// Package e2e is podstamp's end-to-end suite (build tag e2e, run as root by
// `make e2e`). It reproduces the hostPort problem on a real API server and a
// real node network, and proves podstamp fixes it: see README.md for the
// scenarios and what each proves.
//
// The suite starts etcd and kube-apiserver (package e2e/cluster), builds a
// node's pod network out of network namespaces with the CNI portmap and
// kube-proxy nat rules (package e2e/netns), runs podstamp, the OTLP sink and
// the load generator as real processes inside those namespaces, and asserts
// on what the sink received. It removes every namespace, rule and process it
// created, also when a scenario fails, and prints a per-scenario table.
package e2e
