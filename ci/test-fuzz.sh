#!/usr/bin/env bash
# Runs every Go fuzz target of the module (every `func FuzzX(f *testing.F)`
# in a _test.go file) with the fuzzing engine for FUZZTIME each, FUZZ_JOBS
# targets at a time with one worker each. `make test` runs it with 10s,
# `make fuzz` with 60s. An input that fails is written by go test under the
# package's testdata/fuzz/FuzzX/ (commit it to keep it as a regression
# seed); this script prints the failing targets' output and exits 1.
#
# Usage: FUZZTIME=10s FUZZ_JOBS=2 ci/test-fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
# Go 1.26's fuzzing coordinator can fail a target with a bare "context
# deadline exceeded" at the -fuzztime boundary when a worker is starved
# (go.dev/issue/75804; CI hit it on FuzzParseName, no input written). The
# fix ships in Go 1.27, which the go command fetches from the module proxy
# as an ordinary module; the rest of the build stays on go.mod's Go.
export GOTOOLCHAIN=${FUZZ_GOTOOLCHAIN:-go1.27.3}
fuzztime=${FUZZTIME:-10s}
jobs=${FUZZ_JOBS:-2}

# "dir name" per target, found in the tracked test files.
mapfile -t targets < <(git ls-files '*_test.go' |
	xargs grep -H -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' |
	sed -E 's|^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\(.*$|\1 \2|' | sort)
[ "${#targets[@]}" -gt 0 ] || { echo "test-fuzz: no fuzz targets found" >&2; exit 1; }

logs=$(mktemp -d /tmp/podvisor-fuzz.XXXXXX)
trap 'rm -rf "$logs"' EXIT

fuzz_one() { # dir name
	local id="${1//\//_}.$2" log
	log="$logs/$id.log"
	if go test -run '^$' -fuzz "^$2\$" -fuzztime "$fuzztime" -parallel 1 "./$1" >"$log" 2>&1; then
		echo "ok   $1 $2 ($(grep -Eo 'execs: [0-9]+' "$log" | tail -1 || true))"
	else
		echo "FAIL $1 $2"
		touch "$logs/$id.failed"
	fi
}

echo "test-fuzz: ${#targets[@]} targets, $fuzztime each, $jobs at a time"
running=0
for t in "${targets[@]}"; do
	# shellcheck disable=SC2086 # "dir name" splits into two arguments
	fuzz_one $t &
	running=$((running + 1))
	if [ "$running" -ge "$jobs" ]; then
		wait -n || true
		running=$((running - 1))
	fi
done
wait

failed=0
for f in "$logs"/*.failed; do
	[ -e "$f" ] || continue
	failed=1
	name=$(basename "$f" .failed)
	echo "--- $name" >&2
	tail -n 40 "$logs/$name.log" >&2
done
exit "$failed"
