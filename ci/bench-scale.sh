#!/usr/bin/env bash
# Scale measurement on the simulated hypervisor: 500 pods, written to
# docs/bench/scale.md.
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
PODVISOR_SCALE_PODS="${PODVISOR_SCALE_PODS:-500}" PODVISOR_SCALE_OUT="$PWD/docs/bench/scale.md" \
	go test -count=1 -timeout 30m -run TestScale -v ./internal/scalebench/ | tail -20
