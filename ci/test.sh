#!/usr/bin/env bash
# `make test`: every tier this machine allows, in order of cost. It installs
# what it needs and starts what it needs, and stops what it started. Each
# tier is a Makefile target, so a developer reruns one with `make <target>`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/_build/tools:/usr/local/go/bin:$PATH"
export CRICTL="$PWD/_build/tools/crictl"

step() { printf '\n\033[1m### %s\033[0m (at %ds)\n' "$*" "$SECONDS"; }
started=()
cleanup() {
	for s in "${started[@]}"; do "$s" stop >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

step "dependencies (Debian packages, crictl)"
ci/install-deps.sh
make --no-print-directory tools build

step "lint: gofmt, go vet, go mod tidy"
make --no-print-directory lint

step "unit and in-process tiers (-race)"
make --no-print-directory unit

step "fuzz targets, 10s each (make fuzz runs them longer)"
make --no-print-directory fuzz FUZZTIME=10s

step "golden domain XML against libvirt's schema"
make --no-print-directory domain-xml

step "bin/podvisor --hypervisor sim as a process, kill -9 between the lifecycle steps (internal/processtests)"
make --no-print-directory crictl-sim

step "scale smoke: TestScale with 50 pods on bin/podvisor --hypervisor sim (make bench runs 500 and records)"
make --no-print-directory scale-smoke

step "OCI pulls from docker-registry on loopback, pushed with skopeo (make registry-tests)"
make --no-print-directory registry-tests

step "real libvirt + QEMU"
if ! ci/libvirtd.sh status 2>/dev/null | grep '^libvirtd: running' >/dev/null; then started+=(ci/libvirtd.sh); fi
ci/libvirtd.sh start
make --no-print-directory libvirt-it
KEEP_LIBVIRTD=1 make --no-print-directory real-pod

step "a real Debian 12 cloud image through the CRI, and the golden cloud-init drives in it (ci/cloud-image.sh)"
KEEP_LIBVIRTD=1 make --no-print-directory cloud-image-it

step "criproxy in front of real containerd (ci/test-proxy.sh)"
make --no-print-directory proxy-it

step "make test: all tiers passed"
