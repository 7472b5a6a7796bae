#!/bin/bash
# make image: podvisor's node image, built offline from Debian packages and
# this repository's binaries, no registry image involved (docs/install.md).
#
#   1. a Debian root of deploy/image/packages.txt (mmdebstrap), cached
#      outside the clone as a one-layer OCI layout keyed by the package list,
#      the suite and this script's root recipe;
#   2. the binaries and node scripts of deploy/image/files.txt as a second
#      layer (umoci raw add-layer);
#   3. the image config (umoci config), then an OCI archive (skopeo) whose
#      reference `ctr -n k8s.io images import` and kubelet both understand.
#
# deploy/image/Dockerfile builds the same image with Docker.
#
# Environment (defaults in brackets):
#   VERSION     image tag and the binaries' version [internal/version/VERSION]
#   IMAGE_NAME  image repository [docker.io/podvisor/podvisor]
#   OUT         the OCI archive [_build/image/podvisor-$VERSION.tar]
#   CACHE_DIR   where Debian roots are cached [/var/cache/podvisor-image]
#   REFRESH     1: rebuild the Debian root (security updates) [0]
#
# Prints the image reference on its last line of stdout. Root (mmdebstrap's
# root mode). Needs Debian 12 (bookworm): podvisor links against libvirt
# and glibc, which must be the image's own; elsewhere use the Dockerfile.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
suite=bookworm
version="${VERSION:-$(tr -d '[:space:]' <"$repo/internal/version/VERSION")}"
name="${IMAGE_NAME:-docker.io/podvisor/podvisor}"
out="${OUT:-$repo/_build/image/podvisor-$version.tar}"
cache="${CACHE_DIR:-/var/cache/podvisor-image}"
ref="$name:$version"
# Image configuration shared with the Dockerfile (debian:bookworm-slim's).
image_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
image_label=org.opencontainers.image.title=podvisor

log() { echo "build-image: $*" >&2; }
die() { log "$*"; exit 1; }

# entries FILE: FILE without comments and blank lines.
entries() { sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$1" | grep -v '^[[:space:]]*$'; }

preflight() {
	[ "$(id -u)" -eq 0 ] || die "must run as root (mmdebstrap builds the Debian root as root)"
	[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
		die "VERSION=$version: want MAJOR.MINOR.PATCH[-suffix], usable as an image tag"
	[[ "$name" =~ ^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$ ]] ||
		die "IMAGE_NAME=$name: want a full repository name such as docker.io/podvisor/podvisor or registry.example.com:5000/podvisor"
	local id="" codename=""
	# shellcheck disable=SC1091
	[ -r /etc/os-release ] && { . /etc/os-release; id="${ID:-}"; codename="${VERSION_CODENAME:-}"; }
	if [ "$id" != debian ] || [ "$codename" != "$suite" ]; then
		die "this machine is $id $codename: podvisor is linked against libvirt and glibc, which must be the image's (Debian $suite); build on Debian 12 or with deploy/image/Dockerfile"
	fi
	local t
	for t in mmdebstrap umoci skopeo go pkg-config; do
		command -v "$t" >/dev/null || die "$t not found: run ci/install-deps.sh (ci/deps-image.txt)"
	done
	pkg-config --exists libvirt || die "libvirt-dev missing: run ci/install-deps.sh"
}

# The root recipe: anything that changes the Debian root changes the key.
mmdebstrap_args=(
	--variant=minbase
	--skip=output/dev
	--dpkgopt='path-exclude=/usr/share/man/*'
	--dpkgopt='path-exclude=/usr/share/info/*'
	--dpkgopt='path-exclude=/usr/share/locale/*'
	--dpkgopt='path-exclude=/usr/share/doc/*'
	--dpkgopt='path-include=/usr/share/doc/*/copyright'
)

# host_sources: the machine's apt sources, so that its mirror settings apply.
host_sources() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -s "$f" ] && echo "$f"
	done
	return 0
}

# base_layout: prints the cached OCI layout of the Debian root, building it
# when the key has none.
base_layout() {
	local pkgs key dir
	pkgs="$(entries "$here/packages.txt" | sort -u | paste -sd, -)"
	key="$(printf '%s\n' "$suite" "$pkgs" "${mmdebstrap_args[@]}" | sha256sum | cut -c1-16)"
	dir="$cache/base-$key"
	if [ "${REFRESH:-0}" != 1 ] && [ -f "$dir/done" ]; then
		log "Debian root cached: $dir"
		echo "$dir"
		return 0
	fi
	mkdir -p "$cache"
	rm -rf "$dir" "$dir.tmp"
	mkdir -p "$dir.tmp"
	mapfile -t sources < <(host_sources)
	[ "${#sources[@]}" -gt 0 ] || die "no apt sources in /etc/apt: mmdebstrap needs a Debian mirror"
	log "building the Debian $suite root (${pkgs//,/ }); cached as $dir"
	SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(date +%s)}" \
		mmdebstrap "${mmdebstrap_args[@]}" --include="$pkgs" "$suite" "$dir.tmp/root.tar" "${sources[@]}" >&2
	umoci init --layout "$dir.tmp/oci" >&2
	umoci new --image "$dir.tmp/oci:base" >&2
	umoci raw add-layer --image "$dir.tmp/oci:base" \
		--history.created_by "mmdebstrap $suite: $pkgs" "$dir.tmp/root.tar" >&2
	rm -f "$dir.tmp/root.tar"
	printf '%s\n' "$pkgs" >"$dir.tmp/packages"
	touch "$dir.tmp/done"
	mv "$dir.tmp" "$dir"
	echo "$dir"
}

# stage_files DIR: the files of files.txt under DIR, Go binaries built.
stage_files() {
	local root="$1" src dest mode kind cgo
	local ldflags="-X github.com/podvisor/podvisor/internal/version.override=$version"
	while read -r src dest mode kind; do
		mkdir -p "$root$(dirname "$dest")"
		case "$src" in
		cmd/*)
			case "$kind" in
			cgo) cgo=1 ;;
			static) cgo=0 ;;
			*) die "files.txt: $src: want cgo or static, got '$kind'" ;;
			esac
			log "go build ./$src (CGO_ENABLED=$cgo)"
			(cd "$repo" && CGO_ENABLED=$cgo go build -trimpath -ldflags "$ldflags" -o "$root$dest" "./$src")
			;;
		*)
			[ -f "$repo/$src" ] || die "files.txt: $src does not exist"
			cp "$repo/$src" "$root$dest"
			;;
		esac
		chmod "$mode" "$root$dest"
	done < <(entries "$here/files.txt")
}

main() {
	preflight
	local base
	base="$(base_layout)"
	# global: the EXIT trap runs after main has returned.
	work="$(mktemp -d "${TMPDIR:-/tmp}/podvisor-image.XXXXXX")"
	trap 'rm -rf "$work"' EXIT
	# The cached blobs are content-addressed and never rewritten: link them.
	mkdir -p "$work/oci"
	cp "$base/oci/oci-layout" "$base/oci/index.json" "$work/oci/"
	cp -al "$base/oci/blobs" "$work/oci/blobs"

	local epoch="${SOURCE_DATE_EPOCH:-$(date +%s)}"
	stage_files "$work/files"
	tar -C "$work/files" --sort=name --owner=0 --group=0 --numeric-owner \
		--mtime="@$epoch" -cf "$work/files.tar" .
	umoci raw add-layer --image "$work/oci:base" --tag "$version" \
		--history.created_by "podvisor $version: deploy/image/files.txt" "$work/files.tar" >&2
	umoci config --image "$work/oci:$version" --tag "$version" \
		--no-history --os linux --architecture amd64 \
		--created "$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)" \
		--config.env "PATH=$image_path" --config.cmd /bin/bash \
		--config.label "$image_label" >&2
	umoci gc --layout "$work/oci" >&2

	mkdir -p "$(dirname "$out")"
	rm -f "$out"
	skopeo copy --quiet "oci:$work/oci:$version" "oci-archive:$out:$ref" >&2
	log "wrote $out ($(du -m "$out" | cut -f1) MiB): ctr -n k8s.io images import $out; skopeo copy oci-archive:$out docker://REGISTRY/podvisor:$version"
	echo "$ref"
}

main "$@"
