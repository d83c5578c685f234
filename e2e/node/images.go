package node

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/podstamp/podstamp/e2e/cluster"
	"github.com/podstamp/podstamp/e2e/node/image"
)

// Image references of the cluster's images. PodstampRepository is the
// chart's default image repository: the test runs the image under the name a
// release publishes, with imagePullPolicy Never.
const (
	PodstampRepository = "ghcr.io/podstamp/podstamp"
	CollectorImage     = "podstamp.local/otelcol:e2e"
	SinkImage          = "podstamp.local/sink:e2e"
	DemoAppImage       = "podstamp.local/demoapp:e2e"
)

// PodstampBuildFlags are those of `make build` and of a release.
func PodstampBuildFlags(version string) []string {
	return []string{"-trimpath", "-tags", "grpcnotrace", "-ldflags", "-s -w -X main.version=" + version}
}

// GoBuild builds pkg in dir into out with CGO_ENABLED=0.
func GoBuild(ctx context.Context, dir, out, pkg string, flags ...string) error {
	args := append(append([]string{"build"}, flags...), "-o", out, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// collectorBuildFlags must stay those of bench/cmd/runner, whose cached
// Collector binary this shares.
var collectorBuildFlags = []string{"-trimpath", "-ldflags", "-s -w"}

// CollectorBinary returns the Collector bench/collector builds, from the
// same cache entry the benchmark runner uses (several minutes cold).
func CollectorBinary(ctx context.Context, logf func(string, ...any)) (string, error) {
	if p := os.Getenv("PODSTAMP_OTELCOL"); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
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
	if cluster.Usable(bin) && static(bin) {
		return bin, nil
	}
	// An image without a C library needs a static binary; a cached one
	// built with cgo gets a static sibling.
	if cluster.Usable(bin) {
		bin += "-static"
		if cluster.Usable(bin) && static(bin) {
			return bin, nil
		}
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	logf("building the Collector of bench/collector into %s (first run only, several minutes)", bin)
	start := time.Now()
	prep := exec.CommandContext(ctx, "sh", "prepare.sh")
	prep.Dir = dir
	if b, err := prep.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench/collector/prepare.sh: %w\n%s", err, b)
	}
	if err := GoBuild(ctx, dir, bin+".tmp", ".", collectorBuildFlags...); err != nil {
		return "", err
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		return "", err
	}
	logf("built the Collector in %s", time.Since(start).Round(time.Second))
	return bin, nil
}

// static reports whether an ELF binary has no program interpreter, i.e.
// needs no dynamic loader or C library at run time.
func static(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// Images builds every image the cluster runs and writes them into one
// docker-archive tarball under dir; podstampRef is the podstamp image's
// reference.
func Images(ctx context.Context, dir, podstampRef string, logf func(string, ...any)) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	here := filepath.Join(root, "e2e", "node")
	bins := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bins, 0o755); err != nil {
		return "", err
	}
	start := time.Now()
	if err := GoBuild(ctx, root, filepath.Join(bins, "podstamp"), "./cmd/podstamp", PodstampBuildFlags("e2e-node")...); err != nil {
		return "", err
	}
	for _, c := range []string{"pause", "sink", "demoapp"} {
		if err := GoBuild(ctx, here, filepath.Join(bins, c), "./cmd/"+c, "-trimpath", "-ldflags", "-s -w"); err != nil {
			return "", err
		}
	}
	collector, err := CollectorBinary(ctx, logf)
	if err != nil {
		return "", err
	}
	specs := map[string]image.Spec{
		podstampRef:    PodstampSpec(filepath.Join(bins, "podstamp"), "e2e-node"),
		PauseImage:     {Binary: filepath.Join(bins, "pause"), Name: "pause"},
		SinkImage:      {Binary: filepath.Join(bins, "sink"), Name: "sink"},
		DemoAppImage:   {Binary: filepath.Join(bins, "demoapp"), Name: "demoapp"},
		CollectorImage: {Binary: collector, Name: "otelcol"},
	}
	imgs := map[string]v1.Image{}
	for ref, s := range specs {
		img, err := image.Build(s)
		if err != nil {
			return "", err
		}
		imgs[ref] = img
	}
	out := filepath.Join(dir, "images.tar")
	if err := image.WriteTarball(out, imgs); err != nil {
		return "", err
	}
	logf("built %d images into %s in %s", len(imgs), out, time.Since(start).Round(time.Second))
	return out, nil
}

// PodstampSpec is podstamp's published image: the static binary as
// /podstamp, non-root, its listener ports documented.
func PodstampSpec(binary, version string) image.Spec {
	return image.Spec{
		Binary: binary,
		Name:   "podstamp",
		Ports:  []string{"4317/tcp", "4318/tcp", "10291/tcp"},
		Labels: map[string]string{
			"org.opencontainers.image.title":    "podstamp",
			"org.opencontainers.image.source":   "https://github.com/podstamp/podstamp",
			"org.opencontainers.image.version":  version,
			"org.opencontainers.image.licenses": "Apache-2.0",
		},
	}
}
