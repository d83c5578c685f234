//go:build tools

// Package tools pins the Kubernetes commands the end-to-end suites run so
// `go build` can find them: kube-apiserver for every suite, and the node's
// parts (kubelet, kube-controller-manager, kube-scheduler, kube-proxy) for
// the one-node cluster of e2e/node.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
