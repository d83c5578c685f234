package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"time"
)

// etcdPackage is the main package of etcd's server (since etcd 3.6 the
// module's root), built from the e2e/etcd module.
const etcdPackage = "go.etcd.io/etcd/server/v3"

var etcdRequire = regexp.MustCompile(`(?m)^\s*(?:require\s+)?go\.etcd\.io/etcd/server/v3\s+(v[0-9][^\s]*)`)

// etcdVersion is the etcd server version the e2e/etcd module pins.
func etcdVersion(moduleDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(moduleDir, "go.mod"))
	if err != nil {
		return "", err
	}
	m := etcdRequire.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("%s/go.mod does not require %s", moduleDir, etcdPackage)
	}
	return string(m[1]), nil
}

// Etcd returns the path of an etcd binary: $PODSTAMP_ETCD when set, else the
// cached build of the version the e2e/etcd module pins
// (<cache>/etcd-<version>/etcd), building it first when it is missing (a
// minute or two cold; concurrent callers wait for one build). There is no
// fallback to an etcd on PATH: Kubernetes 1.34 serves streaming lists only
// on an etcd that has RequestWatchProgress (3.4.31, 3.5.13, 3.6 or later),
// and distributions still ship older ones.
func Etcd(ctx context.Context, log *slog.Logger) (string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if p := os.Getenv("PODSTAMP_ETCD"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("PODSTAMP_ETCD: %w", err)
		}
		return p, nil
	}
	bin, modDir, version, err := cachedEtcdPath()
	if err != nil {
		return "", fmt.Errorf("etcd: %w (run make etcd, or set PODSTAMP_ETCD to an etcd 3.6 binary)", err)
	}
	if usable(bin) {
		return bin, nil
	}
	dir := filepath.Dir(bin)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(filepath.Dir(dir), ".etcd.lock"), os.O_CREATE|os.O_RDWR, 0o644)
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
		return "", fmt.Errorf("building etcd needs the go command: %w (run make etcd, or set PODSTAMP_ETCD to an etcd 3.6 binary)", err)
	}
	log.Info("building etcd (first run only, a minute or two)", "version", version, "into", bin)
	fmt.Fprintf(os.Stderr, "building etcd %s into %s (first run only; this takes a minute or two)...\n", version, bin)
	start := time.Now()
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags", "-s -w", "-o", tmp, etcdPackage)
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go build etcd %s: %w (run make etcd, or set PODSTAMP_ETCD to an etcd 3.6 binary)\n%s", version, err, tail(out, 4096))
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	log.Info("built etcd", "took", time.Since(start).Round(time.Second))
	return bin, nil
}

// CachedEtcd returns the etcd binary Etcd would use and whether it is there
// already (false: Etcd would build it).
func CachedEtcd() (string, bool) {
	if p := os.Getenv("PODSTAMP_ETCD"); p != "" {
		return p, usable(p)
	}
	bin, _, _, err := cachedEtcdPath()
	if err != nil {
		return "", false
	}
	return bin, usable(bin)
}

func cachedEtcdPath() (bin, modDir, version string, err error) {
	if modDir, err = sideModuleDir("etcd"); err != nil {
		return "", "", "", err
	}
	if version, err = etcdVersion(modDir); err != nil {
		return "", "", "", err
	}
	cache, err := CacheDir()
	if err != nil {
		return "", "", "", err
	}
	return filepath.Join(cache, "etcd-"+version, "etcd"), modDir, version, nil
}
