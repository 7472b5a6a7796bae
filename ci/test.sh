#!/usr/bin/env bash
# `make test`: every tier this machine allows, in order of cost. It installs
# what it needs and starts what it needs, and stops what it started.
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
go test -race -count=1 -timeout 30m ./...

step "fuzz targets, 10s each (make fuzz runs them longer)"
FUZZTIME=10s ci/test-fuzz.sh

step "golden domain XML against libvirt's schema"
ci/validate-domain-xml.sh

step "crictl on bin/podvisor --hypervisor sim, kill -9 between every step"
ci/test-crictl-sim.sh _build/tools/crictl

step "scale smoke: TestScale with 50 pods on bin/podvisor --hypervisor sim (make bench runs 500 and records)"
PODVISOR_SCALE_PODS=50 go test -count=1 -timeout 10m -run '^TestScale$' ./internal/scalebench/

step "real libvirt + QEMU"
if ! ci/libvirtd.sh status 2>/dev/null | grep '^libvirtd: running' >/dev/null; then started+=(ci/libvirtd.sh); fi
ci/libvirtd.sh start
ci/test-libvirt.sh
KEEP_LIBVIRTD=1 ci/real-pod.sh test

# shellcheck disable=SC2043 # a list of one: tiers that may be absent go here
for extra in ci/test-proxy.sh; do
	if [ -x "$extra" ]; then
		step "$extra"
		"$extra"
	fi
done

step "make test: all tiers passed"
