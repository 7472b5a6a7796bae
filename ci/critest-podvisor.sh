#!/usr/bin/env bash
# critest v1.37 against podvisor on real libvirt + QEMU: every container is a
# VM (the test guest of ci/build-guest.sh, with its guest agent for exec).
#
#   ci/critest-podvisor.sh [OUTDIR]      (root; after make build tools)
#
# As ci/real-pod.sh does, podvisor runs in a private "node" network
# namespace with a bridge + portmap CNI network and a local registry
# (Debian's docker-registry on 127.0.0.1:5000 there); critest runs in that
# namespace too, so pod IPs and host ports are reachable. Every image
# critest uses is a KubeVirt containerDisk of the test guest pushed with
# skopeo: conformance/test-images.yaml names two in the registry, and
# critest's hard-coded names (gcr.io/..., registry.k8s.io/..., k8s.gcr.io/...)
# reach it through podvisor's registry mirrors.
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
for tool in qemu-system-x86_64 qemu-img virsh libvirtd genisoimage nsenter ip docker-registry skopeo curl; do
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
pid="" registry_pid=""
registry=127.0.0.1:5000
subnet=10.78.$((RANDOM % 200 + 20)).0/24
in_node() { nsenter --net="/run/netns/$node_ns" "$@"; }

cleanup() {
	set +e
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && { kill "$pid"; wait "$pid" 2>/dev/null; }
	[ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null
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

echo "--- node namespace, CNI network $subnet (bridge, host-local, portmap)"
ip netns add "$node_ns"
in_node ip link set lo up
# Host ports are reached on 127.0.0.1 (critest's checkMainPage).
in_node sysctl -qw net.ipv4.conf.all.route_localnet=1
mkdir -p "$work/cni"
cat >"$work/cni/10-critest.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "podvisor-critest", "plugins": [
  {"type": "bridge", "bridge": "pvcrit0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$work/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}]}
JSON
echo "--- local registry $registry in the node namespace, containerDisks pushed with skopeo"
# shellcheck source=ci/registry.inc
. "$root/ci/registry.inc"
registry_config "$work/registry.yml" "$work/registry" "$registry"
# nsenter itself, not the in_node function, in the background: $! is then
# the daemon's PID (nsenter execs it), not a subshell's, so cleanup's kill
# reaches it.
nsenter --net="/run/netns/$node_ns" docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 100); do
	in_node curl -fsS "http://$registry/v2/" >/dev/null 2>&1 && break
	kill -0 "$registry_pid" 2>/dev/null || { cat "$work/registry.log" >&2; echo "FAIL: docker-registry did not start" >&2; exit 1; }
	sleep 0.1
done
(cd "$root" && go build -o "$work/mkimage" ./ci/images/mkimage)
# containerDisk [-user USER] NAME...: a KubeVirt containerDisk (one layer,
# the test guest at /disk/) pushed under every NAME (repository:tag on
# $registry), its config's User set to USER when given.
# Each call's disk carries its own trailing marker (QEMU ignores data past
# the end of a qcow2 image), so each call is a different image: one content
# pulled under several names is one image listing all of them, and critest
# expects its images to be distinct unless it pulls several tags of one.
containerDisk() {
	local user=()
	if [ "$1" = -user ]; then
		user=(-user "$2")
		shift 2
	fi
	local dir=$work/cd-${1//[\/:]/-}
	mkdir -p "$dir/disk"
	{ cat "$guest_dir/podvisor-test-guest.qcow2"; printf 'podvisor critest containerDisk %s\n' "$1"; } >"$dir/disk/disk.qcow2"
	"$work/mkimage" -o "$dir.tar" -tag "$registry/$1" "${user[@]}" "$dir"
	for n in "$@"; do
		in_node skopeo copy --quiet --dest-tls-verify=false "docker-archive:$dir.tar" "docker://$registry/$n"
	done
}
# The names critest hard-codes: gcr.io/k8s-staging-cri-tools/..., and
# registry.k8s.io/... and k8s.gcr.io/... reach this registry through
# podvisor's mirrors (below), under their own repository paths.
cri=k8s-staging-cri-tools
for n in podvisor/critest-busybox:latest podvisor/critest-web:latest \
	"$cri/test-image-latest:latest" "$cri/test-image-tag:test" "$cri/test-image-tag:all" \
	"$cri/test-image-1:latest" "$cri/test-image-2:latest" "$cri/test-image-3:latest" \
	"$cri/test-image-predefined-group:latest" "$cri/hostnet-nginx-amd64:latest" \
	e2e-test-images/httpd:2.4.39-4 e2e-test-images/nginx:1.14-2 \
	e2e-test-images/busybox:1.29-2 e2e-test-images/nonewprivs:1.3; do
	containerDisk "$n"
done
# critest reads these images' users back from ImageStatus ("image status
# get image fields should not have Uid|Username empty"): the USER each is
# built with in cri-tools' images/build.
containerDisk -user 1002 "$cri/test-image-user-uid:latest"
containerDisk -user www-data "$cri/test-image-user-username:latest"
containerDisk -user 1003:1004 "$cri/test-image-user-uid-group:latest"
containerDisk -user www-data:1004 "$cri/test-image-user-username-group:latest"
# One image under several names: three tags; two registries (pause).
containerDisk "$cri/test-image-tags:1" "$cri/test-image-tags:2" "$cri/test-image-tags:3"
containerDisk pause:3.9
cat >"$work/podvisor.json" <<JSON
{"imageInsecureRegistries": ["$registry"],
 "imageRegistryMirrors": {"gcr.io": ["$registry"], "registry.k8s.io": ["$registry"], "k8s.gcr.io": ["$registry"]}}
JSON
sed "s|@REGISTRY@|$registry|" "$root/conformance/test-images.yaml" >"$work/test-images.yaml"

echo "--- podvisor on libvirt"
nsenter --net="/run/netns/$node_ns" "$podvisor" --hypervisor libvirt --network cni --cni-conf-dir "$work/cni" \
	--listen "unix://$sock" --state-dir "$work/state" \
	--image-download-allow-networks 127.0.0.1/32 --config "$work/podvisor.json" \
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
	-test-images-file "$work/test-images.yaml"
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
