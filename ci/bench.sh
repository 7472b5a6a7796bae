#!/usr/bin/env bash
# Runs the Go benchmarks and writes the results to docs/bench/go-bench.txt.
# Area scripts (ci/bench-*.sh) write their own docs/bench/*.md.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p docs/bench
{
	echo "# go test -bench, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
	go test -run '^$' -bench . -benchmem -count 1 ./... 2>&1 | grep -E '^(Benchmark|ok|FAIL|pkg:)'
} | tee docs/bench/go-bench.txt
for s in ci/bench-*.sh; do
	[ -x "$s" ] && "$s"
done
