package cluster

import (
	"context"
	"log/slog"
	"path/filepath"
	"regexp"
)

// etcdPackage is the main package of etcd's server (since etcd 3.6 the
// module's root), built from the e2e/etcd module.
const etcdPackage = "go.etcd.io/etcd/server/v3"

// etcdTool is the etcd server every cluster here runs, cached as
// <cache>/etcd-<version>/etcd.
var etcdTool = tool{
	env: "PODSTAMP_ETCD", module: "etcd",
	require:  regexp.MustCompile(`(?m)^\s*(?:require\s+)?go\.etcd\.io/etcd/server/v3\s+(v[0-9][^\s]*)`),
	required: etcdPackage,
	hint:     "run make etcd, or set PODSTAMP_ETCD to an etcd 3.6 binary",
	build: func(cache, version string) Build {
		return Build{
			What:     "etcd " + version,
			Took:     "a minute or two",
			Packages: []string{etcdPackage},
			Outs:     []string{filepath.Join(cache, "etcd-"+version, "etcd")},
			Flags:    []string{"-ldflags", "-s -w"},
			Lock:     ".etcd.lock",
		}
	},
}

// Etcd returns the path of an etcd binary: $PODSTAMP_ETCD when set, else the
// cached build of the version the e2e/etcd module pins
// (<cache>/etcd-<version>/etcd), building it first when it is missing (a
// minute or two cold; concurrent callers wait for one build). There is no
// fallback to an etcd on PATH: Kubernetes 1.34 serves streaming lists only
// on an etcd that has RequestWatchProgress (3.4.31, 3.5.13, 3.6 or later),
// and distributions still ship older ones.
func Etcd(ctx context.Context, log *slog.Logger) (string, error) { return etcdTool.get(ctx, log) }

// CachedEtcd returns the etcd binary Etcd would use and whether it is there
// already (false: Etcd would build it).
func CachedEtcd() (string, bool) { return etcdTool.cached() }
