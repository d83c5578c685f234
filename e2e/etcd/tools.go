//go:build tools

// Package tools pins the etcd server (its main package is the module's root,
// go.etcd.io/etcd/server/v3) so that `go build` can find it here. etcd's own
// replace directives do not apply to a dependent module; the versions of its
// sibling modules (api, client/pkg, client/v3, pkg) come from the server's
// requirements, which name the same release.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
