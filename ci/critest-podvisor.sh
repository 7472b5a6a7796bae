#!/usr/bin/env bash
# critest v1.37 against podvisor on real libvirt + QEMU: every container is a
# VM (the test guest of ci/build-guest.sh, with its guest agent for exec).
#
#   ci/critest-podvisor.sh [OUTDIR]      (root; after make build tools)
#
# As ci/real-pod.sh does, podvisor runs in a private "node" network
# namespace with a bridge + portmap CNI network and an HTTP server serving
# the test guest; critest runs in that namespace too, so pod IPs and host
# ports are reachable. The images critest uses are the test guest:
# conformance/test-images.yaml names them, conformance/translations.yaml
# maps them (and critest's hard-coded image names) to the guest's URL.
# conformance/skip-podvisor.txt lists skipped specs with a reason each.
#
# Writes OUTDIR (default _build/critest-podvisor): critest.log, junit.xml,
# results (one "<state> <spec>" a line), summary.md, podvisor.log and
# report.md (conformance/report.py: every spec, its result, and the reason
# of each non-pass from conformance/{skip,failures}-podvisor.txt).
# Env: CRITEST (default _build/tools/critest; built if missing),
#      CRITEST_FOCUS (a ginkgo focus regexp), PODVISOR_GUEST_DIR,
#      PODVISOR (the binary; default bin/podvisor).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/_build/critest-podvisor}
critest=${CRITEST:-$root/_build/tools/critest}
podvisor=${PODVISOR:-$root/bin/podvisor}
guest_dir=${PODVISOR_GUEST_DIR:-/var/tmp/podvisor-test-guest}
export PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=local

missing=()
[ "$(id -u)" = 0 ] || missing+=("root")
for tool in qemu-system-x86_64 qemu-img virsh libvirtd genisoimage nsenter ip busybox; do
	command -v "$tool" >/dev/null || missing+=("$tool (ci/install-deps.sh)")
done
[ -x "$podvisor" ] && [ -x "$root/bin/podvisor-vmwrapper" ] || missing+=("$podvisor, bin/podvisor-vmwrapper (make build)")
[ -d /usr/lib/cni ] || [ -d /opt/cni/bin ] || missing+=("CNI plugins (containernetworking-plugins)")
if [ "${#missing[@]}" -gt 0 ]; then
	printf 'critest-podvisor: missing: %s\n' "${missing[@]}" >&2
	if [ "${PODVISOR_ALLOW_SKIP:-}" = 1 ]; then echo "SKIP"; exit 0; fi
	exit 1
fi

if [ ! -x "$critest" ]; then
	echo "--- building critest v1.37.0 (about 75 s)"
	mod=$root/_build/critest-mod
	mkdir -p "$mod" "$(dirname "$critest")"
	[ -f "$mod/go.mod" ] || printf 'module critestbuild\n\ngo 1.26.8\n' >"$mod/go.mod"
	(cd "$mod" && go get sigs.k8s.io/cri-tools@v1.37.0 &&
		GOFLAGS=-mod=mod go test -c -o "$critest" sigs.k8s.io/cri-tools/cmd/critest)
fi

mkdir -p "$out"
work=$(mktemp -d /tmp/pvcritest.XXXXXX)
node_ns=pvcrit-$$
sock=$work/podvisor.sock
pid="" httpd_pid=""
subnet=10.78.$((RANDOM % 200 + 20)).0/24
in_node() { nsenter --net="/run/netns/$node_ns" "$@"; }

cleanup() {
	set +e
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && { kill "$pid"; wait "$pid" 2>/dev/null; }
	[ -n "$httpd_pid" ] && kill "$httpd_pid" 2>/dev/null
	cp "$work/podvisor.log" "$out/podvisor.log" 2>/dev/null
	# Domains critest left (a spec that failed before its cleanup).
	for d in $(virsh -q -c qemu:///system list --all --name 2>/dev/null | grep '^pv-'); do
		grep -q "$d" "$work/podvisor.log" 2>/dev/null || continue
		virsh -q -c qemu:///system destroy "$d" >/dev/null 2>&1
		virsh -q -c qemu:///system undefine "$d" --nvram >/dev/null 2>&1 || virsh -q -c qemu:///system undefine "$d" >/dev/null 2>&1
	done
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^podvisor-'); do
		grep -q "netns=/run/netns/$ns" "$work/podvisor.log" 2>/dev/null && ip netns del "$ns" 2>/dev/null
	done
	ip netns del "$node_ns" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

echo "--- libvirtd and the test guest"
"$root/ci/libvirtd.sh" start
"$root/ci/build-guest.sh" "$guest_dir"

echo "--- node namespace, CNI network $subnet (bridge, host-local, portmap), image server"
ip netns add "$node_ns"
in_node ip link set lo up
# Host ports are reached on 127.0.0.1 (critest's checkMainPage).
in_node sysctl -qw net.ipv4.conf.all.route_localnet=1
mkdir -p "$work/cni" "$work/translations"
cat >"$work/cni/10-critest.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "podvisor-critest", "plugins": [
  {"type": "bridge", "bridge": "pvcrit0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$work/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}]}
JSON
mkdir -p "$work/www"
cp "$guest_dir/podvisor-test-guest.qcow2" "$work/www/guest.qcow2"
for v in 1 2 3; do
	# Data past the end of a qcow2 image is ignored by QEMU.
	{ cat "$work/www/guest.qcow2"; printf 'podvisor critest variant %s\n' "$v"; } >"$work/www/variant-$v.qcow2"
done
# nsenter itself, not the in_node function, in the background: $! is then
# the daemon's PID (nsenter execs it), not a subshell's, so cleanup's kill
# reaches it.
nsenter --net="/run/netns/$node_ns" busybox httpd -f -p 127.0.0.1:8099 -h "$work/www" &
httpd_pid=$!
sed "s|@BASE@|http://127.0.0.1:8099|" "$root/conformance/translations.yaml" >"$work/translations/critest.yaml"

echo "--- podvisor on libvirt"
nsenter --net="/run/netns/$node_ns" "$podvisor" --hypervisor libvirt --network cni --cni-conf-dir "$work/cni" \
	--listen "unix://$sock" --state-dir "$work/state" --image-translations-dir "$work/translations" \
	--image-download-allow-networks 127.0.0.1/32 \
	>"$work/podvisor.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
	[ -S "$sock" ] && break
	kill -0 "$pid" 2>/dev/null || { cat "$work/podvisor.log" >&2; echo "FAIL: podvisor exited" >&2; exit 1; }
	sleep 0.1
done

# conformance/skip-podvisor.txt: "<spec text> | <reason>"; the spec texts
# become one ginkgo skip regexp (matched literally).
skip=$(grep -v -e '^#' -e '^[[:space:]]*$' "$root/conformance/skip-podvisor.txt" | sed 's/ *|.*//' |
	sed 's/[][\\.*^$()+?{}|]/\\&/g' | paste -sd'|' -)
args=(-runtime-endpoint "unix://$sock" -image-endpoint "unix://$sock"
	-test-images-file "$root/conformance/test-images.yaml"
	--ginkgo.timeout 4h --ginkgo.no-color --ginkgo.junit-report "$out/junit.xml")
[ -n "$skip" ] && args+=(--ginkgo.skip "$skip")
[ -n "${CRITEST_FOCUS:-}" ] && args+=(--ginkgo.focus "$CRITEST_FOCUS")

echo "--- critest (TCG: every container boots a VM; this takes a while)"
t0=$(date +%s)
rc=0
(cd "$work" && in_node "$critest" "${args[@]}" >"$out/critest.log" 2>&1) || rc=$?
echo "critest exited $rc after $(($(date +%s) - t0)) s"
[ -s "$out/junit.xml" ] || { tail -n 40 "$out/critest.log" >&2; echo "FAIL: critest wrote no report" >&2; exit 1; }

tr '\n' ' ' <"$out/junit.xml" | grep -o '<testcase [^>]*>' |
	sed -n 's/^<testcase name="\([^"]*\)".* status="\([^"]*\)".*/\2 \1/p' |
	sed 's/&#34;/"/g; s/&#39;/'"'"'/g; s/&amp;/\&/g; s/&lt;/</g; s/&gt;/>/g' |
	grep -v -e '^[a-z]* \[SynchronizedBeforeSuite\]' -e '^[a-z]* \[BeforeSuite\]' -e '^[a-z]* \[AfterSuite\]' -e '^[a-z]* \[SynchronizedAfterSuite\]' |
	sort -k2 >"$out/results"
awk '{n[$1]++} END {printf "| passed | failed | skipped |\n|---|---|---|\n| %d | %d | %d |\n", n["passed"], n["failed"]+n["panicked"]+n["timedout"]+n["interrupted"], n["skipped"]+n["pending"]}' "$out/results" >"$out/summary.md"
cat "$out/summary.md"
# Every spec with its result and the reason of each non-pass.
if command -v python3 >/dev/null; then
	python3 "$root/conformance/report.py" "$out/junit.xml" >"$out/report.md"
	echo "per-spec report: $out/report.md"
fi
left=$(grep -c '' <(virsh -q -c qemu:///system list --all --name | grep '^pv-' | while read -r d; do grep -q "$d" "$work/podvisor.log" && echo "$d"; done) || true)
echo "domains left by the run: $left"
echo "results: $out/results"
