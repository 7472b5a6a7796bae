#!/usr/bin/env bash
# docs/bench/overhead.md: host memory per VM beyond its guest's RAM, for 1
# and 10 VMs of the test guest on real libvirt + QEMU (internal/processtests
# TestOverheadBench). Root; after make build.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
guest_dir=${PODVISOR_GUEST_DIR:-/var/tmp/podvisor-test-guest}
started=""
if ! ci/libvirtd.sh status 2>/dev/null | grep '^libvirtd: running' >/dev/null; then started=1; fi
cleanup() { if [ -n "$started" ]; then ci/libvirtd.sh stop >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT
ci/libvirtd.sh start >/dev/null
ci/build-guest.sh "$guest_dir" >/dev/null
mkdir -p docs/bench
out=$PWD/docs/bench/overhead.md
[ "${PODVISOR_BENCH_ROUNDS:-}" = 1 ] && out=$PWD/docs/bench/overhead-try.md
PODVISOR_BENCH_OVERHEAD=1 PODVISOR_GUEST_DIR=$guest_dir PODVISOR_BENCH_OUT=$out \
	go test -count=1 -timeout 40m -v -run '^TestOverheadBench$' ./internal/processtests/
