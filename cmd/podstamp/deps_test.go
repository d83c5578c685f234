package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestBinaryDependencies keeps client-go, apimachinery and every k8s.io/api
// package out of the binary. On the kernels podstamp runs on, the pages of
// the binary are most of its resident memory: k8s.io/api/core/v1 alone was
// about a third of the binary (generated protobuf code, deep copies and
// documentation of some 200 types, kept because of reflection), and
// client-go's rest client and informer with apimachinery (its serializers
// bring CBOR, YAML and two JSON libraries) another 3.7 MB of 18. The pod
// cache lists and watches the node's pods itself (informer/listwatch.go)
// over a small HTTP client (informer.NewAPI), with the lean types of
// informer/kubetypes read as JSON and metadata-only reads of everything
// else. The main module does not require client-go at all: the end-to-end
// suite, which does, is a module of its own.
func TestBinaryDependencies(t *testing.T) {
	deps := goListDeps(t)
	// What the pod cache is built on must still be there, or the list is
	// not what this test thinks it is.
	for _, want := range []string{
		"github.com/podstamp/podstamp/informer", "github.com/podstamp/podstamp/informer/kubetypes",
	} {
		if !slices.Contains(deps, want) {
			t.Errorf("podstamp does not depend on %s", want)
		}
	}
	banned := []string{
		"k8s.io/api", // every API group, core/v1 included
		"k8s.io/apimachinery",
		"k8s.io/client-go",
		"k8s.io/klog",
		"github.com/fxamacker/cbor",
		"github.com/google/gnostic-models",
	}
	for _, p := range deps {
		bad := false
		for _, b := range banned {
			bad = bad || p == b || strings.HasPrefix(p, b+"/")
		}
		if bad {
			t.Errorf("podstamp depends on %s (the pod cache reads the API server through informer.NewAPI and the types of informer/kubetypes; see informer/client.go and listwatch.go)", p)
		}
	}
}

// TestReleaseBuildTags: `make build` (and the image build and the bench
// runner) build with -tags grpcnotrace, which leaves out gRPC's
// golang.org/x/net/trace and the html/template it brings, about 3 MB.
func TestReleaseBuildTags(t *testing.T) {
	if deps := goListDeps(t); !slices.Contains(deps, "html/template") {
		t.Log("html/template is not linked even without the tag; the tag may no longer be needed")
	}
	for _, p := range goListDeps(t, "-tags", "grpcnotrace") {
		if p == "html/template" || p == "golang.org/x/net/trace" {
			t.Errorf("with -tags grpcnotrace podstamp still depends on %s", p)
		}
	}
}

func goListDeps(t *testing.T, flags ...string) []string {
	t.Helper()
	goBin := goCommand(t)
	out, err := exec.Command(goBin, append(append([]string{"list"}, flags...), "-deps", ".")...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -deps: %v\n%s", err, stderr)
	}
	return strings.Fields(string(out))
}

// goCommand is the go command that runs this test: the one on PATH.
func goCommand(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command on PATH: %v", err)
	}
	return p
}
