#!/bin/sh
# Lays out the patched k8sattributesprocessor that go.mod replaces.
#
# k8sattributesprocessor v1.4.1 (the release that goes with collector
# v0.165.0 / pdata v1.71.0 / contrib v0.165.1) imports
# go.opentelemetry.io/otel/semconv/v1.44.0 from an unreleased otel
# snapshot. The released otel v1.47.0 has every constant it uses in
# semconv/v1.43.0, so this copies the module from the module cache and
# points those imports at v1.43.0. Nothing else is changed.
set -eu
cd "$(dirname "$0")"
mod=github.com/open-telemetry/opentelemetry-collector-contrib/processor/k8sattributesprocessor
ver=v1.4.1
dst=third_party/k8sattributesprocessor
stamp="$dst/.prepared-$ver"
[ -f "$stamp" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "$mod@$ver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$src" ] || { echo "prepare: cannot download $mod@$ver" >&2; exit 1; }
rm -rf "$dst"
mkdir -p third_party
cp -R "$src" "$dst"
chmod -R u+w "$dst"
grep -rl 'go.opentelemetry.io/otel/semconv/v1.44.0' "$dst" | while read -r f; do
	sed -i 's#go.opentelemetry.io/otel/semconv/v1.44.0#go.opentelemetry.io/otel/semconv/v1.43.0#g' "$f"
done
touch "$stamp"
