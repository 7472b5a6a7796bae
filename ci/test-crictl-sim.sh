#!/usr/bin/env bash
# Drives bin/podvisor --hypervisor sim with crictl through a whole pod
# lifecycle, killing the daemon with SIGKILL and restarting it on the same
# state dir between the steps: nothing may be lost and no VM restarted.
#
# Usage: ci/test-crictl-sim.sh [CRICTL]   (default: crictl on PATH)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
podvisor=${PODVISOR:-$root/bin/podvisor}
crictl=${1:-${CRICTL:-crictl}}
work=$(mktemp -d /tmp/podvisor-crictl.XXXXXX)
sock=$work/p.sock
pid=""

cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; wait "$pid" 2>/dev/null || true; fi
	if [ "${KEEP:-}" = "" ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; echo "--- podvisor log (last 40 lines)" >&2; tail -n 40 "$work/podvisor.log" >&2 || true; exit 1; }

start() {
	"$podvisor" --hypervisor sim --listen "unix://$sock" --state-dir "$work/state" \
		--image-translations-dir "$work/translations" --log-level debug >>"$work/podvisor.log" 2>&1 &
	pid=$!
	for _ in $(seq 1 100); do
		[ -S "$sock" ] && cri version >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || fail "podvisor exited at start-up"
		sleep 0.1
	done
	fail "podvisor did not answer on $sock"
}

kill9_restart() {
	echo "--- kill -9 podvisor ($pid) and restart: $1"
	kill -9 "$pid"
	wait "$pid" 2>/dev/null || true
	start
}

cri() { "$crictl" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --timeout 30s "$@" 2>>"$work/crictl.err"; }

expect_state() { # container-id want
	local got
	got=$(cri inspect -o go-template --template '{{.status.state}}' "$1") || fail "inspect $1"
	[ "$got" = "$2" ] || fail "container $1 is $got, want $2"
}

mkdir -p "$work/translations" "$work/logs"
truncate -s 4M "$work/cirros.img"
printf 'translations:\n- name: cirros\n  url: file://%s\n' "$work/cirros.img" >"$work/translations/images.yaml"
cat >"$work/pod.json" <<JSON
{"metadata":{"name":"vm1","namespace":"default","uid":"uid-vm1","attempt":0},
 "log_directory":"$work/logs",
 "annotations":{"kubernetes.io/target-runtime":"virtlet.cloud","VirtletVCPUCount":"2"}}
JSON
cat >"$work/ctr.json" <<JSON
{"metadata":{"name":"vm"},"image":{"image":"virtlet.cloud/cirros"},"log_path":"vm_0.log",
 "envs":[{"key":"GREETING","value":"hello"}]}
JSON

start
cri version | grep 'RuntimeName:  podvisor' >/dev/null || fail "crictl version does not name podvisor"

ref=$(cri pull virtlet.cloud/cirros | awk '{print $NF}')
[[ "$ref" == sha256:* ]] || fail "pull printed no image ref"
cri images | grep 'virtlet.cloud/cirros' >/dev/null || fail "crictl images does not list the image"
kill9_restart "after pull"
cri inspecti virtlet.cloud/cirros | grep "$ref" >/dev/null || fail "image lost across restart"

pod=$(cri runp "$work/pod.json")
[ "$(cri inspectp -o go-template --template '{{.status.state}}' "$pod")" = SANDBOX_READY ] || fail "sandbox not ready"
ip=$(cri inspectp -o go-template --template '{{.status.network.ip}}' "$pod")
[ -n "$ip" ] || fail "sandbox has no IP"
kill9_restart "after runp"
[ "$(cri runp "$work/pod.json")" = "$pod" ] || fail "runp of the same pod did not return the same sandbox"
[ "$(cri inspectp -o go-template --template '{{.status.network.ip}}' "$pod")" = "$ip" ] || fail "pod IP changed across restart"

ctr=$(cri create "$pod" "$work/ctr.json" "$work/pod.json")
expect_state "$ctr" CONTAINER_CREATED
kill9_restart "after create"
expect_state "$ctr" CONTAINER_CREATED

cri start "$ctr" >/dev/null
expect_state "$ctr" CONTAINER_RUNNING
started=$(cri inspect -o go-template --template '{{.status.startedAt}}' "$ctr")
cri ps | grep "${ctr:0:13}" >/dev/null || fail "crictl ps does not show the running container"
for _ in $(seq 1 100); do cri logs "$ctr" 2>/dev/null | grep 'ready' >/dev/null && break; sleep 0.1; done
cri logs "$ctr" | grep 'ready' >/dev/null || fail "console ready marker missing from crictl logs"
kill9_restart "while running"
expect_state "$ctr" CONTAINER_RUNNING
[ "$(cri inspect -o go-template --template '{{.status.startedAt}}' "$ctr")" = "$started" ] || fail "the VM was restarted (startedAt changed)"
# The console keeps being logged after the restart: a command typed into the
# console now gets an answer from the guest's shell that only this run can
# have produced, and that answer must reach the CRI log.
marker="after-restart-$$-$RANDOM"
printf '%s\r' "$marker" | timeout 30 "$crictl" --runtime-endpoint "unix://$sock" attach -i "$ctr" >/dev/null 2>>"$work/crictl.err" || true
for _ in $(seq 1 100); do grep -F "sh: $marker: not found" "$work/logs/vm_0.log" >/dev/null && break; sleep 0.1; done
grep -F "sh: $marker: not found" "$work/logs/vm_0.log" >/dev/null ||
	fail "the console is not logged after the restart: the guest's answer to '$marker' is not in $work/logs/vm_0.log"

cri stop --timeout 10 "$ctr" >/dev/null
expect_state "$ctr" CONTAINER_EXITED
code=$(cri inspect -o go-template --template '{{.status.exitCode}}' "$ctr")
[ "$code" = 0 ] || fail "ACPI stop gave exit code $code, want 0"
kill9_restart "after stop"
expect_state "$ctr" CONTAINER_EXITED

cri rm "$ctr" >/dev/null
[ -z "$(cri ps -a -q)" ] || fail "container still listed after rm"
cri stopp "$pod" >/dev/null
kill9_restart "after stopp"
[ "$(cri inspectp -o go-template --template '{{.status.state}}' "$pod")" = SANDBOX_NOTREADY ] || fail "sandbox not NOTREADY after stopp"
cri rmp "$pod" >/dev/null
[ -z "$(cri pods -q)" ] || fail "sandbox still listed after rmp"
cri rmi virtlet.cloud/cirros >/dev/null
[ -z "$(cri images -q)" ] || fail "image still listed after rmi"
left=$(find "$work/state/vms" -mindepth 1 2>/dev/null | wc -l)
[ "$left" = 0 ] || fail "$left files left in the VM directories"

echo "PASS: crictl lifecycle on the simulated hypervisor with kill -9 between every step"
