package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestBinaryDependencies keeps client-go's typed clientset out of the
// binary. Its scheme registers every API group, and the pages of that code
// were most of podstamp's resident memory; the pod cache reads the API
// through informer.NewAPI instead, with a scheme of core/v1 pods and nodes
// and metadata-only reads of everything else.
func TestBinaryDependencies(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -deps: %v\n%s", err, stderr)
	}
	deps := strings.Fields(string(out))
	// What the pod cache is built on must still be there, or the list is
	// not what this test thinks it is.
	for _, want := range []string{
		"k8s.io/client-go/tools/cache", "k8s.io/client-go/rest", "k8s.io/client-go/tools/clientcmd",
		"k8s.io/api/core/v1", "github.com/podstamp/podstamp/informer",
	} {
		if !slices.Contains(deps, want) {
			t.Errorf("podstamp does not depend on %s", want)
		}
	}
	banned := []string{
		"k8s.io/client-go/kubernetes",
		"k8s.io/client-go/applyconfigurations",
		"k8s.io/client-go/gentype",
		"k8s.io/client-go/discovery",
		"k8s.io/client-go/openapi",
		"github.com/google/gnostic-models",
	}
	for _, p := range deps {
		bad := strings.HasPrefix(p, "k8s.io/api/") && p != "k8s.io/api/core/v1"
		for _, b := range banned {
			bad = bad || p == b || strings.HasPrefix(p, b+"/")
		}
		if bad {
			t.Errorf("podstamp depends on %s (only the pod cache's minimal client may talk to the API server; see informer/client.go)", p)
		}
	}
}
