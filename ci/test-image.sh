#!/bin/bash
# Checks the node image of `make image` the way a node uses it: imported
# into containerd (Debian's 1.6, ci/containerd.sh's private instance) with
# `ctr -n k8s.io images import`, then run with runc:
#   - the reference kubelet asks for resolves (the archive's name is the
#     normalised one, docker.io/... for a Docker Hub style name);
#   - podvisor (cgo, linked against the image's libvirt) starts and reports
#     the project's version; libvirtd, virsh, QEMU, qemu-img, nsenter and the
#     node scripts are where deploy/daemonset.yaml expects them;
#   - criproxy, which install-criproxy.sh copies onto the node, is static:
#     no ELF program interpreter, so it runs on any node's libc.
#
#   ci/test-image.sh ARCHIVE REF VERSION
#   ci/test-image.sh --docker REF VERSION   the same checks on an image in
#                                           Docker (the Dockerfile's build;
#                                           .github/workflows/ci.yml)
#
# Starts and stops containerd: run under flock /run/podvisor-heavy.lock.
set -euo pipefail

archive="$1" ref="$2" version="$3"
docker=0
[ "$archive" = --docker ] && docker=1
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sock=/run/podvisor-ci-containerd/containerd.sock
ns=k8s.io
out="$(mktemp -d)"
id="podvisor-image-test-$$"

fail() { echo "test-image: FAIL: $*" >&2; exit 1; }
cleanup() {
	ctr -a "$sock" -n "$ns" tasks kill -s KILL "$id" >/dev/null 2>&1 || true
	ctr -a "$sock" -n "$ns" containers rm "$id" >/dev/null 2>&1 || true
	# The image and the digest names containerd's CRI plugin added.
	local r
	for r in $(ctr -a "$sock" -n "$ns" images ls -q 2>/dev/null); do
		grep -qxF "$r" <<<"$before" || ctr -a "$sock" -n "$ns" images rm "$r" >/dev/null 2>&1 || true
	done
	"$here/containerd.sh" stop
	rm -rf "$out"
}

if [ "$docker" = 1 ]; then
	trap 'rm -rf "$out"' EXIT
	run() { docker run --rm -v "$out:/out" "$ref" "$@"; }
else
	before=""
	"$here/containerd.sh" start
	trap cleanup EXIT
	before="$(ctr -a "$sock" -n "$ns" images ls -q)"
	ctr -a "$sock" -n "$ns" images import "$archive" >/dev/null
	names="$(ctr -a "$sock" -n "$ns" images ls -q)"
	grep -qxF "$ref" <<<"$names" ||
		fail "$archive imported, but no image named $ref: $(tr '\n' ' ' <<<"$names")"
	echo "test-image: imported as $ref"
	run() { ctr -a "$sock" -n "$ns" run --rm --mount "type=bind,src=$out,dst=/out,options=rbind:rw" "$ref" "$id" "$@"; }
fi

# One container runs every check and copies criproxy out for the ELF check.
# shellcheck disable=SC2016 # expanded by the container's bash
script='set -e
test "$(/usr/local/bin/podvisor --version)" = "podvisor $1"
test "$(/usr/local/bin/criproxy --version)" = "criproxy $1"
/usr/local/bin/podvisor-vmwrapper --help >/dev/null 2>&1 || test $? -le 2
libvirtd --version; virsh --version; virtlogd --version
qemu-system-x86_64 --version | head -1; qemu-img --version | head -1
for f in nsenter mountpoint genisoimage xorriso ip iptables; do command -v "$f" >/dev/null; done
for f in /usr/local/bin/podvisor-vms-emulator /usr/local/share/podvisor/libvirt.sh \
         /usr/local/share/podvisor/vms.sh /usr/local/share/podvisor/prepare-node.sh \
         /usr/local/share/podvisor/install-criproxy.sh; do test -x "$f"; done
test -f /usr/lib/ipxe/qemu/efi-virtio.rom
cp /usr/local/bin/criproxy /out/criproxy'
run /bin/bash -c "$script" check "$version" ||
	fail "the checks inside $ref failed (output above)"

[ -s "$out/criproxy" ] || fail "criproxy not copied out of the image"
# The headers first, then grep: under pipefail, grep -q leaving early would
# kill readelf with SIGPIPE and fail the pipeline, passing a dynamic binary.
headers=$(readelf -lW "$out/criproxy") || fail "readelf of criproxy failed"
if grep -q 'program interpreter' <<<"$headers"; then
	fail "criproxy in $ref has an ELF interpreter (dynamically linked): build it with CGO_ENABLED=0"
fi
echo "test-image: ok: $ref runs podvisor $version; criproxy is static"
