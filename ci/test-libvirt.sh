#!/bin/bash
# Runs the Go tests gated by PODVISOR_LIBVIRT_TESTS=1 against the libvirtd
# that ci/libvirtd.sh starts (it is left running; ci/libvirtd.sh stop stops
# it): the libvirt package's integration tests, then runtime/network's
# TestLibvirtGuestGetsPodNetwork (a VM through podvisor-vmwrapper gets the
# pod IP from podvisor's DHCP). Arguments (e.g. -run TestX) go to the
# libvirt package's go test, and the second one is then left out.
# Needs root and the packages from ci/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/install-deps.sh
ci/libvirtd.sh start
export PODVISOR_LIBVIRT_TESTS=1
# The test guest is cached here across runs.
export PODVISOR_GUEST_DIR="${PODVISOR_GUEST_DIR:-/var/tmp/podvisor-test-guest}"
ci/build-guest.sh "$PODVISOR_GUEST_DIR"
go test -count=1 -timeout 20m -v ./runtime/hypervisor/libvirt/... "$@"
if [ "$#" -eq 0 ]; then
	go test -count=1 -timeout 20m -v -run '^TestLibvirtGuestGetsPodNetwork$' ./runtime/network/
fi
