#!/usr/bin/env bash
# docs/bench/overhead.md: host memory per VM beyond its guest's RAM, for 1
# and 10 VMs of the test guest on real libvirt + QEMU (internal/processtests
# TestOverheadBench). Root; after make build.
# shellcheck source=ci/bench-env.inc
. "$(dirname "$0")/bench-env.inc"
out=$PWD/docs/bench/overhead.md
[ "${PODVISOR_BENCH_ROUNDS:-}" = 1 ] && out=$PWD/docs/bench/overhead-try.md
PODVISOR_BENCH_OVERHEAD=1 PODVISOR_GUEST_DIR=$guest_dir PODVISOR_BENCH_OUT=$out \
	go test -count=1 -timeout 40m -v -run '^TestOverheadBench$' ./internal/processtests/
