#!/usr/bin/env bash
# make cloud-image-it: a real Debian 12 cloud image (ci/build-cloud-image.sh)
# booted through podvisor's CRI on libvirt with CNI, and with the NoCloud
# v1, v2 and ConfigDrive golden drives of runtime/cloudinit in plain QEMU:
# internal/processtests TestCloudImage (docs/images.md says what it checks).
# Root; after `make build tools`. Starts libvirtd when it is not running and
# stops it again (KEEP_LIBVIRTD=1 leaves it).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export PATH=/usr/local/go/bin:$PATH
image_dir=${PODVISOR_CLOUDIMAGE_DIR:-/var/tmp/podvisor-cloud-image}
crictl=${CRICTL:-$root/_build/tools/crictl}
[ "$(id -u)" = 0 ] || { echo "cloud-image: run as root (network namespaces, libvirt's system instance, a loop mount)" >&2; exit 1; }
[ -x "$root/bin/podvisor" ] || { echo "cloud-image: bin/podvisor missing (make build)" >&2; exit 1; }

started_libvirtd=0
cleanup() {
	if [ "$started_libvirtd" = 1 ] && [ "${KEEP_LIBVIRTD:-}" = "" ]; then "$root/ci/libvirtd.sh" stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

t0=$SECONDS
"$root/ci/build-cloud-image.sh" "$image_dir"
echo "cloud-image: image ready in $((SECONDS - t0)) s"
if ! "$root/ci/libvirtd.sh" status 2>/dev/null | grep '^libvirtd: running' >/dev/null; then started_libvirtd=1; fi
"$root/ci/libvirtd.sh" start
cd "$root"
PODVISOR_CLOUDIMAGE_TESTS=1 PODVISOR_CLOUDIMAGE_DIR=$image_dir CRICTL=$crictl \
	go test -count=1 -timeout 30m -v -run '^TestCloudImage$' ./internal/processtests/
echo "cloud-image: done in $((SECONDS - t0)) s"
