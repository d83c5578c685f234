// Command podstamp-image builds podstamp's container image without a
// container engine: it builds ./cmd/podstamp as `make build` does (static,
// -trimpath, -tags grpcnotrace) and puts it, with /etc/passwd, /etc/group,
// /tmp and the CA bundle, in a one-layer image that runs as 65532:65532.
// This is the image the chart's default reference names, and the one the
// one-node cluster test runs.
//
//	go run ./cmd/podstamp-image -out podstamp.tar             # docker-archive for ctr/docker load
//	go run ./cmd/podstamp-image -push ghcr.io/podstamp/podstamp:0.1.0
//
// -push uses the credentials of ~/.docker/config.json.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/podstamp/podstamp/e2e/node"
	"github.com/podstamp/podstamp/e2e/node/image"
)

func main() {
	out := flag.String("out", "", "write a docker-archive tarball here")
	push := flag.String("push", "", "push to this image reference")
	ref := flag.String("ref", node.PodstampRepository+":dev", "image reference inside the tarball (-out)")
	version := flag.String("version", "dev", "version stamped into the binary (main.version) and the image label")
	flag.Parse()
	if (*out == "") == (*push == "") {
		fmt.Fprintln(os.Stderr, "podstamp-image: give exactly one of -out and -push")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *out, *push, *ref, *version); err != nil {
		fmt.Fprintln(os.Stderr, "podstamp-image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, push, ref, version string) error {
	root, err := node.RepoRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "podstamp-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "podstamp")
	if err := node.GoBuild(ctx, root, bin, "./cmd/podstamp", node.PodstampBuildFlags(version)...); err != nil {
		return err
	}
	img, err := image.Build(node.PodstampSpec(bin, version))
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	if out != "" {
		if err := image.WriteTarball(out, map[string]v1.Image{ref: img}); err != nil {
			return err
		}
		fmt.Printf("%s %s@%s\n", out, ref, digest)
		return nil
	}
	r, err := name.ParseReference(push)
	if err != nil {
		return err
	}
	if err := remote.Write(r, img, remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithContext(ctx)); err != nil {
		return err
	}
	fmt.Printf("%s@%s\n", r, digest)
	return nil
}
