#!/usr/bin/env bash
# The environment of the CRI proxy's side-by-side tests: the test images and
# a real containerd (ci/containerd.sh) with them imported; then the Go tests
# internal/processtests TestProxy* (each with its own bin/podvisor on the
# simulated hypervisor and bin/criproxy in front of that containerd):
#   - a container pod (containerd), a VM pod by the Virtlet annotation and a
#     VM pod by RuntimeClass handler run side by side; lists merge;
#   - kill -9 podvisor: containerd's pods stay fully usable through the
#     proxy while podvisor's calls fail fast naming podvisor;
#   - podvisor restarted: its pods are listed and usable again.
# Everything started here is stopped here, by PID.
#
# Usage: ci/test-proxy.sh [CRICTL]   (default: crictl on PATH)
# Needs root and the packages in ci/deps-proxy.txt; bin/podvisor and
# bin/criproxy from `make build`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
podvisor=${PODVISOR:-$root/bin/podvisor}
criproxy=${CRIPROXY:-$root/bin/criproxy}
crictl=${1:-${CRICTL:-crictl}}
containerd_sock=/run/podvisor-ci-containerd/containerd.sock

skip_or_fail() {
	if [ "${PODVISOR_ALLOW_SKIP:-}" = 1 ]; then echo "SKIP: $*"; exit 0; fi
	echo "FAIL: $*" >&2
	exit 1
}
[ "$(id -u)" = 0 ] || skip_or_fail "ci/test-proxy.sh needs root (containerd)"
for tool in containerd runc ctr; do
	command -v "$tool" >/dev/null || skip_or_fail "$tool not installed (apt-get install containerd runc; see ci/deps-proxy.txt)"
done
[ -x /usr/lib/cni/bridge ] || skip_or_fail "CNI plugins missing in /usr/lib/cni (containernetworking-plugins)"
for b in "$podvisor" "$criproxy"; do [ -x "$b" ] || skip_or_fail "$b missing: run make build"; done

# The private containerd is shared with ci/test-proxy.sh and
# ci/conformance.sh: one of them at a time (another run would stop it under us).
exec 9>/run/podvisor-ci-containerd.lock
flock -w 1800 9 || { echo "FAIL: another proxy test held /run/podvisor-ci-containerd.lock for 30 minutes" >&2; exit 1; }
work=$(mktemp -d /tmp/podvisor-proxy.XXXXXX)
started_containerd=""

cleanup() {
	set +e
	if [ -n "$started_containerd" ]; then CRICTL=$crictl "$root/ci/containerd.sh" stop; fi
	if [ "${KEEP:-}" = "" ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

echo "--- building test images and starting containerd"
"$root/ci/images/build.sh" "$work/images" >/dev/null
# shellcheck disable=SC1091
. "$work/images/images.env"
[ -f /run/podvisor-ci-containerd/containerd.pid ] && kill -0 "$(cat /run/podvisor-ci-containerd/containerd.pid)" 2>/dev/null || started_containerd=1
PAUSE_IMAGE=$PAUSE_IMAGE IMAGES_DIR=$work/images "$root/ci/containerd.sh" start

echo "--- internal/processtests TestProxy*"
cd "$root"
PODVISOR_PROXY_TESTS=1 PODVISOR_CONTAINERD_SOCK=$containerd_sock BUSYBOX_IMAGE=$BUSYBOX_IMAGE CRICTL=$crictl \
	go test -race -count=1 -timeout 15m -run '^TestProxy' ./internal/processtests/ 9>&-
