#!/usr/bin/env bash
# make e2e: a one-node Kubernetes v1.37 on this machine with containerd 2.x,
# podvisor installed onto it from deploy/ as an operator would (`kubectl
# apply -k` of an overlay that only swaps in the locally built image and
# this node's paths), then the Ginkgo suite in conformance/e2e against that
# install, then podvisor uninstalled again and the node checked restored.
#
# The node is a network namespace on this machine: etcd, kube-apiserver (on
# the namespace's 127.0.0.1), controller-manager, scheduler, containerd,
# kubelet (node IP 10.99.0.1 on a veth inside it) and the busybox httpd that
# serves the test guest image all run in it, in the machine's mount
# namespace, so hostPaths are the machine's own paths and hostNetwork pods
# share the namespace. podvisor, libvirtd and QEMU run as the podvisor
# DaemonSet's pod on the node's containerd; criproxy is put in front of
# containerd by the node-setup DaemonSet (deploy/image/install-criproxy.sh).
# This machine has no systemd: ci/k8s/node-services.sh stands in for it
# (kubelet.service as kubeadm runs it, criproxy.service once the node setup
# wrote it) and for nothing else. Everything started here is stopped here.
#
# Root. Usage: ci/e2e.sh [extra ginkgo flags, e.g. -ginkgo.focus=attach]
# Env: KEEP=1 keeps the work dir (logs, certs); PODVISOR_GUEST_DIR (default
# /var/tmp/podvisor-test-guest); E2E_TIMEOUT (default 45m); E2E_IMAGE (the
# node image's OCI archive; default: make image's, built when missing).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=${GOTOOLCHAIN:-local}
crictl=${CRICTL:-$root/_build/tools/crictl}
guest_dir=${PODVISOR_GUEST_DIR:-/var/tmp/podvisor-test-guest}
version=$(tr -d '[:space:]' <"$root/internal/version/VERSION")
node=podvisor-e2e
node_ip=10.99.0.1
# The node's libvirt state: the DaemonSet's own hostPaths (e2e overlay), so
# that a libvirtd of ci/libvirtd.sh (make test) on this machine, which uses
# /var/run/libvirt, /var/lib/libvirt and /etc/libvirt, never meets it.
libvirt_host=/var/lib/podvisor-e2e/libvirt
# The node's registry (e2e-node.sh) and the containerDisk pushed to it.
registry=127.0.0.1:5000
containerdisk=$registry/containerdisks/podvisor-testvm:1
t0=$(date +%s)

say() { printf '\n\033[1m[%4ds] %s\033[0m\n' "$(($(date +%s) - t0))" "$*"; }
die() { echo "e2e: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (network namespaces, kubelet, containerd, libvirt)"

say "dependencies (ci/install-deps.sh) and builds"
"$root/ci/install-deps.sh"
[ -x "$root/bin/podvisorctl" ] || die "bin/podvisorctl missing: run make build"
[ -x "$crictl" ] || die "crictl missing at $crictl: run make tools"
k8sbin=$("$root/ci/k8s/build.sh")
ctrdbin=$("$root/ci/build-containerd.sh")
"$root/ci/build-guest.sh" "$guest_dir" >/dev/null
[ -f "$guest_dir/podvisor-test-guest.qcow2" ] || die "no test guest in $guest_dir"
image_tar=${E2E_IMAGE:-$root/_build/image/podvisor-$version.tar}
if [ -z "${E2E_IMAGE:-}" ]; then
	VERSION=$version OUT=$image_tar "$root/deploy/image/build.sh" >/dev/null
fi
[ -f "$image_tar" ] || die "no node image at $image_tar (make image)"
image_ref=docker.io/podvisor/podvisor:$version
next_ref=$image_ref-next

# One run at a time: the node's paths are the machine's.
exec 9>/run/podvisor-e2e.lock
flock -w 3600 9 || die "another ci/e2e.sh held /run/podvisor-e2e.lock for an hour"

work=$(mktemp -d /tmp/podvisor-e2e.XXXXXX)
netns=pve2e-$$
logs=$work/logs
svc=$work/services
pids=()
names=()
made_root_shared=0
mkdir -p "$logs" "$svc" "$work/bin"

in_node() { nsenter --net="/run/netns/$netns" "$@"; }
kubectl() { in_node "$k8sbin/kubectl" --kubeconfig "$work/pki/admin.kubeconfig" "$@"; }
ctr_() { in_node "$ctrdbin/ctr" -a /run/containerd/containerd.sock "$@"; }

# The node's files, created by this run and removed at its end. A path that
# exists already belongs to someone else: refuse rather than clobber it.
# (/run/containerd itself is shared: every containerd on the machine, also
# ci/containerd.sh's private one, keeps its shims' runc state there. So is
# /var/lib/cni: libcni's default result cache, which that containerd of make
# test fills too; the run removes only its own network's entries there.)
node_paths=(/var/lib/kubelet /etc/kubernetes /etc/default/kubelet /etc/cni/net.d /opt/cni/bin
	/var/lib/podvisor /run/podvisor /run/criproxy /run/containerd/containerd.sock /var/lib/containerd
	/var/lib/podvisor-e2e /var/log/pods /usr/local/bin/criproxy /etc/systemd/system/criproxy.service
	/var/lib/calico)
for p in "${node_paths[@]}"; do
	[ -e "$p" ] && die "$p exists: the e2e node uses it (a previous run's leftovers? remove it after checking)"
done
# The node network's entries under /var/lib/cni (host-local's leases,
# libcni's results): a previous run's would hand out its addresses again.
cni_net=podvisor-e2e
cni_state=/var/lib/cni
made_cni_state=0
[ -e "$cni_state" ] || made_cni_state=1
for p in "$cni_state/networks/$cni_net" "$cni_state/networks/$cni_net-b" "$cni_state/results/$cni_net"-*; do
	[ -e "$p" ] && die "$p exists: the e2e node's CNI network uses it (a previous run's leftovers? remove it after checking)"
done

# run NAME CMD...: starts a daemon in the node namespace, logging to logs/NAME.log.
run() {
	local name=$1
	shift
	# nsenter itself, not a function: $! must be the daemon's PID.
	nsenter --net="/run/netns/$netns" "$@" >>"$logs/$name.log" 2>&1 9>&- &
	pids+=($!)
	names+=("$name")
}

stop_pid() { # name pid
	kill -0 "$2" 2>/dev/null || return 0
	kill "$2" 2>/dev/null
	for _ in $(seq 1 300); do kill -0 "$2" 2>/dev/null || { wait "$2" 2>/dev/null; return 0; }; sleep 0.1; done
	echo "e2e: $1 (pid $2) ignored SIGTERM for 30 s: SIGKILL" >&2
	kill -9 "$2" 2>/dev/null
	wait "$2" 2>/dev/null
}

dump_logs() {
	local f
	for f in "$logs"/*.log; do
		echo "--- $(basename "$f" .log) (last 25 lines of $f)" >&2
		tail -n 25 "$f" >&2 || true
	done
	# The API server may be gone: bounded requests.
	kubectl --request-timeout=20s get pods -A -o wide >&2 2>/dev/null || true
	kubectl --request-timeout=20s -n kube-system describe pods >"$logs/kube-system-pods.txt" 2>&1 || true
	for c in podvisor libvirt vms; do
		kubectl --request-timeout=20s -n kube-system logs ds/podvisor -c "$c" --tail 40 >"$logs/ds-$c.txt" 2>&1 || true
	done
}

# shellcheck source=ci/k8s/e2e-teardown.sh
. "$root/ci/k8s/e2e-teardown.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

say "the suite's test binary and the container images"
(cd "$root" && go test -tags e2e -c -o "$work/e2e.test" ./conformance/e2e/)
"$root/ci/images/build.sh" "$work/images" podvisor-e2e.local >/dev/null
# shellcheck disable=SC1091
. "$work/images/images.env"

# wait_for DESCRIPTION SECONDS CMD...: polls CMD once a second.
wait_for() {
	local what=$1 secs=$2 i
	shift 2
	for _ in $(seq 1 "$secs"); do
		"$@" >/dev/null 2>&1 && return 0
		for i in "${!pids[@]}"; do
			kill -0 "${pids[$i]}" 2>/dev/null || die "${names[$i]} exited while waiting for $what"
		done
		sleep 1
	done
	die "timed out after ${secs}s waiting for $what"
}

# shellcheck source=ci/k8s/e2e-node.sh
. "$root/ci/k8s/e2e-node.sh"

say "podvisor from deploy/: kubectl apply -k (image $image_ref)"
write_overlay "$work/overlay" "$root/deploy"
kubectl label node "$node" extraRuntime=virtlet podvisor.io/enabled=true >/dev/null
kubectl apply -k "$work/overlay" >/dev/null
kubectl -n kube-system rollout status ds/podvisor-node-setup --timeout=5m
# The node setup pointed kubelet at criproxy; node-services.sh restarted it.
wait_for "kubelet on criproxy" 180 kubelet_endpoint_is unix:///run/criproxy/criproxy.sock
wait_for "node $node Ready on criproxy" 180 kubectl wait --for=condition=Ready "node/$node" --timeout=5s
kubectl -n kube-system rollout status ds/podvisor --timeout=10m
kubectl -n kube-system get pods -o wide
ctr_ -n k8s.io images tag "$image_ref" "$next_ref" >/dev/null

say "the Ginkgo suite (conformance/e2e)"
cat >"$work/bin/virsh" <<SH
#!/bin/sh
# virsh in the podvisor DaemonSet's libvirt container (the suite's leak check).
exec "$k8sbin/kubectl" --kubeconfig "$work/pki/admin.kubeconfig" -n kube-system exec -i ds/podvisor -c libvirt -- virsh "\$@"
SH
chmod +x "$work/bin/virsh"
suite_rc=0
in_node env PATH="$work/bin:$PATH" KUBECONFIG="$work/pki/admin.kubeconfig" \
	PODVISOR_E2E_KUBECTL="$k8sbin/kubectl" \
	PODVISOR_E2E_PODVISORCTL="$root/bin/podvisorctl" \
	PODVISOR_E2E_NODE="$node" \
	PODVISOR_E2E_VM_IMAGE=virtlet.cloud/podvisor/testvm \
	PODVISOR_E2E_VM_IMAGE_URL=http://127.0.0.1:8099/podvisor-test-guest.qcow2 \
	PODVISOR_E2E_CONTAINERDISK="$containerdisk" \
	PODVISOR_E2E_CONTAINERDISK_DIGEST="$containerdisk_digest" \
	PODVISOR_E2E_CONTAINER_IMAGE="$BUSYBOX_IMAGE" \
	PODVISOR_E2E_PODVISOR_SOCKET=/run/podvisor/podvisor.sock \
	PODVISOR_E2E_STATE_DIR=/var/lib/podvisor \
	PODVISOR_E2E_CONTAINERD_SOCKET=/run/containerd/containerd.sock \
	PODVISOR_E2E_CTR="$ctrdbin/ctr" \
	PODVISOR_E2E_NEXT_IMAGE="$next_ref" \
	PODVISOR_E2E_METRICS_URL="http://$node_ip:9474/metrics" \
	"$work/e2e.test" -test.v -test.timeout "${E2E_TIMEOUT:-45m}" -ginkgo.v "$@" || suite_rc=$?

# podvisor's and libvirtd's whole logs before the uninstall takes them
# away: what a failed spec's diagnosis points at (KEEP=1 keeps $logs).
for c in podvisor libvirt; do
	kubectl --request-timeout=60s -n kube-system logs ds/podvisor -c "$c" >"$logs/ds-$c-full.txt" 2>&1 || true
done
say "uninstall: kubectl delete -k, deploy/uninstall/node-uninstall.yaml; the node restored"
uninstall_podvisor
[ "$suite_rc" = 0 ] || die "the suite failed (exit $suite_rc)"
