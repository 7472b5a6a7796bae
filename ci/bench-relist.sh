#!/usr/bin/env bash
# kubelet's relist pattern on a full node (110 VM pods, kubelet's default
# limit) on the simulated hypervisor: docs/bench/relist.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
make build >/dev/null
PODVISOR_RELIST_PODS="${PODVISOR_RELIST_PODS:-110}" PODVISOR_RELIST_OUT="$PWD/docs/bench/relist.md" \
	go test -count=1 -timeout 20m -run '^TestRelist$' -v ./internal/scalebench/ | tail -20
