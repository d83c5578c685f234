// Package netns builds a Kubernetes node's pod network out of Linux network
// namespaces for podstamp's end-to-end tests (root only):
//
//   - a node namespace with bridge cni0 (10.244.0.1/24 and fd00:10:244::1/64)
//     and the node address 10.77.0.2 (fd00:77::2) on a veth whose peer sits in
//     a second "wire" namespace (the dummy link type is not available
//     everywhere);
//   - pod namespaces, each with eth0 on a veth into the bridge, the pod's IPv4
//     and IPv6 addresses, and default routes via the bridge;
//   - the nat-table rules the CNI portmap plugin installs for a hostPort
//     (DNAT of HOST_IP:port to a pod, SETMARK 0x2000 for the pod subnet,
//     MASQUERADE of marked traffic) and the kube-proxy rules of a ClusterIP
//     Service with internalTrafficPolicy: Local (DNAT without masquerade);
//   - in-process helpers that listen or dial inside a namespace, and a TCP
//     forwarder that exposes a loopback service of the test's own namespace
//     (the API server, the sink) inside a node or pod namespace.
//
// Promises: every namespace name starts with a prefix unique to the run;
// every namespace, link and rule created is removed by the testing.TB's
// cleanup, in reverse order, also when the test fails; commands that fail
// report their full command line and output. Addresses are only ever those
// above, inside namespaces the test created.
package netns
