#!/bin/sh
# Builds rayo's container image from deploy/Containerfile with podman, or
# docker when there is no podman. The build context is staged here, as
# the image's file tree under rootfs/: a static (CGO_ENABLED=0) rayo
# binary for this machine's architecture, with the version stamped, in
# usr/local/bin, and an empty tmp/ of mode 1777. The Containerfile starts
# FROM scratch, so nothing is fetched. make image runs it; its settings
# come from the environment:
#
#   VERSION  the version to stamp (default: git describe --tags --always --dirty)
#   IMAGE    the image's name (default: rayo:VERSION)
#   ENGINE   podman or docker (default: the first of them found)
#   GO       the go command (default: go)
set -eu

cd "$(dirname "$0")/.."
GO=${GO:-go}
if [ -z "${VERSION:-}" ]; then
	VERSION=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
fi
case $VERSION in
*[!A-Za-z0-9.+_-]*)
	echo "image: VERSION $VERSION: use only letters, digits and . + _ -" >&2
	exit 1
	;;
esac
IMAGE=${IMAGE:-rayo:$VERSION}
if [ -z "${ENGINE:-}" ]; then
	for e in podman docker; do
		if command -v "$e" >/dev/null 2>&1; then
			ENGINE=$e
			break
		fi
	done
fi
if [ -z "${ENGINE:-}" ]; then
	echo "image: neither podman nor docker is installed" >&2
	exit 1
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
echo "image: building the static binary ($VERSION)"
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/tmp"
CGO_ENABLED=0 GOOS=linux "$GO" build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o "$ctx/rootfs/usr/local/bin/rayo" ./cmd/rayo
chmod 0755 "$ctx/rootfs" "$ctx/rootfs/usr" "$ctx/rootfs/usr/local" "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/usr/local/bin/rayo"
chmod 1777 "$ctx/rootfs/tmp"
echo "image: $ENGINE build -t $IMAGE"
"$ENGINE" build --pull=never -f deploy/Containerfile -t "$IMAGE" "$ctx"
