package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRoot is the user and group the images run as (distroless "nonroot").
const NonRoot = 65532

// CABundle is where the CA bundle is read from and placed in the image.
const CABundle = "/etc/ssl/certs/ca-certificates.crt"

// File is one regular file or directory of the image's layer.
type File struct {
	Path string // absolute path inside the image
	Data []byte
	Mode int64 // permission bits
	Dir  bool
	UID  int
}

// Spec describes one image.
type Spec struct {
	// Binary is the program's path on this machine; it becomes /<Name>.
	Binary string
	// Name is the file name of the binary in the image and of the entrypoint.
	Name string
	// Args are the default arguments (Cmd).
	Args []string
	// Root runs the image as root instead of 65532.
	Root bool
	// Ports are documented as exposed (e.g. "4317/tcp").
	Ports []string
	// Labels are image labels (org.opencontainers.image.*).
	Labels map[string]string
}

// epoch is the layer's file time: reproducible images need a fixed one.
var epoch = time.Unix(0, 0).UTC()

// Build returns the image for s.
func Build(s Spec) (v1.Image, error) {
	bin, err := os.ReadFile(s.Binary)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", s.Name, err)
	}
	files := BaseFiles()
	files = append(files, File{Path: "/" + s.Name, Data: bin, Mode: 0o755})
	layerTar, err := Tar(files)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.DockerLayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.DockerManifestSchema2), layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = []string{"/" + s.Name}
	cf.Config.Cmd = s.Args
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=" + CABundle}
	if !s.Root {
		cf.Config.User = fmt.Sprintf("%d:%d", NonRoot, NonRoot)
	}
	if len(s.Ports) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range s.Ports {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	cf.Config.Labels = s.Labels
	return mutate.ConfigFile(img, cf)
}

// BaseFiles are the files every image has: /etc/passwd and /etc/group with
// root and nonroot, /tmp (1777), /home/nonroot, and the CA bundle of this
// machine when it has one.
func BaseFiles() []File {
	fs := []File{
		{Path: "/etc", Dir: true, Mode: 0o755},
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte(fmt.Sprintf(
			"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRoot, NonRoot))},
		{Path: "/etc/group", Mode: 0o644, Data: []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonRoot))},
		{Path: "/tmp", Dir: true, Mode: 0o1777},
		{Path: "/home", Dir: true, Mode: 0o755},
		{Path: "/home/nonroot", Dir: true, Mode: 0o700, UID: NonRoot},
	}
	if ca, err := os.ReadFile(CABundle); err == nil {
		fs = append(fs,
			File{Path: "/etc/ssl", Dir: true, Mode: 0o755},
			File{Path: "/etc/ssl/certs", Dir: true, Mode: 0o755},
			File{Path: CABundle, Data: ca, Mode: 0o644})
	}
	return fs
}

// Tar writes files as an uncompressed tar, sorted by path, with fixed times.
func Tar(files []File) ([]byte, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.Path[1:], Mode: f.Mode, ModTime: epoch, Uid: f.UID, Gid: f.UID, Format: tar.FormatPAX}
		if f.Dir {
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if !f.Dir {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteTarball writes images, each under its reference, as one
// docker-archive tarball.
func WriteTarball(path string, images map[string]v1.Image) error {
	refs := map[name.Reference]v1.Image{}
	for r, img := range images {
		ref, err := name.ParseReference(r)
		if err != nil {
			return fmt.Errorf("image reference %q: %w", r, err)
		}
		refs[ref] = img
	}
	return tarball.MultiRefWriteToFile(path, refs)
}
