package image

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestBuildIsReproducibleNonRootAndHoldsTheBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(bin, []byte("\x7fELF not really"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := Spec{Binary: bin, Name: "prog", Ports: []string{"4317/tcp"}}
	a, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("same input, two digests: %s %s", da, db)
	}
	cf, err := a.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/prog" || cf.OS != "linux" {
		t.Errorf("config: user %q entrypoint %q os %q", cf.Config.User, cf.Config.Entrypoint, cf.OS)
	}
	layers, err := a.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
	}
	if h := got["prog"]; h == nil || h.Mode != 0o755 || h.Size != 15 {
		t.Errorf("prog in the layer: %+v", h)
	}
	if h := got["tmp/"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("tmp/ in the layer: %+v", h)
	}
	if got["etc/passwd"] == nil || got["etc/group"] == nil {
		t.Errorf("no /etc/passwd or /etc/group in the layer")
	}

	s.Root = true
	r, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	if cf, _ := r.ConfigFile(); cf.Config.User != "" {
		t.Errorf("Root image runs as %q", cf.Config.User)
	}
}

func TestBuildMissingBinaryNamesIt(t *testing.T) {
	_, err := Build(Spec{Binary: "/nonexistent/prog", Name: "prog"})
	if err == nil {
		t.Fatal("no error for a missing binary")
	}
}
