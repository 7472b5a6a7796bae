#!/usr/bin/env bash
# P1 and P2 of docs/bench/start.md: a VM pod through podvisor's CRI on real
# libvirt + QEMU against raw virsh define + start and against plain QEMU, in
# one run (internal/processtests TestStartBench). Root; after make build.
# shellcheck source=ci/bench-env.inc
. "$(dirname "$0")/bench-env.inc"
# P2 for the real cloud image of make test too (PODVISOR_BENCH_CLOUDIMAGE=0
# leaves it out: about 12 minutes): built or found cached here.
cloud_dir=${PODVISOR_CLOUDIMAGE_DIR:-/var/tmp/podvisor-cloud-image}
cloud=${PODVISOR_BENCH_CLOUDIMAGE:-1}
if [ "$cloud" = 1 ]; then ci/build-cloud-image.sh "$cloud_dir" >/dev/null; fi
PODVISOR_BENCH_CLOUDIMAGE=$cloud PODVISOR_BENCH_START=1 PODVISOR_GUEST_DIR=$guest_dir PODVISOR_CLOUDIMAGE_DIR=$cloud_dir PODVISOR_BENCH_OUT=$PWD/docs/bench/start.md \
	go test -count=1 -timeout 60m -v -run '^TestStartBench$' ./internal/processtests/

# P3: bursts of VM pods through kubelet on the e2e node (conformance/e2e "a
# burst of VM pods"), appended to start.md as its own section.
if [ "${PODVISOR_BENCH_BURST:-10,20}" != 0 ]; then
	part=$(mktemp /tmp/podvisor-burst.XXXXXX.md)
	PODVISOR_BENCH_BURST=${PODVISOR_BENCH_BURST:-10,20} PODVISOR_BENCH_OUT=$part \
		E2E_TIMEOUT=${E2E_TIMEOUT:-90m} ci/e2e.sh -ginkgo.focus='a burst of VM pods'
	cat "$part" >>docs/bench/start.md
	rm -f "$part"
fi
