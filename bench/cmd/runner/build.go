package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/podstamp/podstamp/e2e/cluster"
)

// repoRoot walks up from the working directory to podstamp's go.mod.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/podstamp/podstamp\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("run from inside the podstamp repository")
		}
	}
}

// buildFlags are those of `make build` (and of release builds): no symbol
// table or DWARF, no local paths, no cgo, no gRPC x/net/trace support.
var buildFlags = []string{"-trimpath", "-tags", "grpcnotrace", "-ldflags", "-s -w"}

// collectorBuildFlags are those of the Collector's own release builds
// (its builder's goreleaser configuration): the Collector is measured as its
// users run it.
var collectorBuildFlags = []string{"-trimpath", "-ldflags", "-s -w"}

func goBuild(ctx context.Context, dir, out, pkg string, flags []string) error {
	args := append(append([]string{"build"}, flags...), "-o", out, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// collectorBinary returns the benchmark Collector, building it into the
// cache when its sources changed (several minutes cold).
func collectorBinary(ctx context.Context, root string, log *slog.Logger) (string, error) {
	if p := os.Getenv("PODSTAMP_OTELCOL"); p != "" {
		return p, nil
	}
	dir := filepath.Join(root, "bench", "collector")
	h := sha256.New()
	h.Write([]byte(strings.Join(collectorBuildFlags, " ")))
	for _, f := range []string{"go.mod", "go.sum", "main.go", "prepare.sh"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	cache, err := cluster.CacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "otelcol-bench-"+hex.EncodeToString(h.Sum(nil))[:12])
	if st, err := os.Stat(bin); err == nil && st.Size() > 1<<20 {
		return bin, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	log.Info("building the benchmark Collector (first run only, several minutes)", "into", bin)
	start := time.Now()
	prep := exec.CommandContext(ctx, "sh", "prepare.sh")
	prep.Dir = dir
	if b, err := prep.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench/collector/prepare.sh: %w\n%s", err, b)
	}
	if err := goBuild(ctx, dir, bin+".tmp", ".", collectorBuildFlags); err != nil {
		return "", err
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		return "", err
	}
	log.Info("built the Collector", "took", time.Since(start).Round(time.Second))
	return bin, nil
}
