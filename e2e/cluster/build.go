package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"syscall"
	"time"
)

// CacheDir is where built tools are kept between runs: $PODSTAMP_CACHE, else
// $XDG_CACHE_HOME/podstamp, else ~/.cache/podstamp.
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

// sideModuleDir finds the side module e2e/<name>: first by walking up from
// the working directory, then next to this source file.
func sideModuleDir(name string) (string, error) {
	var tried []string
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			for _, c := range []string{filepath.Join(d, "e2e", name), filepath.Join(d, name)} {
				if _, err := os.Stat(filepath.Join(c, "go.mod")); err == nil {
					return c, nil
				}
				tried = append(tried, c)
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		c := filepath.Join(filepath.Dir(file), "..", name)
		if _, err := os.Stat(filepath.Join(c, "go.mod")); err == nil {
			return c, nil
		}
		tried = append(tried, c)
	}
	return "", fmt.Errorf("the e2e/%s module was not found (run from the podstamp repository); looked in %v", name, tried)
}

var kubernetesRequire = regexp.MustCompile(`(?m)^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v[0-9][^\s]*)`)

// KubernetesModule is the e2e/kube-apiserver module, which every Kubernetes
// binary is built from, and the k8s.io/kubernetes version it pins.
func KubernetesModule() (moduleDir, version string, err error) {
	return kubeAPIServerTool.pinned()
}

// KubernetesLock is the lock (see Build) of every build from the
// e2e/kube-apiserver module: one at a time, however many binaries they make.
const KubernetesLock = ".kube-apiserver.lock"

// kubeAPIServerTool is the e2e suite's kube-apiserver, cached as
// <cache>/kube-apiserver-<version>.
var kubeAPIServerTool = tool{
	env: "PODSTAMP_KUBE_APISERVER", module: "kube-apiserver",
	require: kubernetesRequire, required: "k8s.io/kubernetes",
	build: func(cache, version string) Build {
		return Build{
			What:     "kube-apiserver " + version,
			Took:     "several minutes",
			Packages: []string{"k8s.io/kubernetes/cmd/kube-apiserver"},
			Outs:     []string{filepath.Join(cache, "kube-apiserver-"+version)},
			Lock:     KubernetesLock,
		}
	},
}

// KubeAPIServer returns the path of a kube-apiserver binary: $PODSTAMP_KUBE_APISERVER
// when set, else the cached build for the pinned version, building it first when
// it is missing (about 8 minutes cold; concurrent callers wait for one build).
func KubeAPIServer(ctx context.Context, log *slog.Logger) (string, error) {
	return kubeAPIServerTool.get(ctx, log)
}

// CachedKubeAPIServer returns the kube-apiserver binary KubeAPIServer would
// use and whether it is there already (false: KubeAPIServer would build it).
func CachedKubeAPIServer() (string, bool) { return kubeAPIServerTool.cached() }

// tool is a binary built from a side module and cached, unless an
// environment variable names a prebuilt one.
type tool struct {
	env      string         // the variable naming a prebuilt binary
	module   string         // the side module e2e/<module>
	require  *regexp.Regexp // finds the pinned version in its go.mod
	required string         // the module that pins, for errors
	hint     string         // what to do when there is none, for errors
	// build is the cached build (its one binary first) of version, but for
	// its Module.
	build func(cache, version string) Build
}

// pinned finds the side module and the version its go.mod pins.
func (t tool) pinned() (moduleDir, version string, err error) {
	if moduleDir, err = sideModuleDir(t.module); err != nil {
		return "", "", err
	}
	b, err := os.ReadFile(filepath.Join(moduleDir, "go.mod"))
	if err != nil {
		return "", "", err
	}
	m := t.require.FindSubmatch(b)
	if m == nil {
		return "", "", fmt.Errorf("%s/go.mod does not require %s", moduleDir, t.required)
	}
	return moduleDir, string(m[1]), nil
}

// cachedBuild is t's cached build, Module included.
func (t tool) cachedBuild() (Build, error) {
	modDir, version, err := t.pinned()
	if err != nil {
		return Build{}, err
	}
	cache, err := CacheDir()
	if err != nil {
		return Build{}, err
	}
	b := t.build(cache, version)
	b.Module = modDir
	return b, nil
}

// get returns the binary $<env> names, else the cached build, building it
// first when it is missing.
func (t tool) get(ctx context.Context, log *slog.Logger) (string, error) {
	if p := os.Getenv(t.env); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w", t.env, err)
		}
		return p, nil
	}
	b, err := t.cachedBuild()
	if err == nil {
		err = BuildCached(ctx, b, progress(log))
	}
	if err != nil {
		if t.hint != "" {
			return "", fmt.Errorf("%s (%s): %w", t.module, t.hint, err)
		}
		return "", err
	}
	return b.Outs[0], nil
}

// cached returns the binary get would return and whether it is there already.
func (t tool) cached() (string, bool) {
	if p := os.Getenv(t.env); p != "" {
		return p, Usable(p)
	}
	b, err := t.cachedBuild()
	if err != nil {
		return "", false
	}
	return b.Outs[0], Usable(b.Outs[0])
}

// progress is the logf of a build started through the package's API: to
// log, and to stderr, so that whoever waits minutes for it sees why.
func progress(log *slog.Logger) func(string, ...any) {
	return func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintln(os.Stderr, msg)
		if log != nil {
			log.Info(msg)
		}
	}
}

// Build is one cached `go build` of main packages of a side module.
type Build struct {
	// What is built, for messages ("kube-apiserver v1.34.2").
	What string
	// Took says how long a cold build takes, for messages ("several minutes").
	Took string
	// Module is the directory of the module the build runs in.
	Module string
	// Packages are the main packages to build; Outs[i] is where the binary
	// of Packages[i] is kept. With more than one package, each binary is
	// built under the name go build gives it (the package path's last
	// element).
	Packages, Outs []string
	// Flags are go build flags besides -trimpath and -o.
	Flags []string
	// Lock is the name of the lock file in CacheDir that builds sharing a
	// module take, so that concurrent callers wait for one build.
	Lock string
}

// BuildCached builds, with CGO_ENABLED=0 and in one `go build`, those of
// b.Packages whose binary is not in place yet (Usable), under an exclusive
// flock on b.Lock, giving up when ctx ends. A binary appears at its path only
// complete (renamed into place); one built by a concurrent caller while this
// one waited for the lock is not built again. logf (nil: none) hears when a
// build starts and ends.
func BuildCached(ctx context.Context, b Build, logf func(string, ...any)) error {
	if len(b.Packages) != len(b.Outs) || len(b.Packages) == 0 {
		return fmt.Errorf("build %s: %d packages for %d binaries", b.What, len(b.Packages), len(b.Outs))
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	missing := func() (need []int) {
		for i, out := range b.Outs {
			if !Usable(out) {
				need = append(need, i)
			}
		}
		return need
	}
	if len(missing()) == 0 {
		return nil
	}
	cache, err := CacheDir()
	if err != nil {
		return err
	}
	for _, out := range b.Outs {
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(cache, b.Lock), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := flock(ctx, lock); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	need := missing()
	if len(need) == 0 {
		return nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("building %s needs the go command: %w", b.What, err)
	}
	tmp, err := os.MkdirTemp(cache, ".build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// One package: -o names the file. More: -o names a directory, and each
	// binary is named after its package.
	built := func(i int) string { return filepath.Join(tmp, path.Base(b.Packages[i])) }
	o := tmp + string(filepath.Separator)
	if len(need) == 1 {
		o = filepath.Join(tmp, "bin")
		built = func(int) string { return o }
	}
	args := append(append([]string{"build", "-trimpath"}, b.Flags...), "-o", o)
	var names []string
	for _, i := range need {
		args = append(args, b.Packages[i])
		names = append(names, filepath.Base(b.Outs[i]))
	}
	logf("building %s %v into %s (first run only; this takes %s)...", b.What, names, filepath.Dir(b.Outs[need[0]]), b.Took)
	start := time.Now()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = b.Module
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s %v: %w\n%s", b.What, names, err, tail(out, 4096))
	}
	for _, i := range need {
		if err := os.Rename(built(i), b.Outs[i]); err != nil {
			return err
		}
	}
	logf("built %s %v in %s", b.What, names, time.Since(start).Round(time.Second))
	return nil
}

// Usable reports whether p is a built binary: a regular, executable file of
// more than 1 MiB (an interrupted copy or an empty placeholder is not).
func Usable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 && st.Size() > 1<<20
}

// flock takes an exclusive lock, giving up when ctx ends.
func flock(ctx context.Context, f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		// Another process is building; there is no event to wait on for a
		// flock from Go without blocking a thread forever, so poll it.
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
