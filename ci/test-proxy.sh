#!/usr/bin/env bash
# Side-by-side test of the CRI proxy: real containerd (ci/containerd.sh)
# and podvisor on the simulated hypervisor behind bin/criproxy, driven by
# crictl through the proxy only.
#   - a container pod (containerd), a VM pod by the Virtlet annotation and a
#     VM pod by RuntimeClass handler run side by side; lists merge;
#   - kill -9 podvisor: containerd's pods stay fully usable through the
#     proxy while podvisor's calls fail fast naming podvisor;
#   - podvisor restarted: its pods are listed and usable again.
# Everything started here is stopped here, by PID.
#
# Usage: ci/test-proxy.sh [CRICTL]   (default: crictl on PATH)
# Needs root and the packages in ci/deps-proxy.txt; bin/podvisor and
# bin/criproxy from `make build`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
podvisor=${PODVISOR:-$root/bin/podvisor}
criproxy=${CRIPROXY:-$root/bin/criproxy}
crictl=${1:-${CRICTL:-crictl}}
containerd_sock=/run/podvisor-ci-containerd/containerd.sock

skip_or_fail() {
	if [ "${PODVISOR_ALLOW_SKIP:-}" = 1 ]; then echo "SKIP: $*"; exit 0; fi
	echo "FAIL: $*" >&2
	exit 1
}
[ "$(id -u)" = 0 ] || skip_or_fail "ci/test-proxy.sh needs root (containerd)"
for tool in containerd runc ctr; do
	command -v "$tool" >/dev/null || skip_or_fail "$tool not installed (apt-get install containerd runc; see ci/deps-proxy.txt)"
done
[ -x /usr/lib/cni/bridge ] || skip_or_fail "CNI plugins missing in /usr/lib/cni (containernetworking-plugins)"
for b in "$podvisor" "$criproxy"; do [ -x "$b" ] || skip_or_fail "$b missing: run make build"; done

# The private containerd is shared with ci/test-proxy.sh and
# ci/conformance.sh: one of them at a time (another run would stop it under us).
exec 9>/run/podvisor-ci-containerd.lock
flock -w 1800 9 || { echo "FAIL: another proxy test held /run/podvisor-ci-containerd.lock for 30 minutes" >&2; exit 1; }
work=$(mktemp -d /tmp/podvisor-proxy.XXXXXX)
psock=$work/podvisor.sock
xsock=$work/proxy.sock
ppid="" xpid="" started_containerd=""
: >"$work/crictl.yaml"

cleanup() {
	set +e
	if [ -n "$xpid" ]; then kill "$xpid" 2>/dev/null; wait "$xpid" 2>/dev/null; fi
	if [ -n "$ppid" ]; then kill "$ppid" 2>/dev/null; wait "$ppid" 2>/dev/null; fi
	if [ -n "$started_containerd" ]; then CRICTL=$crictl "$root/ci/containerd.sh" stop; fi
	if [ "${KEEP:-}" = "" ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	for l in criproxy podvisor crictl; do
		echo "--- $l log (last 25 lines)" >&2
		tail -n 25 "$work/$l.log" >&2 2>/dev/null || true
	done
	exit 1
}

cri() { "$crictl" --config "$work/crictl.yaml" --runtime-endpoint "unix://$xsock" --image-endpoint "unix://$xsock" --timeout 60s "$@" 2>>"$work/crictl.log"; }
# cri_err runs a crictl command that must fail and prints its error output.
cri_err() {
	local out
	if out=$("$crictl" --config "$work/crictl.yaml" --runtime-endpoint "unix://$xsock" --image-endpoint "unix://$xsock" --timeout 60s "$@" 2>&1); then
		fail "crictl $* succeeded, want an error"
	fi
	# crictl quotes the gRPC message: drop its backslashes.
	tr -d '\\' <<<"$out"
}

start_podvisor() {
	"$podvisor" --hypervisor sim --listen "unix://$psock" --state-dir "$work/pv-state" \
		--image-translations-dir "$work/translations" >>"$work/podvisor.log" 2>&1 9>&- &
	ppid=$!
	for _ in $(seq 1 100); do
		[ -S "$psock" ] && break
		kill -0 "$ppid" 2>/dev/null || fail "podvisor exited at start-up"
		sleep 0.1
	done
	[ -S "$psock" ] || fail "podvisor did not create $psock"
}

# wait_until DESCRIPTION CMD...: polls CMD for up to 60 s.
wait_until() {
	local what=$1
	shift
	for _ in $(seq 1 600); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	fail "timed out waiting for: $what"
}

state_of() { cri inspect -o go-template --template '{{.status.state}}' "$1"; }
expect_state() { local got; got=$(state_of "$1") || fail "inspect $1"; [ "$got" = "$2" ] || fail "container $1 is $got, want $2"; }

echo "--- building test images and starting containerd"
"$root/ci/images/build.sh" "$work/images" >/dev/null
# shellcheck disable=SC1091
. "$work/images/images.env"
[ -f /run/podvisor-ci-containerd/containerd.pid ] && kill -0 "$(cat /run/podvisor-ci-containerd/containerd.pid)" 2>/dev/null || started_containerd=1
PAUSE_IMAGE=$PAUSE_IMAGE IMAGES_DIR=$work/images "$root/ci/containerd.sh" start

mkdir -p "$work/translations" "$work/logs"
truncate -s 4M "$work/cirros.img"
printf 'translations:\n- name: cirros\n  url: file://%s\n' "$work/cirros.img" >"$work/translations/images.yaml"
start_podvisor
"$criproxy" --listen "unix://$xsock" --primary "unix://$containerd_sock" --runtime "podvisor=unix://$psock" \
	--max-backoff 1s --down-grace 10s --log-level debug >>"$work/criproxy.log" 2>&1 9>&- &
xpid=$!
wait_until "criproxy answering" cri version

cri version | grep 'RuntimeName:  containerd' >/dev/null || fail "crictl version through the proxy does not come from containerd"

run_id=${work##*.}
pod_json() { # name uid annotations-json
	cat >"$work/$1.json" <<JSON
{"metadata":{"name":"$1-$run_id","namespace":"default","uid":"$2-$run_id","attempt":0},
 "log_directory":"$work/logs/$1", "linux":{},
 "annotations":$3}
JSON
}
pod_json web uid-web '{}'
pod_json web2 uid-web2 '{}'
pod_json vm uid-vm '{"kubernetes.io/target-runtime":"virtlet.cloud"}'
pod_json vmrc uid-vmrc '{}'
cat >"$work/bb.json" <<JSON
{"metadata":{"name":"bb"},"image":{"image":"$BUSYBOX_IMAGE"},"command":["sleep","3600"],"log_path":"bb.log","linux":{}}
JSON
cat >"$work/cirros.json" <<JSON
{"metadata":{"name":"vm"},"image":{"image":"virtlet.cloud/cirros"},"log_path":"vm.log"}
JSON

echo "--- a container pod and two VM pods side by side"
web=$(cri runp "$work/web.json") || fail "runp of the container pod"
[[ "$web" != *__* ]] || fail "containerd pod ID $web was prefixed"
web_c=$(cri create "$web" "$work/bb.json" "$work/web.json") || fail "create in the container pod"
cri start "$web_c" >/dev/null || fail "start in the container pod"
expect_state "$web_c" CONTAINER_RUNNING
[ "$(cri exec "$web_c" echo side-by-side)" = side-by-side ] || fail "exec in the container pod"

cri pull virtlet.cloud/cirros >/dev/null || fail "pull of virtlet.cloud/cirros through the proxy"
vm=$(cri runp "$work/vm.json") || fail "runp of the annotated VM pod"
[[ "$vm" == podvisor__* ]] || fail "VM pod ID $vm lacks the podvisor__ prefix"
vm_c=$(cri create "$vm" "$work/cirros.json" "$work/vm.json") || fail "create in the VM pod"
[[ "$vm_c" == podvisor__* ]] || fail "VM container ID $vm_c lacks the podvisor__ prefix"
cri start "$vm_c" >/dev/null || fail "start of the VM"
expect_state "$vm_c" CONTAINER_RUNNING

vmrc=$(cri runp --runtime podvisor "$work/vmrc.json") || fail "runp --runtime podvisor"
[[ "$vmrc" == podvisor__* ]] || fail "RuntimeClass pod ID $vmrc lacks the podvisor__ prefix"
vmrc_c=$(cri create "$vmrc" "$work/cirros.json" "$work/vmrc.json") || fail "create in the RuntimeClass VM pod"
cri start "$vmrc_c" >/dev/null || fail "start of the RuntimeClass VM"
expect_state "$vmrc_c" CONTAINER_RUNNING
[ "$(cri inspectp -o go-template --template '{{.status.runtimeHandler}}' "$vmrc")" = podvisor ] ||
	fail "the RuntimeClass VM pod does not report handler podvisor"

echo "--- lists merge"
pods=$(cri pods -q --no-trunc)
for id in "$web" "$vm" "$vmrc"; do grep -qx "$id" <<<"$pods" || fail "crictl pods misses $id"; done
ctrs=$(cri ps -q --no-trunc)
for id in "$web_c" "$vm_c" "$vmrc_c"; do grep -qx "$id" <<<"$ctrs" || fail "crictl ps misses $id"; done
[ "$(cri ps -q --no-trunc --pod "$vm")" = "$vm_c" ] || fail "crictl ps --pod $vm does not list exactly the VM container"
images=$(cri images)
grep -q "virtlet.cloud/cirros" <<<"$images" || fail "crictl images misses virtlet.cloud/cirros"
grep -q "${BUSYBOX_IMAGE%:*}" <<<"$images" || fail "crictl images misses the busybox image"
grep -q 'virtlet.cloud/virtlet.cloud' <<<"$images" && fail "an image name got the virtlet.cloud/ prefix twice"
cri inspecti virtlet.cloud/cirros >/dev/null || fail "inspecti virtlet.cloud/cirros"

err=$(cri_err create "$vm" "$work/bb.json" "$work/vm.json")
grep -q 'belongs to runtime "primary"' <<<"$err" || fail "a container image in a VM pod was not refused clearly: $err"
err=$(cri_err create "$web" "$work/cirros.json" "$work/web.json")
grep -q 'belongs to runtime "podvisor"' <<<"$err" || fail "a VM image in a container pod was not refused clearly: $err"

echo "--- kill -9 podvisor: containerd's pods stay usable"
kill -9 "$ppid"
wait "$ppid" 2>/dev/null || true
ppid=""
# Past --down-grace, calls for podvisor fail and lists leave it out (before,
# its last answers stand in: runtime/proxy's TestRuntimeDown).
sleep 11
err=$(cri_err inspectp "$vm")
grep -q 'runtime "podvisor"' <<<"$err" && grep -qi 'unavailable' <<<"$err" || fail "podvisor's pod status did not fail naming podvisor: $err"
err=$(cri_err inspect "$vm_c")
grep -q 'runtime "podvisor"' <<<"$err" || fail "podvisor's container status did not fail naming podvisor: $err"
err=$(cri_err runp --runtime podvisor "$work/vmrc.json")
grep -q 'runtime "podvisor"' <<<"$err" || fail "runp on podvisor did not fail naming podvisor: $err"

cri pods -q --no-trunc | grep -x "$web" >/dev/null || fail "crictl pods lost the containerd pod while podvisor is down"
cri ps -q --no-trunc | grep -x "$web_c" >/dev/null || fail "crictl ps lost the containerd container while podvisor is down"
cri images | grep "${BUSYBOX_IMAGE%:*}" >/dev/null || fail "crictl images failed while podvisor is down"
[ "$(cri exec "$web_c" echo still-here)" = still-here ] || fail "exec in the container pod while podvisor is down"
web2=$(cri runp "$work/web2.json") || fail "runp of a new container pod while podvisor is down"
web2_c=$(cri create "$web2" "$work/bb.json" "$work/web2.json") || fail "create while podvisor is down"
cri start "$web2_c" >/dev/null || fail "start while podvisor is down"
expect_state "$web2_c" CONTAINER_RUNNING
for c in "$web_c" "$web2_c"; do
	cri stop --timeout 5 "$c" >/dev/null || fail "stop $c while podvisor is down"
	expect_state "$c" CONTAINER_EXITED
	cri rm "$c" >/dev/null || fail "rm $c while podvisor is down"
done
for p in "$web" "$web2"; do
	cri stopp "$p" >/dev/null || fail "stopp $p while podvisor is down"
	cri rmp "$p" >/dev/null || fail "rmp $p while podvisor is down"
done
left=$(cri pods -q --no-trunc) || fail "crictl pods while podvisor is down"
grep -qxe "$web" -e "$web2" <<<"$left" && fail "containerd's pods still listed after rmp (podvisor is down)"

echo "--- podvisor restarted: its pods come back"
start_podvisor
wait_until "podvisor's pods listed again" bash -c "[ \"\$('$crictl' --config $work/crictl.yaml --runtime-endpoint unix://$xsock --timeout 10s pods -q --no-trunc 2>/dev/null | grep -c ^podvisor__)\" = 2 ]"
expect_state "$vm_c" CONTAINER_RUNNING
expect_state "$vmrc_c" CONTAINER_RUNNING
for c in "$vm_c" "$vmrc_c"; do
	cri stop --timeout 10 "$c" >/dev/null || fail "stop $c"
	cri rm "$c" >/dev/null || fail "rm $c"
done
for p in "$vm" "$vmrc"; do
	cri stopp "$p" >/dev/null || fail "stopp $p"
	cri rmp "$p" >/dev/null || fail "rmp $p"
done
cri rmi virtlet.cloud/cirros >/dev/null || fail "rmi virtlet.cloud/cirros"
left=$(cri pods -q --no-trunc) || fail "crictl pods at the end"
grep -qxe "$vm" -e "$vmrc" <<<"$left" && fail "VM pods still listed after rmp"
cri images | grep virtlet.cloud >/dev/null && fail "virtlet.cloud/cirros still listed after rmi"

echo "PASS: containerd and podvisor side by side through criproxy (kill -9 of podvisor left containerd's pods usable)"
