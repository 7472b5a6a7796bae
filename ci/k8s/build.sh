#!/bin/bash
# Builds the Kubernetes v1.34.4 node and control-plane binaries (kubelet,
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl) from the
# Go module proxy into _build/k8s/bin, via a scratch module in _build/k8s/src.
# k8s.io/kubernetes is not meant to be required as a module: its go.mod points
# the 31 staging modules at ./staging, so every one needs a replace to the
# matching published v0.34.x version.
#
# Cached: when every binary exists and was built by this exact script (its
# sha256 is stored next to them), nothing is rebuilt.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${K8S_BUILD_DIR:-$root/_build/k8s}"
bindir="$out/bin"
src="$out/src"
k8s_version=v1.34.4
staging_version=v0.34.4
bins=(kubelet kube-apiserver kube-controller-manager kube-scheduler kubectl)

stamp="$bindir/.build-stamp"
want="$(sha256sum "$here/build.sh" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	ok=1
	for b in "${bins[@]}"; do [ -x "$bindir/$b" ] || ok=0; done
	if [ "$ok" = 1 ]; then
		echo "k8s/build: cached binaries in $bindir"
		exit 0
	fi
fi

staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime
	client-go cloud-provider cluster-bootstrap code-generator component-base
	component-helpers controller-manager cri-api cri-client csi-translation-lib
	dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator
	kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
	mount-utils pod-security-admission sample-apiserver sample-cli-plugin
	sample-controller)

mkdir -p "$src" "$bindir"
{
	echo "module podvisor.local/k8sbuild"
	echo
	echo "go 1.24.0"
	echo
	echo "godebug default=go1.24"
	echo
	echo "require k8s.io/kubernetes $k8s_version"
	echo
	echo "replace ("
	for m in "${staging[@]}"; do
		echo "	k8s.io/$m => k8s.io/$m $staging_version"
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
echo "k8s/build: resolving k8s.io/kubernetes $k8s_version"
go mod tidy
go mod download
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34 -X k8s.io/component-base/version.gitTreeState=clean"
for b in "${bins[@]}"; do
	t=$(date +%s)
	echo "k8s/build: building $b"
	go build -trimpath -ldflags "$ldflags" -o "$bindir/$b.tmp" "k8s.io/kubernetes/cmd/$b"
	mv "$bindir/$b.tmp" "$bindir/$b"
	echo "k8s/build: $b built in $(($(date +%s) - t)) s"
done
echo "$want" >"$stamp"
echo "k8s/build: done in $(($(date +%s) - start)) s"
