#!/usr/bin/env bash
# Runs the image benchmarks (pull vs curl+sha256sum in the same run, root
# overlay creation for a small and a huge sparse image) and writes
# docs/bench/images.md. Needs: go, curl, coreutils, qemu-img (qemu-utils).
# Usage: ci/bench-images.sh [output.md]   (env: PODVISOR_BENCH_PULL_MIB, COUNT)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/bench/images.md}
mib=${PODVISOR_BENCH_PULL_MIB:-256}
count=${COUNT:-5}
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT

PODVISOR_BENCH_PULL_MIB=$mib go test -run '^$' -bench 'BenchmarkPull|BenchmarkCreateOverlay' \
	-benchtime=5x -count="$count" ./runtime/image/ | tee "$raw"

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
small=$(get BenchmarkCreateOverlay/20MiB)
big=$(get BenchmarkCreateOverlay/10GiB-sparse)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ms() { awk -v a="$1" 'BEGIN { printf "%.1f ms", a / 1e6 }'; }

{
	echo "# Image benchmarks"
	echo
	echo "Written by \`ci/bench-images.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(uname -m), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))."
	echo "Medians of $count runs of 5 iterations each. The machine is shared, so absolute"
	echo "times are noisy; each comparison below is between runs of the same invocation."
	echo
	echo "| what | median | target | result |"
	echo "|---|---|---|---|"
	echo "| pull of a ${mib} MiB image from the local image server (download, SHA-256, rename, link) | $(ms "$store") | | |"
	echo "| \`curl -o\` + \`sha256sum\` of the same file | $(ms "$curl") | | |"
	echo "| pull / (curl + sha256sum) | $(ratio "$store" "$curl")× | ≤ 1.1× | $(awk -v r="$(ratio "$store" "$curl")" 'BEGIN { print (r <= 1.1) ? "met" : "missed" }') |"
	echo "| root overlay over a 20 MiB raw image | $(ms "$small") | | |"
	echo "| root overlay over a 10 GiB sparse raw image | $(ms "$big") | | |"
	echo "| 10 GiB / 20 MiB overlay time | $(ratio "$big" "$small")× | ≤ 1.2× | $(awk -v r="$(ratio "$big" "$small")" 'BEGIN { print (r <= 1.2) ? "met" : "missed" }') |"
	echo
	echo "The pull hashes while it streams, so it needs one pass over the data where"
	echo "curl + sha256sum need two. An overlay records the base image by path and"
	echo "never reads its data (\`qemu-img create -u\` after podvisor read the header"
	echo "itself), so its cost does not depend on the image size."
	echo
	echo "## Raw output"
	echo
	echo '```'
	cat "$raw"
	echo '```'
} >"$out"
echo "wrote $out"
