#!/bin/sh
# Builds rayo's release archives: one static (CGO_ENABLED=0) binary per
# platform, with the version stamped into it, packed with the LICENSE and
# the README as rayo-VERSION-OS-ARCH.tar.gz, and a SHA256SUMS file over the
# archives. make release runs it; its settings come from the environment:
#
#   VERSION    the version to stamp (default: git describe --tags --always --dirty)
#   PLATFORMS  OS/ARCH pairs (default: "linux/amd64 linux/arm64")
#   DIST       the output folder (default: dist); it is emptied first
#   GO         the go command (default: go)
set -eu

cd "$(dirname "$0")/.."
GO=${GO:-go}
DIST=${DIST:-dist}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64}
if [ -z "${VERSION:-}" ]; then
	VERSION=$(git describe --tags --always --dirty 2>/dev/null || true)
fi
if [ -z "$VERSION" ]; then
	echo "release: no VERSION given and git describe found none" >&2
	exit 1
fi
case $VERSION in
*[!A-Za-z0-9.+_-]*)
	echo "release: VERSION $VERSION: use only letters, digits and . + _ -" >&2
	exit 1
	;;
esac

rm -rf "$DIST"
mkdir -p "$DIST"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for p in $PLATFORMS; do
	os=${p%/*}
	arch=${p#*/}
	if [ "$os" != linux ]; then
		echo "release: $p: rayo runs on Linux only (memfd, SO_PEERCRED, cgroups)" >&2
		exit 1
	fi
	name=rayo-$VERSION-$os-$arch
	mkdir -p "$stage/$name"
	echo "release: building $name"
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch "$GO" build -trimpath \
		-ldflags "-s -w -X main.version=$VERSION" \
		-o "$stage/$name/rayo" ./cmd/rayo
	cp LICENSE README.md "$stage/$name/"
	tar -C "$stage" -czf "$DIST/$name.tar.gz" --owner=0 --group=0 --numeric-owner "$name"
done
(cd "$DIST" && sha256sum -- *.tar.gz >SHA256SUMS)
echo "release: $DIST/SHA256SUMS"
cat "$DIST/SHA256SUMS"
