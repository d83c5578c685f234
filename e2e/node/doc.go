// Package node runs podstamp's Helm chart on a real one-node Kubernetes
// cluster and measures what its pods' telemetry arrives with.
//
// The cluster: etcd, kube-apiserver (serving on the node address
// 10.77.0.2, so the "kubernetes" Service leads there),
// kube-controller-manager, kube-scheduler, containerd with state
// directories of its own, the kubelet (cgroupfs, cgroupsPerQOS off), the
// CNI bridge, host-local and portmap plugins of the Debian package
// containernetworking-plugins (pod range 10.244.0.0/24) and kube-proxy in
// iptables mode. The Kubernetes binaries are built from the k8s.io/kubernetes
// version the e2e/kube-apiserver module pins and cached (KubeBinaries, with
// the e2e suite's cluster.BuildCached, one build at a time with its
// kube-apiserver build); the certificates are cluster.WritePKI's; etcd
// is the e2e suite's build of the e2e/etcd module (cluster.Etcd). The
// images (podstamp, the Collector of bench/collector, a sink, a demo app
// using the OpenTelemetry Go SDK, the pause image) are built here with
// go-containerregistry and imported with `ctr images import`; pods use them
// with imagePullPolicy Never.
//
// Promises:
//   - Everything runs inside two network namespaces the cluster creates
//     (node and wire), entered with nsenter --net; nothing listens on or
//     changes the machine's own network. The test reaches the API server
//     through a forwarder on 127.0.0.1 and pods through sockets opened in
//     the node namespace.
//   - Start returns a Ready node with kube-proxy running, or an error; a
//     half-started cluster is stopped first.
//   - Stop removes every pod sandbox through the CRI (CNI DEL, shims exit),
//     stops the processes it started by PID in reverse order, unmounts what
//     is left under its directory, deletes its namespaces and the directory
//     (kept with PODSTAMP_KEEP_NODE_DIR=1). It is idempotent.
//   - The scenarios (TestNode) print, per scenario and sending pod, the
//     address the stamping receiver saw and the fraction of resources
//     stamped with the right pod, and fail when it is not what the scenario
//     expects: seed 0% and the bridge address; fix, upgrade and service mode
//     100% and the pod's own address, with no acknowledged item lost.
package node
