#!/usr/bin/env bash
# Validate golden domain XML files with libvirt's own schema
# (virt-xml-validate, Debian package libvirt-clients) and its parser
# (virsh on the test:///default driver, when virsh is installed).
# Usage: ci/validate-domain-xml.sh [FILE...]
# Default: every runtime/domain/testdata/*.xml. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v virt-xml-validate >/dev/null 2>&1; then
	echo "validate-domain-xml: virt-xml-validate not found; install the Debian package libvirt-clients (see ci/deps-domain.txt)" >&2
	exit 2
fi

if [ "$#" -eq 0 ]; then
	shopt -s nullglob
	set -- runtime/domain/testdata/*.xml
	shopt -u nullglob
fi
if [ "$#" -eq 0 ]; then
	echo "validate-domain-xml: no domain XML files to validate" >&2
	exit 1
fi

have_virsh=0
command -v virsh >/dev/null 2>&1 && have_virsh=1

ok=0
failed=0
for f in "$@"; do
	if ! out=$(virt-xml-validate "$f" domain 2>&1); then
		echo "FAIL (schema) $f:" >&2
		echo "$out" >&2
		failed=$((failed + 1))
		continue
	fi
	# The test driver runs libvirt's real domain parser on a fresh,
	# in-memory connection: it catches what the schema cannot.
	if [ "$have_virsh" = 1 ] && ! out=$(virsh -q -c test:///default define "$f" 2>&1); then
		echo "FAIL (libvirt parser) $f:" >&2
		echo "$out" >&2
		failed=$((failed + 1))
		continue
	fi
	ok=$((ok + 1))
done

echo "validate-domain-xml: $ok valid, $failed invalid (of $#)"
[ "$failed" -eq 0 ]
