package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
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

// kubeAPIServerModuleDir finds the e2e/kube-apiserver module.
func kubeAPIServerModuleDir() (string, error) { return sideModuleDir("kube-apiserver") }

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

// KubernetesVersion is the k8s.io/kubernetes version the module pins.
func kubernetesVersion(moduleDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(moduleDir, "go.mod"))
	if err != nil {
		return "", err
	}
	m := kubernetesRequire.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("%s/go.mod does not require k8s.io/kubernetes", moduleDir)
	}
	return string(m[1]), nil
}

// KubeAPIServer returns the path of a kube-apiserver binary: $PODSTAMP_KUBE_APISERVER
// when set, else the cached build for the pinned version, building it first when
// it is missing (about 8 minutes cold; concurrent callers wait for one build).
func KubeAPIServer(ctx context.Context, log *slog.Logger) (string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if p := os.Getenv("PODSTAMP_KUBE_APISERVER"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("PODSTAMP_KUBE_APISERVER: %w", err)
		}
		return p, nil
	}
	bin, modDir, version, err := cachedPath()
	if err != nil {
		return "", err
	}
	if usable(bin) {
		return bin, nil
	}
	cache := filepath.Dir(bin)
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(cache, ".kube-apiserver.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := flock(ctx, lock); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	if usable(bin) {
		return bin, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building kube-apiserver needs the go command: %w", err)
	}
	log.Info("building kube-apiserver (first run only, several minutes)", "version", version, "into", bin)
	fmt.Fprintf(os.Stderr, "building kube-apiserver %s into %s (first run only; this takes several minutes)...\n", version, bin)
	start := time.Now()
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", tmp, "k8s.io/kubernetes/cmd/kube-apiserver")
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go build kube-apiserver %s: %w\n%s", version, err, tail(out, 4096))
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	log.Info("built kube-apiserver", "took", time.Since(start).Round(time.Second))
	return bin, nil
}

// CachedKubeAPIServer returns the kube-apiserver binary KubeAPIServer would
// use and whether it is there already (false: KubeAPIServer would build it).
func CachedKubeAPIServer() (string, bool) {
	if p := os.Getenv("PODSTAMP_KUBE_APISERVER"); p != "" {
		return p, usable(p)
	}
	bin, _, _, err := cachedPath()
	if err != nil {
		return "", false
	}
	return bin, usable(bin)
}

func cachedPath() (bin, modDir, version string, err error) {
	if modDir, err = kubeAPIServerModuleDir(); err != nil {
		return "", "", "", err
	}
	if version, err = kubernetesVersion(modDir); err != nil {
		return "", "", "", err
	}
	cache, err := CacheDir()
	if err != nil {
		return "", "", "", err
	}
	return filepath.Join(cache, "kube-apiserver-"+version), modDir, version, nil
}

func usable(p string) bool {
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
