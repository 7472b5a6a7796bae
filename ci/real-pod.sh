#!/usr/bin/env bash
# A VM pod through podvisor's CRI on real libvirt + QEMU with a real CNI
# network: the main job of podvisor, used by `make demo` (verbose: shows the
# console) and `make test` (asserts).
#
# Everything network-facing stays inside namespaces this script creates:
# podvisor runs in a "node" network namespace of its own, so the CNI bridge
# and the pod's route live there, and the pod IP is reached from there.
#
# Usage: ci/real-pod.sh [demo|test]   (root; after make build tools)
set -euo pipefail

mode=${1:-test}
root=$(cd "$(dirname "$0")/.." && pwd)
crictl=${CRICTL:-$root/_build/tools/crictl}
guest_dir=${PODVISOR_GUEST_DIR:-/var/tmp/podvisor-test-guest}
work=$(mktemp -d /tmp/podvisor-real.XXXXXX)
node_ns=pvnode-$$
sock=$work/podvisor.sock
pid=""
started_libvirtd=0
subnet=10.77.$((RANDOM % 200 + 20)).0/24

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() {
	echo "FAIL: $*" >&2
	echo "--- podvisor log (last 60 lines)" >&2
	tail -n 60 "$work/podvisor.log" >&2 || true
	exit 1
}
in_node() { nsenter --net="/run/netns/$node_ns" "$@"; }
cri() { "$crictl" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --timeout 120s "$@" 2>>"$work/crictl.err"; }

cleanup() {
	set +e
	if [ -n "${ctr:-}" ]; then cri rm -f "$ctr" >/dev/null 2>&1; fi
	if [ -n "${pod:-}" ]; then cri stopp "$pod" >/dev/null 2>&1; cri rmp -f "$pod" >/dev/null 2>&1; fi
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; wait "$pid" 2>/dev/null; fi
	ip netns del "$node_ns" 2>/dev/null
	if [ "$started_libvirtd" = 1 ] && [ "${KEEP_LIBVIRTD:-}" = "" ]; then "$root/ci/libvirtd.sh" stop >/dev/null 2>&1; fi
	if [ "${KEEP:-}" = "" ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

say "libvirtd and the test guest"
if ! "$root/ci/libvirtd.sh" status 2>/dev/null | grep -q '^libvirtd: running'; then started_libvirtd=1; fi
"$root/ci/libvirtd.sh" start
"$root/ci/build-guest.sh" "$guest_dir"
image=$guest_dir/podvisor-test-guest.qcow2
[ -f "$image" ] || fail "no test guest at $image"

say "a node network namespace and a CNI bridge network ($subnet)"
ip netns add "$node_ns"
in_node ip link set lo up
mkdir -p "$work/cni" "$work/translations" "$work/logs"
cat >"$work/cni/10-podvisor-demo.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "podvisor-demo", "plugins": [
  {"type": "bridge", "bridge": "pvdemo0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$work/ipam"}}]}
JSON
printf 'translations:\n- name: test-guest\n  url: file://%s\n' "$image" >"$work/translations/images.yaml"

say "podvisor on libvirt (in the node namespace)"
in_node "$root/bin/podvisor" --hypervisor libvirt --network cni --cni-conf-dir "$work/cni" \
	--listen "unix://$sock" --state-dir "$work/state" --image-translations-dir "$work/translations" \
	>"$work/podvisor.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
	[ -S "$sock" ] && cri version >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || fail "podvisor exited at start-up"
	sleep 0.1
done
cri version || fail "podvisor does not answer"

say "pull, run the pod sandbox, create and start the VM"
cri pull virtlet.cloud/test-guest
cat >"$work/pod.json" <<JSON
{"metadata": {"name": "demo-vm", "namespace": "default", "uid": "uid-demo-vm-$$", "attempt": 0},
 "hostname": "demo-vm", "log_directory": "$work/logs",
 "annotations": {"kubernetes.io/target-runtime": "virtlet.cloud", "VirtletDiskDriver": "virtio",
                 "VirtletCloudInitUserDataScript": "#!/bin/sh\necho user-data script ran\n"},
 "dns_config": {"servers": ["10.96.0.10"], "searches": ["default.svc.cluster.local"]}}
JSON
cat >"$work/ctr.json" <<JSON
{"metadata": {"name": "vm"}, "image": {"image": "virtlet.cloud/test-guest"}, "log_path": "vm_0.log",
 "linux": {"resources": {"memory_limit_in_bytes": 268435456}}}
JSON
pod=$(cri runp "$work/pod.json") || fail "runp"
ip=$(cri inspectp -o go-template --template '{{.status.network.ip}}' "$pod")
echo "pod $pod has IP $ip"
ctr=$(cri create "$pod" "$work/ctr.json" "$work/pod.json") || fail "create"
cri start "$ctr" >/dev/null || fail "start"
cri ps

say "the serial console is the container log (waiting for the guest; TCG is slow)"
ok=0
for _ in $(seq 1 600); do
	if cri logs "$ctr" 2>/dev/null | grep -q 'PODVISOR-GUEST: ready'; then ok=1; break; fi
	sleep 0.5
done
cri logs "$ctr" | sed 's/^/  console| /' | tail -n 40
[ "$ok" = 1 ] || fail "the guest never printed its ready marker"
cri logs "$ctr" | grep -q "PODVISOR-GUEST: hostname=demo-vm" || fail "cloud-init hostname not applied"
cri logs "$ctr" | grep -q "PODVISOR-GUEST: ip=${ip}" || fail "the guest did not get the pod IP $ip by DHCP"

say "the pod IP answers (from the node namespace): $ip:8080"
answer=""
for _ in $(seq 1 60); do
	answer=$(in_node busybox nc -w 3 "$ip" 8080 </dev/null 2>/dev/null || true)
	[ -n "$answer" ] && break
	sleep 1
done
echo "  $ip:8080 says: $answer"
echo "$answer" | grep -q demo-vm || fail "the pod IP did not answer with the guest's hostname"

start_podvisor() {
	in_node "$root/bin/podvisor" --hypervisor libvirt --network cni --cni-conf-dir "$work/cni" \
		--listen "unix://$sock" --state-dir "$work/state" --image-translations-dir "$work/translations" \
		>>"$work/podvisor.log" 2>&1 &
	pid=$!
	for _ in $(seq 1 600); do
		[ -S "$sock" ] && cri version >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || fail "podvisor exited at start-up"
		sleep 0.1
	done
	fail "podvisor does not answer after a restart"
}
domain=$(cri inspect -o go-template --template '{{.info.domain}}' "$ctr")
qemu_pid() { cat "/run/libvirt/qemu/$domain.pid"; }

if [ "$mode" = test ]; then
	say "kill -9 podvisor under the running VM and restart it: nothing lost, VM not restarted"
	before=$(qemu_pid)
	started=$(cri inspect -o go-template --template '{{.status.startedAt}}' "$ctr")
	kill -9 "$pid"; wait "$pid" 2>/dev/null || true
	start_podvisor
	[ "$(qemu_pid)" = "$before" ] || fail "QEMU was restarted ($before -> $(qemu_pid))"
	[ "$(cri inspect -o go-template --template '{{.status.state}} {{.status.startedAt}}' "$ctr")" = "CONTAINER_RUNNING $started" ] \
		|| fail "container state or start time changed across the restart"
	[ "$(cri inspectp -o go-template --template '{{.status.network.ip}}' "$pod")" = "$ip" ] || fail "pod IP changed across the restart"
	in_node busybox nc -w 5 "$ip" 8080 </dev/null | grep -q demo-vm || fail "the pod IP stopped answering after the restart"
	echo "  same QEMU PID $before, same start time, pod IP still answers"

	say "QEMU killed from outside: the container is EXITED with a reason, the pod is removable"
	kill -9 "$(qemu_pid)"
	for _ in $(seq 1 100); do
		[ "$(cri inspect -o go-template --template '{{.status.state}}' "$ctr")" = CONTAINER_EXITED ] && break
		sleep 0.2
	done
	state=$(cri inspect -o go-template --template '{{.status.state}} {{.status.exitCode}} {{.status.reason}}: {{.status.message}}' "$ctr")
	echo "  container: $state"
	case "$state" in CONTAINER_EXITED\ 0\ *|CONTAINER_EXITED\ \ *) fail "a killed VM must exit non-zero with a reason: $state" ;; CONTAINER_EXITED*) ;; *) fail "killed VM not noticed: $state" ;; esac
fi

say "stop (ACPI), remove, and check nothing is left"
cri stop --timeout 120 "$ctr" >/dev/null
state=$(cri inspect -o go-template --template '{{.status.state}} {{.status.exitCode}} {{.status.reason}}' "$ctr")
echo "  container: $state"
cri rm "$ctr" >/dev/null; ctr=""
cri stopp "$pod" >/dev/null
netns_path=/run/netns/podvisor-${pod:0:12}
cri rmp "$pod" >/dev/null; pod=""
[ ! -e "$netns_path" ] || fail "the pod's network namespace $netns_path is left"
left=$(virsh -q -c qemu:///system list --all --name | grep -c '^pv-' || true)
[ "$left" = 0 ] || fail "$left podvisor domains left in libvirt"
[ -z "$(find "$work/state/vms" -mindepth 1 2>/dev/null)" ] || fail "VM files left"

say "PASS: a VM pod booted through podvisor's CRI on libvirt/QEMU, its console is the log, its pod IP answers"
