#!/usr/bin/env bash
# VM pods through podvisor's CRI on real libvirt + QEMU with a real CNI
# network: the main job of podvisor.
#
#   ci/real-pod.sh demo   one VM pod, its console streamed, its pod IP asked
#   ci/real-pod.sh test   the integration tests of `make test`: libvirtd and
#                         the test guest here, then the Go test
#                         internal/processtests TestRealPod (three VMs,
#                         exec, kill -9 of podvisor and a libvirtd restart
#                         under them, QEMU killed from outside, a guest that
#                         ignores ACPI, file modes, no leak at the end) and
#                         TestRealCheckpoint (a counting VM checkpointed,
#                         restored on the same and on a second podvisor;
#                         a full disk and bad archives refused)
#
# Everything network-facing stays inside namespaces this script creates:
# podvisor runs in a "node" network namespace of its own, so the CNI bridge,
# the image HTTP server and the pod routes live there.
# Root; after `make build tools`.
set -euo pipefail

mode=${1:-test}
case "$mode" in demo | test) ;; *) echo "usage: $0 demo|test" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH=/usr/local/go/bin:$PATH
crictl=${CRICTL:-$root/_build/tools/crictl}
guest_dir=${PODVISOR_GUEST_DIR:-/var/tmp/podvisor-test-guest}
t0=$(date +%s.%N)

say() { printf '\n\033[1m[%6.1fs] %s\033[0m\n' "$(echo "$(date +%s.%N) - $t0" | bc)" "$*"; }
missing=()
[ "$(id -u)" = 0 ] || missing+=("root (run as root: podvisor creates network namespaces and talks to libvirt's system instance)")
for tool in qemu-system-x86_64 qemu-img virsh libvirtd genisoimage nsenter ip busybox bc; do
	command -v "$tool" >/dev/null || missing+=("$tool (ci/install-deps.sh installs it)")
done
[ -x "$root/bin/podvisor" ] && [ -x "$root/bin/podvisor-vmwrapper" ] || missing+=("bin/podvisor and bin/podvisor-vmwrapper (make build)")
[ -x "$crictl" ] || missing+=("crictl at $crictl (make tools)")
[ -d /usr/lib/cni ] || [ -d /opt/cni/bin ] || missing+=("CNI plugins (Debian containernetworking-plugins)")
if [ "${#missing[@]}" -gt 0 ]; then
	echo "real-pod: this machine cannot run a VM pod yet; missing:" >&2
	printf '  - %s\n' "${missing[@]}" >&2
	exit 1
fi

work=$(mktemp -d /tmp/pvreal.XXXXXX)
node_ns=pvnode-$$
sock=$work/podvisor.sock
pid=""
httpd_pid=""
started_libvirtd=0
subnet=10.77.$((RANDOM % 200 + 20)).0/24
pods=()
ctrs=()
domains=()

fail() {
	echo "FAIL: $*" >&2
	echo "--- podvisor log (last 60 lines)" >&2
	tail -n 60 "$work/podvisor.log" >&2 || true
	exit 1
}
in_node() { nsenter --net="/run/netns/$node_ns" "$@"; }
cri() { "$crictl" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --timeout 120s "$@" 2>>"$work/crictl.err"; }
field() { cri inspect -o go-template --template "$2" "$1"; }

cleanup() {
	set +e
	for c in "${ctrs[@]}"; do cri rm -f "$c" >/dev/null 2>&1; done
	for p in "${pods[@]}"; do cri stopp "$p" >/dev/null 2>&1; cri rmp -f "$p" >/dev/null 2>&1; done
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && { kill "$pid"; wait "$pid" 2>/dev/null; }
	[ -n "$httpd_pid" ] && kill "$httpd_pid" 2>/dev/null
	ip netns del "$node_ns" 2>/dev/null
	if [ "$started_libvirtd" = 1 ] && [ "${KEEP_LIBVIRTD:-}" = "" ]; then "$root/ci/libvirtd.sh" stop >/dev/null 2>&1; fi
	if [ "${KEEP:-}" = "" ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

# Background processes are started with nsenter itself (it execs the
# program), never through a shell function: $! must be the program's PID.
start_podvisor() {
	nsenter --net="/run/netns/$node_ns" "$root/bin/podvisor" --hypervisor libvirt --network cni --cni-conf-dir "$work/cni" \
		--listen "unix://$sock" --state-dir "$work/state" --image-translations-dir "$work/translations" \
		--image-download-allow-networks 127.0.0.1/32 \
		>>"$work/podvisor.log" 2>&1 &
	pid=$!
	for _ in $(seq 1 600); do
		[ -S "$sock" ] && cri version >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || fail "podvisor exited at start-up"
		sleep 0.1
	done
	fail "podvisor does not answer"
}

# run_vm NAME [USER-DATA-SCRIPT]: runp + create + start; sets $pod $ctr $ip.
run_vm() {
	local name=$1 script=${2:-'#!/bin/sh\necho user-data script ran\n'}
	cat >"$work/$name-pod.json" <<JSON
{"metadata": {"name": "$name", "namespace": "default", "uid": "uid-$name-$$", "attempt": 0},
 "hostname": "$name", "log_directory": "$work/logs/$name",
 "annotations": {"kubernetes.io/target-runtime": "virtlet.cloud", "VirtletDiskDriver": "virtio",
                 "VirtletCloudInitUserDataScript": "$script"},
 "dns_config": {"servers": ["10.96.0.10"], "searches": ["default.svc.cluster.local"]}}
JSON
	cat >"$work/$name-ctr.json" <<JSON
{"metadata": {"name": "vm"}, "image": {"image": "virtlet.cloud/podvisor/testvm"}, "log_path": "vm_0.log",
 "linux": {"resources": {"memory_limit_in_bytes": 268435456}}}
JSON
	pod=$(cri runp "$work/$name-pod.json") || fail "runp $name"
	pods+=("$pod")
	ip=$(cri inspectp -o go-template --template '{{.status.network.ip}}' "$pod")
	ctr=$(cri create "$pod" "$work/$name-ctr.json" "$work/$name-pod.json") || fail "create $name"
	ctrs+=("$ctr")
	domains+=("$(field "$ctr" '{{.info.domain}}')")
	cri start "$ctr" >/dev/null || fail "start $name"
	echo "  $name: pod ${pod:0:13} IP $ip, VM container ${ctr:0:13} running"
}

wait_ready() { # ctr
	for _ in $(seq 1 600); do
		cri logs "$1" 2>/dev/null | grep 'PODVISOR-GUEST: ready' >/dev/null && return 0
		sleep 0.5
	done
	return 1
}

ask() { # ip -> the guest's answer on port 8080
	local answer=""
	for _ in $(seq 1 60); do
		answer=$(in_node busybox nc -w 3 "$1" 8080 </dev/null 2>/dev/null || true)
		[ -n "$answer" ] && break
		sleep 1
	done
	echo "$answer"
}

qemu_pid() { cat "/run/libvirt/qemu/$(field "$1" '{{.info.domain}}').pid"; }

say "libvirtd and the test guest"
if ! "$root/ci/libvirtd.sh" status 2>/dev/null | grep '^libvirtd: running' >/dev/null; then started_libvirtd=1; fi
"$root/ci/libvirtd.sh" start
"$root/ci/build-guest.sh" "$guest_dir"
[ -f "$guest_dir/podvisor-test-guest.qcow2" ] || fail "no test guest in $guest_dir"
if [ "$mode" = test ]; then
	say "internal/processtests TestRealPod TestRealCheckpoint"
	cd "$root"
	PODVISOR_REALPOD_TESTS=1 PODVISOR_GUEST_DIR=$guest_dir CRICTL=$crictl \
		go test -count=1 -timeout 40m -v -run "${REALPOD_RUN:-^(TestRealPod|TestRealCheckpoint)\$}" ./internal/processtests/
	exit
fi

say "a node network namespace, a bridge + host-local CNI network ($subnet), an image server"
ip netns add "$node_ns"
in_node ip link set lo up
mkdir -p "$work/cni" "$work/translations" "$work/logs"
cat >"$work/cni/10-podvisor.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "podvisor-demo", "plugins": [
  {"type": "bridge", "bridge": "pvdemo0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$work/ipam"}}]}
JSON
nsenter --net="/run/netns/$node_ns" busybox httpd -f -p 127.0.0.1:8099 -h "$guest_dir" &
httpd_pid=$!
cat >"$work/translations/images.yaml" <<YAML
translations:
- name: podvisor/testvm
  url: http://127.0.0.1:8099/podvisor-test-guest.qcow2
YAML
echo "  virtlet.cloud/podvisor/testvm -> http://127.0.0.1:8099/podvisor-test-guest.qcow2"

say "podvisor on libvirt (in the node namespace)"
start_podvisor
cri version | sed 's/^/  /'

say "pull virtlet.cloud/podvisor/testvm"
cri pull virtlet.cloud/podvisor/testvm | sed 's/^/  /'

say "run the pod sandbox, create and start the VM"
run_vm demo-vm
main_ctr=$ctr main_ip=$ip

say "the serial console is the container log, streamed as it comes (TCG is slow)"
shown=0
ready=0
for _ in $(seq 1 600); do
	log=$(cri logs "$main_ctr" 2>/dev/null || true)
	n=$(printf '%s\n' "$log" | wc -l)
	if [ "$n" -gt "$shown" ]; then
		printf '%s\n' "$log" | tail -n +$((shown + 1)) | sed 's/^/  console| /'
		shown=$n
	fi
	if printf '%s\n' "$log" | grep 'PODVISOR-GUEST: ready' >/dev/null; then ready=1; break; fi
	sleep 0.5
done
[ "$ready" = 1 ] || fail "the guest never printed its ready marker"
echo "$log" | grep "PODVISOR-GUEST: hostname=demo-vm" >/dev/null || fail "cloud-init hostname not applied"
echo "$log" | grep "PODVISOR-GUEST: ip=$main_ip" >/dev/null || fail "the guest did not get the pod IP $main_ip by DHCP"
echo "$log" | grep "user data script ran\|user-data script ran" >/dev/null || fail "the cloud-init user-data script did not run"

say "the pod IP answers: $main_ip:8080"
answer=$(ask "$main_ip")
echo "  $main_ip:8080 says: $answer"
echo "$answer" | grep demo-vm >/dev/null || fail "the pod IP did not answer with the guest's hostname"

say "the running VM's disks, drive and image are for root only (QEMU opened them as root)"
# (kvm-probe: the KVM trial's directory, opened up for an unprivileged QEMU,
# inside the 0700 state directory.)
open_to_others=$(find "$work/state" -path "$work/state/kvm-probe" -prune -o ! -type l ! -type s -perm /o=rwx -printf '%m %p\n')
[ -z "$open_to_others" ] || fail "state files other local users may read or enter: $open_to_others"
stat -c '  %a %n' "$work/state" "$work/state/images" "$work/state/images/data"/* "$work/state/vms"/*/* | sed "s#$work/##"

say "stop (ACPI) and remove every pod; nothing may be left"
for c in "${ctrs[@]}"; do
	cri stop --timeout 120 "$c" >/dev/null
	echo "  ${c:0:13}: $(field "$c" '{{.status.state}} {{.status.exitCode}} {{.status.reason}}')"
	cri rm "$c" >/dev/null
done
ctrs=()
for p in "${pods[@]}"; do
	cri stopp "$p" >/dev/null
	cri rmp "$p" >/dev/null
	[ ! -e "/run/netns/podvisor-${p:0:12}" ] || fail "network namespace of ${p:0:13} left"
done
pods=()
# Only this run's domains: other podvisors may share libvirtd.
all_domains=$(virsh -q -c qemu:///system list --all --name)
for d in "${domains[@]}"; do
	! grep -qx "$d" <<<"$all_domains" || fail "domain $d left in libvirt"
done
[ -z "$(find "$work/state/vms" -mindepth 1 2>/dev/null)" ] || fail "VM files (disks, ISOs) left"
[ -z "$(in_node ip -o link show type veth 2>/dev/null)" ] || fail "veth interfaces left in the node namespace"

say "PASS ($mode): VM pods booted through podvisor's CRI on libvirt/QEMU; console = log; pod IP answered: $answer"
