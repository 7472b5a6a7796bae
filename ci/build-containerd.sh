#!/bin/bash
# Builds containerd 2.x ($CONTAINERD_VERSION, default v2.4.2) from the Go
# module proxy: containerd, ctr and the runc shim containerd-shim-runc-v2
# (runc itself is Debian's). Static (CGO_ENABLED=0; no btrfs snapshotter).
#
# Cached outside the clone, keyed by version, so later runs and other clones
# reuse it: $PODVISOR_CACHE (default /var/cache/podvisor)/containerd-<version>/bin.
# The stamp records the version, the Go toolchain and the flags; when it
# matches and every binary exists nothing is rebuilt. A lock serialises
# concurrent builds.
#
# Prints the bin directory on stdout (progress goes to stderr).
set -euo pipefail

version=${CONTAINERD_VERSION:-v2.4.2}
cache=${PODVISOR_CACHE:-/var/cache/podvisor}
out="$cache/containerd-$version"
bindir="$out/bin"
mod=github.com/containerd/containerd/v2
bins=(containerd ctr containerd-shim-runc-v2)
tags=no_btrfs
ldflags="-s -w -X $mod/version.Version=$version -X $mod/version.Revision=module-proxy -X $mod/version.Package=github.com/containerd/containerd"
export PATH=/usr/local/go/bin:$PATH
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
want="containerd=$version $(go env GOVERSION) cgo=0 tags=$tags ldflags=$ldflags"

log() { echo "containerd/build: $*" >&2; }

cached() {
	[ -f "$bindir/.build-stamp" ] && [ "$(cat "$bindir/.build-stamp")" = "$want" ] || return 1
	local b
	for b in "${bins[@]}"; do [ -x "$bindir/$b" ] || return 1; done
}

mkdir -p "$out"
exec 8>"$out/.lock"
if ! cached; then
	flock 8
fi
if cached; then
	log "cached binaries in $bindir"
	echo "$bindir"
	exit 0
fi

mkdir -p "$bindir"
start=$(date +%s)
export CGO_ENABLED=0 GOFLAGS=
for b in "${bins[@]}"; do
	t=$(date +%s)
	log "building $b $version"
	# go install pkg@version builds with containerd's own go.mod and go.sum.
	GOBIN="$out/gobin" go install -trimpath -tags "$tags" -ldflags "$ldflags" "$mod/cmd/$b@$version" >&2
	mv "$out/gobin/$b" "$bindir/$b"
	log "$b built in $(($(date +%s) - t)) s"
done
rmdir "$out/gobin" 2>/dev/null || true
echo "$want" >"$bindir/.build-stamp"
log "done in $(($(date +%s) - start)) s"
echo "$bindir"
