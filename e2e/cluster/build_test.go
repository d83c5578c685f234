package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// toolsModule writes a module with a main package per name, each printing
// its name, and returns its directory.
func toolsModule(t *testing.T, names ...string) string {
	t.Helper()
	mod := t.TempDir()
	files := map[string]string{"go.mod": "module example.test/tools\n\ngo 1.26\n"}
	for _, n := range names {
		files[filepath.Join(n, "main.go")] = "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"" + n + "\") }\n"
	}
	for p, data := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(mod, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mod, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return mod
}

// buildLog counts the builds a logf reports.
type buildLog struct {
	mu     sync.Mutex
	builds []string
}

func (l *buildLog) logf(format string, args ...any) {
	if msg := fmt.Sprintf(format, args...); strings.HasPrefix(msg, "building ") {
		l.mu.Lock()
		l.builds = append(l.builds, msg)
		l.mu.Unlock()
	}
}

func (l *buildLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.builds)
}

func runBinary(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	return strings.TrimSpace(string(out))
}

func TestBuildCached(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	cache := t.TempDir()
	t.Setenv("PODSTAMP_CACHE", cache)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b := Build{
		What:     "tools v1",
		Took:     "seconds",
		Module:   toolsModule(t, "alpha", "beta", "broken"),
		Packages: []string{"example.test/tools/alpha", "example.test/tools/beta"},
		Outs:     []string{filepath.Join(cache, "tools-v1", "alpha"), filepath.Join(cache, "tools-v1", "beta")},
		Lock:     ".tools.lock",
	}

	// Two callers at once: one builds both binaries in one go build, the
	// other waits on the lock and finds them built.
	var log buildLog
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- BuildCached(ctx, b, log.logf) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := log.count(); n != 1 || !strings.Contains(log.builds[0], "tools v1 [alpha beta] into "+filepath.Join(cache, "tools-v1")) {
		t.Fatalf("two concurrent callers ran %d builds, want 1 of both: %q", n, log.builds)
	}
	for i, want := range []string{"alpha", "beta"} {
		if got := runBinary(t, b.Outs[i]); got != want {
			t.Errorf("%s prints %q, want %q", b.Outs[i], got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(cache, ".tools.lock")); err != nil {
		t.Errorf("lock file: %v", err)
	}

	// A missing binary is built alone; the one in place is not touched.
	alpha, err := os.Stat(b.Outs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(b.Outs[1]); err != nil {
		t.Fatal(err)
	}
	if err := BuildCached(ctx, b, log.logf); err != nil {
		t.Fatal(err)
	}
	if n := log.count(); n != 2 || !strings.Contains(log.builds[1], "tools v1 [beta] ") {
		t.Fatalf("after removing beta: %q, want a second build of beta alone", log.builds)
	}
	if got := runBinary(t, b.Outs[1]); got != "beta" {
		t.Errorf("rebuilt beta prints %q", got)
	}
	if again, err := os.Stat(b.Outs[0]); err != nil || !again.ModTime().Equal(alpha.ModTime()) {
		t.Errorf("alpha was rebuilt or lost (%v)", err)
	}

	// A package that does not compile: the error carries go build's
	// output, and neither a binary nor a temporary directory is left.
	if err := os.WriteFile(filepath.Join(b.Module, "broken", "main.go"), []byte("package main\n\nfunc main() { undefinedName() }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(cache, "tools-v1", "broken")
	err = BuildCached(ctx, Build{What: "tools v1", Module: b.Module, Packages: []string{"example.test/tools/broken"}, Outs: []string{broken}, Lock: ".tools.lock"}, nil)
	if err == nil || !strings.Contains(err.Error(), "undefinedName") || !strings.Contains(err.Error(), "go build tools v1 [broken]") {
		t.Fatalf("building a broken package: %v", err)
	}
	if _, err := os.Stat(broken); !os.IsNotExist(err) {
		t.Errorf("a failed build left %s (%v)", broken, err)
	}
	if left, _ := filepath.Glob(filepath.Join(cache, ".build-*")); len(left) != 0 {
		t.Errorf("temporary build directories left: %v", left)
	}

	// Packages and binaries must pair up.
	if err := BuildCached(ctx, Build{What: "x", Packages: []string{"a", "b"}, Outs: []string{"a"}}, nil); err == nil {
		t.Error("two packages for one binary: no error")
	}
}

func TestBuildCachedGivesUpWhenContextEnds(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("PODSTAMP_CACHE", cache)
	// Another holder of the lock, as a concurrent build would be.
	held, err := os.OpenFile(filepath.Join(cache, ".held.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := flock(context.Background(), held); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- BuildCached(ctx, Build{What: "held", Module: t.TempDir(), Packages: []string{"example.test/held"},
			Outs: []string{filepath.Join(cache, "held")}, Lock: ".held.lock"}, nil)
	}()
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("BuildCached waiting for a held lock returned %v after its context ended, want context.Canceled", err)
	}
}
