// Package image builds podstamp's container image, and the other images of
// the one-node cluster, without a container engine: one layer holding the
// static binary and the few files a non-root static program needs, written
// with go-containerregistry as a docker-archive tarball (which
// `ctr images import` and `docker load` read) or pushed to a registry.
//
// Promises: the layer is reproducible (fixed timestamps, sorted entries) so
// the same binary gives the same image digest; the image runs as
// 65532:65532 (nonroot) unless the caller says otherwise; /tmp exists and is
// world-writable with the sticky bit; the CA bundle of the build machine is
// included when present, so TLS to an upstream works.
package image
