#!/usr/bin/env bash
# Builds the proxy's test images as docker-archive tarballs, offline and
# without docker: static Go programs (pause, testapp) and Debian's static
# busybox, packed by ci/images/mkimage.
#
# Usage: ci/images/build.sh OUTDIR [NAME_PREFIX]
#   NAME_PREFIX defaults to 127.0.0.1:5055/podvisor-test (the local
#   registry ci/conformance.sh runs; the side-by-side test only imports).
# Writes OUTDIR/{pause,busybox,web}.tar and OUTDIR/images.env with the names.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: ci/images/build.sh OUTDIR [NAME_PREFIX]}
prefix=${2:-127.0.0.1:5055/podvisor-test}
export PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=local
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] && file "$busybox" 2>/dev/null | grep -q 'statically linked' || {
	# 'file' may be missing: fall back to checking ldd's verdict.
	ldd "$busybox" 2>&1 | grep -q 'not a dynamic executable' || { echo "build.sh: $busybox is not a static busybox (install busybox-static)" >&2; exit 1; }
}

mkdir -p "$out"
work=$(mktemp -d /tmp/podvisor-images.XXXXXX)
trap 'rm -rf "$work"' EXIT

(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$work/pause" ./ci/images/pause &&
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$work/testapp" ./ci/images/testapp &&
	go build -o "$work/mkimage" ./ci/images/mkimage)

# pause: the sandbox image containerd starts for every pod.
mkdir -p "$work/pause-root"
cp "$work/pause" "$work/pause-root/pause"
"$work/mkimage" -o "$out/pause.tar" -tag "$prefix/pause:1.0" -entrypoint /pause "$work/pause-root"

# busybox: a shell and the usual tools, for containers that exec and sleep.
bb="$work/busybox-root"
mkdir -p "$bb/bin" "$bb/etc" "$bb/tmp" "$bb/root" "$bb/var" "$bb/usr/bin" "$bb/usr/sbin" "$bb/sbin"
chmod 1777 "$bb/tmp"
cp "$busybox" "$bb/bin/busybox"
for applet in $("$busybox" --list); do
	[ -e "$bb/bin/$applet" ] || ln -s busybox "$bb/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$bb/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$bb/etc/group"
"$work/mkimage" -o "$out/busybox.tar" -tag "$prefix/busybox:1.0" -cmd sh "$bb"

# web: busybox plus the testapp HTTP server on port 80 as entrypoint.
cp -a "$bb" "$work/web-root"
cp "$work/testapp" "$work/web-root/testapp"
"$work/mkimage" -o "$out/web.tar" -tag "$prefix/web:1.0" -entrypoint /testapp "$work/web-root"

cat >"$out/images.env" <<ENV
PAUSE_IMAGE=$prefix/pause:1.0
BUSYBOX_IMAGE=$prefix/busybox:1.0
WEB_IMAGE=$prefix/web:1.0
ENV
echo "images in $out: $(cd "$out" && ls *.tar | tr '\n' ' ')"
