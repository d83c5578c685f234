package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/podstamp/podstamp/e2e/cluster"
)

// KubeCommands are the Kubernetes commands the node runs, all built from the
// k8s.io/kubernetes version the e2e/kube-apiserver module pins.
var KubeCommands = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet"}

// RepoRoot is the podstamp repository this package sits in.
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the source of package node")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("podstamp repository not found at %s: %w", root, err)
	}
	return filepath.Clean(root), nil
}

// KubeBinaries returns the cached binary of every command in KubeCommands,
// building those that are missing in one `go build` (several minutes cold;
// concurrent callers, the e2e suite's build of kube-apiserver included, wait
// for one build) into <cache>/kubernetes-<version>/ (cluster.CacheDir), with
// the version stamped in as Kubernetes' release builds do.
func KubeBinaries(ctx context.Context, logf func(string, ...any)) (map[string]string, error) {
	modDir, version, err := cluster.KubernetesModule()
	if err != nil {
		return nil, err
	}
	cache, err := cluster.CacheDir()
	if err != nil {
		return nil, err
	}
	// Built with the version stamps of Kubernetes' own release builds
	// (hack/lib/version.sh): without them the API server reports
	// v0.0.0-master, which Helm's .Capabilities.KubeVersion cannot compare.
	dir := filepath.Join(cache, "kubernetes-"+version)
	b := cluster.Build{
		What:   "Kubernetes " + version,
		Took:   "several minutes",
		Module: modDir,
		Flags:  []string{"-ldflags", versionLDFlags(version)},
		Lock:   cluster.KubernetesLock,
	}
	paths := map[string]string{}
	for _, c := range KubeCommands {
		paths[c] = filepath.Join(dir, c)
		b.Packages = append(b.Packages, "k8s.io/kubernetes/cmd/"+c)
		b.Outs = append(b.Outs, paths[c])
	}
	if err := cluster.BuildCached(ctx, b, logf); err != nil {
		return nil, err
	}
	return paths, nil
}

// versionLDFlags stamps version into the binaries as Kubernetes' release
// builds do, for both copies of the version variables.
func versionLDFlags(version string) string {
	major, minor := "", ""
	if parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3); len(parts) >= 2 {
		major, minor = parts[0], parts[1]
	}
	var b strings.Builder
	b.WriteString("-s -w")
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		fmt.Fprintf(&b, " -X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s -X %s.gitTreeState=clean",
			pkg, version, pkg, major, pkg, minor, pkg)
	}
	return b.String()
}
