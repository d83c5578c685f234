// Package cluster runs a real, minimal Kubernetes control plane on loopback
// for podstamp's end-to-end tests, demo and benchmarks: etcd, built from the
// e2e/etcd module (the etcd 3.6 release Kubernetes 1.34 is tested with;
// distributions' older etcd cannot serve its streaming lists), and
// kube-apiserver, built from the e2e/kube-apiserver module; both are cached
// between runs (Etcd, KubeAPIServer; PODSTAMP_ETCD and
// PODSTAMP_KUBE_APISERVER name prebuilt binaries instead).
//
// e2e/node's one-node cluster runs the same plumbing, so it is exported:
// WritePKI (the CA, the API server's serving certificate and the
// ServiceAccount key), BuildCached (the cached, locked `go build` of side
// modules' commands; KubernetesModule and KubernetesLock for more Kubernetes
// binaries), BearerClient (readiness checks) and WriteTokenKubeconfig.
//
// There is no controller-manager, scheduler or kubelet: the helpers create
// what those would (the default ServiceAccount of a namespace, pods bound to a
// node with spec.nodeName, their status with pod IPs and container IDs, the
// ReplicaSet and Deployment that own them) directly through the API.
//
// Promises:
//   - Start returns only when /readyz answers 200, or an error that names the
//     process and ends with the tail of its log; a half-started cluster is
//     stopped before Start returns the error.
//   - Everything lives in its own temporary directory and on ports picked free
//     on 127.0.0.1; Stop kills exactly the processes it started (by PID) and
//     removes that directory. Stop is idempotent.
//   - StopAPIServer / StartAPIServer take the API server down and back up on
//     the same port with the same etcd, certificates and keys, so clients that
//     cached a connection see a real outage and a real recovery.
//   - A cached binary appears at its path only complete. Builds that share a
//     lock (a flock in the cache directory; every build from one module does)
//     run one at a time, in any number of processes, and a caller that waited
//     does not build again what was built meanwhile.
//     The cache paths are <cache>/kube-apiserver-<version> and
//     <cache>/etcd-<version>/etcd; <cache> is CacheDir.
//   - The admin credential is a static bearer token in group system:masters;
//     ServiceAccount tokens from TokenRequest are signed and accepted, and
//     authorization is RBAC, so least-privilege checks are real.
package cluster
