package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// KubeCommands are the Kubernetes commands the node runs, all built from the
// k8s.io/kubernetes version the e2e/kube-apiserver module pins.
var KubeCommands = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet"}

// CacheDir is where built tools are kept between runs: $PODSTAMP_CACHE, else
// $XDG_CACHE_HOME/podstamp, else ~/.cache/podstamp (the same directory as
// the e2e suite's kube-apiserver and the benchmark's Collector).
func CacheDir() (string, error) {
	if d := os.Getenv("PODSTAMP_CACHE"); d != "" {
		return d, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cache directory: %w (set PODSTAMP_CACHE)", err)
	}
	return filepath.Join(base, "podstamp"), nil
}

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

var kubernetesRequire = regexp.MustCompile(`(?m)^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v[0-9][^\s]*)`)

// KubeBinaries returns the cached binary of every command in KubeCommands,
// building those that are missing in one `go build` (several minutes cold;
// concurrent callers wait for one build) into <cache>/kubernetes-<version>/,
// with the version stamped in as Kubernetes' release builds do.
func KubeBinaries(ctx context.Context, logf func(string, ...any)) (map[string]string, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	modDir := filepath.Join(root, "e2e", "kube-apiserver")
	gomod, err := os.ReadFile(filepath.Join(modDir, "go.mod"))
	if err != nil {
		return nil, err
	}
	m := kubernetesRequire.FindSubmatch(gomod)
	if m == nil {
		return nil, fmt.Errorf("%s/go.mod does not require k8s.io/kubernetes", modDir)
	}
	version := string(m[1])
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	// Built with the version stamps of Kubernetes' own release builds
	// (hack/lib/version.sh): without them the API server reports
	// v0.0.0-master, which Helm's .Capabilities.KubeVersion cannot compare.
	dir := filepath.Join(cache, "kubernetes-"+version)
	paths := map[string]string{}
	missing := func() []string {
		var out []string
		for _, c := range KubeCommands {
			p := filepath.Join(dir, c)
			paths[c] = p
			if !usable(p) {
				out = append(out, c)
			}
		}
		return out
	}
	if len(missing()) == 0 {
		return paths, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// The e2e suite's build of kube-apiserver takes the same lock.
	lock, err := os.OpenFile(filepath.Join(cache, ".kube-apiserver.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := flock(ctx, lock); err != nil {
		return nil, err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	need := missing()
	if len(need) == 0 {
		return paths, nil
	}
	tmp, err := os.MkdirTemp(cache, ".build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	args := []string{"build", "-trimpath", "-ldflags", versionLDFlags(version), "-o", tmp + string(filepath.Separator)}
	for _, c := range need {
		args = append(args, "k8s.io/kubernetes/cmd/"+c)
	}
	logf("building %v %s into %s (first run only; several minutes)", need, version, dir)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %v %s: %w\n%s", need, version, err, tail(out, 4096))
	}
	for _, c := range need {
		if err := os.Rename(filepath.Join(tmp, c), paths[c]); err != nil {
			return nil, err
		}
	}
	logf("built %v in %s", need, time.Since(start).Round(time.Second))
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

func usable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 && st.Size() > 1<<20
}

// flock takes an exclusive lock, giving up when ctx ends. A flock offers no
// event to wait on without blocking a thread for good, so this polls.
func flock(ctx context.Context, f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
