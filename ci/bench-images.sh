#!/usr/bin/env bash
# Runs the image benchmarks (pull vs curl+sha256sum in the same run, root
# overlay creation for a small and a huge sparse image) and writes
# docs/bench/images.md. Needs: go, curl, coreutils, qemu-img (qemu-utils).
# Usage: ci/bench-images.sh [output.md]   (env: PODVISOR_BENCH_PULL_MIB, COUNT)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/bench/images.md}
mib=${PODVISOR_BENCH_PULL_MIB:-256}
count=${COUNT:-7}
raw=$(mktemp)
bin=$(mktemp)
trap 'rm -f "$raw" "$bin"' EXIT

oci=1
for tool in docker-registry skopeo; do command -v "$tool" >/dev/null || oci=0; done

# One test binary, and the compared cases interleaved round by round, so
# that load from other work on the machine hits both sides alike.
go test -c -o "$bin" ./runtime/image/
for round in $(seq "$count"); do
	echo "# round $round" >>"$raw"
	for b in 'BenchmarkPull$/^store$' 'BenchmarkPull$/^curl\+sha256sum$' 'BenchmarkPull$/^curl$'; do
		PODVISOR_BENCH_PULL_MIB=$mib "$bin" -test.run '^$' -test.bench "^$b" -test.benchtime=3x | grep '^Benchmark' | tee -a "$raw"
	done
	# P4 of issue 20: a containerDisk from docker-registry on loopback vs
	# skopeo copy of it to a directory (each run pushes its own image).
	if [ "$oci" = 1 ]; then
		for b in 'BenchmarkOCIPull$/^store$' 'BenchmarkOCIPull$/^skopeo-dir$'; do
			PODVISOR_REGISTRY_TESTS=1 PODVISOR_BENCH_PULL_MIB=$mib "$bin" -test.run '^$' -test.bench "^$b" -test.benchtime=3x | grep '^Benchmark' | tee -a "$raw"
		done
	fi
	for b in 'BenchmarkCreateOverlay$/^20MiB$' 'BenchmarkCreateOverlay$/^10GiB-sparse$'; do
		"$bin" -test.run '^$' -test.bench "^$b" -test.benchtime=30x | grep '^Benchmark' | tee -a "$raw"
	done
done

# median ns/op per benchmark name
summary=$(awk '
	/^Benchmark/ { name=$1; sub(/-[0-9]+$/, "", name); v[name]=v[name] " " $3 }
	END {
		for (n in v) {
			k = split(substr(v[n], 2), a, " ")
			# insertion sort, k is small
			for (i = 2; i <= k; i++) { x = a[i]; j = i - 1; while (j > 0 && a[j] > x) { a[j+1] = a[j]; j-- } a[j+1] = x }
			med = (k % 2) ? a[(k+1)/2] : (a[k/2] + a[k/2+1]) / 2
			printf "%s %d\n", n, med
		}
	}' "$raw" | sort)
get() { awk -v n="$1" '$1 == n { print $2 }' <<<"$summary"; }
store=$(get BenchmarkPull/store)
curl=$(get BenchmarkPull/curl+sha256sum)
curlonly=$(get BenchmarkPull/curl)
ocistore=$(get BenchmarkOCIPull/store)
skopeo=$(get BenchmarkOCIPull/skopeo-dir)
small=$(get BenchmarkCreateOverlay/20MiB)
big=$(get BenchmarkCreateOverlay/10GiB-sparse)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ms() { awk -v a="$1" 'BEGIN { printf "%.1f ms", a / 1e6 }'; }

{
	echo "# Image benchmarks"
	echo
	echo "Written by \`ci/bench-images.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(uname -m), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))."
	echo "Medians of $count rounds; each round runs the pull cases 3 times and the overlay"
	echo "cases 30 times, the compared cases back to back. The machine (2 cores) is shared"
	echo "with other builds, so absolute times are noisy; compare within this file."
	echo
	echo "| what | median | target | result |"
	echo "|---|---|---|---|"
	echo "| pull of a ${mib} MiB image from the local image server (download, SHA-256, fsync, rename, link) | $(ms "$store") | | |"
	echo "| \`curl -o\` + \`sha256sum\` of the same file | $(ms "$curl") | | |"
	echo "| \`curl -o\` alone (no verification), for scale | $(ms "$curlonly") | | |"
	echo "| pull / (curl + sha256sum) | $(ratio "$store" "$curl")× | ≤ 1.1× | $(awk -v r="$(ratio "$store" "$curl")" 'BEGIN { print (r <= 1.1) ? "met" : "missed" }') |"
	if [ "$oci" = 1 ]; then
		echo "| P4: pull of a ${mib} MiB containerDisk (gzip layer) from docker-registry on loopback: layer into the store, disk extracted, validated | $(ms "$ocistore") | | |"
		echo "| \`skopeo copy docker://… dir:…\` of the same image | $(ms "$skopeo") | | |"
		echo "| P4: containerDisk pull / skopeo copy | $(ratio "$ocistore" "$skopeo")× | ≤ 1.1× | $(awk -v r="$(ratio "$ocistore" "$skopeo")" 'BEGIN { print (r <= 1.1) ? "met" : "missed" }') |"
	else
		echo "| P4: containerDisk pull vs skopeo copy | not run: docker-registry or skopeo missing (ci/deps-image.txt) | ≤ 1.1× | |"
	fi
	echo "| root overlay over a 20 MiB raw image | $(ms "$small") | | |"
	echo "| root overlay over a 10 GiB sparse raw image | $(ms "$big") | | |"
	echo "| 10 GiB / 20 MiB overlay time | $(ratio "$big" "$small")× | ≤ 1.2× | $(awk -v r="$(ratio "$big" "$small")" 'BEGIN { print (r <= 1.2) ? "met" : "missed" }') |"
	echo
	echo "The pull hashes while it streams, so it needs one pass over the data where"
	echo "curl + sha256sum need two; Go's SHA-256 also uses the CPU's SHA extensions,"
	echo "which Debian's sha256sum does not (0.13 s vs 0.5 s for 256 MiB here), hence most of the gap. An overlay records the base image by path and"
	echo "never reads its data (\`qemu-img create -u\` after podvisor read the header"
	echo "itself), so its cost does not depend on the image size."
	echo
	echo "P4 (issue 20): the containerDisk pull does more than skopeo by design. It writes"
	echo "the layer blob (hashed against its digest, fsynced, so that a pull cut short"
	echo "resumes where it stopped), then reads it back through gunzip and tar and"
	echo "writes the disk file a second time, hashed again (the store is addressed by the"
	echo "disk's digest, shared by every name), fsynced, then checked by qemu-img in a"
	echo "limited process. skopeo writes each blob once. A profile of the pull"
	echo "(2026-12-04, 256 MiB): of 0.88 s CPU per pull, 0.46 s are the two writes and"
	echo "0.30 s the two SHA-256 passes. Streaming the layer straight into gunzip would"
	echo "save one write and one read but lose resume (a gzip stream cannot restart in"
	echo "the middle): we keep resume."
	echo
	echo "## Raw output"
	echo
	echo '```'
	cat "$raw"
	echo '```'
} >"$out"
echo "wrote $out"
