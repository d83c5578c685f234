// Command kube-binaries builds (or finds in the cache) the Kubernetes
// binaries of the one-node cluster and the Collector its images carry, and
// prints their paths. CI runs it before the tests so that no test spends
// its timeout on the build.
package main

import (
	"context"

	"github.com/podstamp/podstamp/e2e/cmd/buildcmd"
	"github.com/podstamp/podstamp/e2e/node"
)

func main() {
	buildcmd.Main("kube-binaries", func(ctx context.Context, logf func(string, ...any)) ([]string, error) {
		bins, err := node.KubeBinaries(ctx, logf)
		if err != nil {
			return nil, err
		}
		col, err := node.CollectorBinary(ctx, logf)
		if err != nil {
			return nil, err
		}
		var paths []string
		for _, c := range node.KubeCommands {
			paths = append(paths, bins[c])
		}
		return append(paths, col), nil
	})
}
