#!/usr/bin/env bash
# Validate golden domain XML files with libvirt's own schema
# (virt-xml-validate, Debian package libvirt-clients) and its parser
# (virsh on the test:///default driver, when virsh is installed).
#
# Usage: ci/validate-domain-xml.sh [--native] [FILE...]
#   Default FILEs: every runtime/domain/testdata/*.xml.
#   --native  also run each file through a running libvirtd's QEMU driver
#             (virsh -c qemu:///system domxml-to-native qemu-argv): QEMU's own
#             checks, address assignment and command-line building, without
#             defining anything. Needs ci/libvirtd.sh start; the result
#             depends on the host's CPU (a custom CPU may need features it
#             lacks). Files whose <emulator> is not installed are skipped.
# Exits non-zero on any failure and prints a count.
set -euo pipefail
cd "$(dirname "$0")/.."

native=0
if [ "${1:-}" = "--native" ]; then
	native=1
	shift
fi

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
if [ "$native" = 1 ]; then
	if [ "$have_virsh" = 0 ] || ! virsh -q -c qemu:///system version >/dev/null 2>&1; then
		echo "validate-domain-xml: --native needs virsh and a running libvirtd (ci/libvirtd.sh start)" >&2
		exit 2
	fi
fi

ok=0
failed=0
skipped=0
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
	if [ "$native" = 1 ]; then
		emulator=$(sed -n 's:.*<emulator>\(.*\)</emulator>.*:\1:p' "$f")
		if [ -n "$emulator" ] && [ ! -x "$emulator" ]; then
			echo "skip (native) $f: emulator $emulator not installed" >&2
			skipped=$((skipped + 1))
		elif ! out=$(virsh -q -c qemu:///system domxml-to-native qemu-argv "$f" 2>&1); then
			echo "FAIL (libvirt QEMU driver) $f:" >&2
			echo "$out" >&2
			failed=$((failed + 1))
			continue
		fi
	fi
	ok=$((ok + 1))
done

summary="validate-domain-xml: $ok valid, $failed invalid (of $#)"
[ "$native" = 1 ] && summary="$summary, $skipped not run through QEMU"
echo "$summary"
[ "$failed" -eq 0 ]
