// Command kube-binaries builds (or finds in the cache) the Kubernetes
// binaries of the one-node cluster and prints their paths. CI runs it
// before the tests so that no test spends its timeout on the build.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/podstamp/podstamp/e2e/node"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	bins, err := node.KubeBinaries(ctx, logf)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kube-binaries:", err)
		os.Exit(1)
	}
	col, err := node.CollectorBinary(ctx, logf)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kube-binaries:", err)
		os.Exit(1)
	}
	for _, c := range node.KubeCommands {
		fmt.Println(bins[c])
	}
	fmt.Println(col)
}
