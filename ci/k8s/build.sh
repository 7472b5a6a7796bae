#!/bin/bash
# Builds the Kubernetes node and control-plane binaries (kubelet,
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl) of
# $K8S_VERSION (default v1.37.2) from the Go module proxy, via a scratch
# module. k8s.io/kubernetes is not meant to be required as a module: its
# go.mod points the 33 staging modules at ./staging, so every one needs a
# replace to the matching published v0.X.Y version.
#
# Cached outside the clone, keyed by version, so later runs and other clones
# reuse it: $PODVISOR_CACHE (default /var/cache/podvisor)/k8s-<version>/bin.
# The stamp there records the version, the Go toolchain and the flags; when
# it matches and every binary exists nothing is rebuilt. A lock serialises
# concurrent builds of the same version.
#
# Prints the bin directory on stdout (progress goes to stderr).
set -euo pipefail

k8s_version=${K8S_VERSION:-v1.37.2}
cache=${PODVISOR_CACHE:-/var/cache/podvisor}
out="$cache/k8s-$k8s_version"
bindir="$out/bin"
src="$out/src"
minor=${k8s_version#v1.}
minor=${minor%%.*}
staging_version="v0.$minor.${k8s_version##*.}"
bins=(kubelet kube-apiserver kube-controller-manager kube-scheduler kubectl)
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
export PATH=/usr/local/go/bin:$PATH
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
want="k8s=$k8s_version $(go env GOVERSION) cgo=0 ldflags=$ldflags"

log() { echo "k8s/build: $*" >&2; }

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

mkdir -p "$src" "$bindir"
gomod=$(go mod download -json "k8s.io/kubernetes@$k8s_version" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
[ -f "$gomod" ] || { log "cannot fetch k8s.io/kubernetes@$k8s_version's go.mod"; exit 1; }
# The staging modules are exactly the ones k8s.io/kubernetes replaces with ./staging.
mapfile -t staging < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod")
[ "${#staging[@]}" -gt 20 ] || { log "found only ${#staging[@]} staging modules in $gomod"; exit 1; }
goline=$(awk '$1 == "go" {print $2; exit}' "$gomod")
{
	echo "module podvisor.local/k8sbuild"
	echo
	echo "go $goline"
	echo
	echo "godebug default=go${goline%.*}"
	echo
	echo "require k8s.io/kubernetes $k8s_version"
	echo
	echo "replace ("
	for m in "${staging[@]}"; do
		echo "	$m => $m $staging_version"
	done
	echo ")"
} >"$src/go.mod"
cat >"$src/tools.go" <<'GO'
//go:build tools

// Package k8sbuild only pins the Kubernetes commands built by ci/k8s/build.sh.
package k8sbuild

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
rm -f "$src/go.sum"

cd "$src"
export GOFLAGS=-mod=mod
export CGO_ENABLED=0
start=$(date +%s)
log "resolving k8s.io/kubernetes $k8s_version (${#staging[@]} staging modules at $staging_version)"
go mod tidy >&2
go mod download >&2
for b in "${bins[@]}"; do
	t=$(date +%s)
	log "building $b"
	go build -trimpath -ldflags "$ldflags" -o "$bindir/$b.tmp" "k8s.io/kubernetes/cmd/$b" >&2
	mv "$bindir/$b.tmp" "$bindir/$b"
	log "$b built in $(($(date +%s) - t)) s"
done
echo "$want" >"$bindir/.build-stamp"
log "done in $(($(date +%s) - start)) s"
echo "$bindir"
