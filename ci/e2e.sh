#!/usr/bin/env bash
# make e2e: a one-node Kubernetes v1.34 on this machine whose kubelet talks
# to bin/criproxy, in front of containerd (container pods) and podvisor on
# real libvirt/QEMU (VM pods), then the Ginkgo suite in conformance/e2e.
#
# Every daemon of the node runs in a private network namespace ("the node"):
# etcd, kube-apiserver (on the namespace's 127.0.0.1), controller-manager,
# scheduler, containerd, podvisor, criproxy, kubelet (node IP 10.99.0.1 on a
# veth inside it) and the busybox httpd that serves the test guest image.
# Pod networks are CNI bridges inside that namespace; the suite runs there
# too, so it reaches pod IPs. Only libvirtd runs outside (ci/libvirtd.sh):
# QEMU enters each pod's namespace through podvisor-vmwrapper.
# Everything started here is stopped here by PID, on success and on failure.
#
# Root. Usage: ci/e2e.sh [extra ginkgo flags, e.g. -ginkgo.focus=attach]
# Env: KEEP=1 keeps the work dir (logs, certs); KEEP_LIBVIRTD=1 leaves a
# libvirtd this script started running; PODVISOR_GUEST_DIR (default
# /var/tmp/podvisor-test-guest); E2E_TIMEOUT (default 45m).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export PATH=/usr/local/go/bin:$PATH
k8sbin=$root/_build/k8s/bin
crictl=${CRICTL:-$root/_build/tools/crictl}
guest_dir=${PODVISOR_GUEST_DIR:-/var/tmp/podvisor-test-guest}
node=podvisor-e2e
node_ip=10.99.0.1
t0=$(date +%s)

say() { printf '\n\033[1m[%4ds] %s\033[0m\n' "$(($(date +%s) - t0))" "$*"; }

[ "$(id -u)" = 0 ] || { echo "e2e: run as root (network namespaces, kubelet, containerd, libvirt)" >&2; exit 1; }

say "dependencies (ci/install-deps.sh) and builds"
"$root/ci/install-deps.sh"
[ -x "$root/bin/podvisor" ] && [ -x "$root/bin/criproxy" ] && [ -x "$root/bin/podvisor-vmwrapper" ] && [ -x "$root/bin/podvisorctl" ] ||
	{ echo "e2e: bin/podvisor, bin/podvisor-vmwrapper, bin/criproxy or bin/podvisorctl missing: run make build" >&2; exit 1; }
[ -x "$crictl" ] || { echo "e2e: crictl missing at $crictl: run make tools" >&2; exit 1; }
"$root/ci/k8s/build.sh"
"$root/ci/build-guest.sh" "$guest_dir" >/dev/null
[ -f "$guest_dir/podvisor-test-guest.qcow2" ] || { echo "e2e: no test guest in $guest_dir" >&2; exit 1; }

# One run at a time: kubelets share the machine's /kubepods cgroups.
exec 9>/run/podvisor-e2e.lock
flock -w 3600 9 || { echo "e2e: another ci/e2e.sh held /run/podvisor-e2e.lock for an hour" >&2; exit 1; }

work=$(mktemp -d /tmp/podvisor-e2e.XXXXXX)
netns=pve2e-$$
pids=()
names=()
started_libvirtd=0
logs=$work/logs
mkdir -p "$logs"

in_node() { nsenter --net="/run/netns/$netns" "$@"; }
kubectl() { in_node "$k8sbin/kubectl" --kubeconfig "$work/pki/admin.kubeconfig" "$@"; }
cri() { in_node "$crictl" --runtime-endpoint "unix://$work/criproxy.sock" --image-endpoint "unix://$work/criproxy.sock" --timeout 120s "$@"; }

# run NAME CMD...: starts a daemon in the node namespace, logging to logs/NAME.log.
run() {
	local name=$1
	shift
	# nsenter itself, not a function: $! must be the daemon's PID
	# (nsenter execs it), not that of a subshell that a signal would orphan.
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
	for n in "${names[@]}"; do
		echo "--- $n (last 25 lines of $logs/$n.log)" >&2
		tail -n 25 "$logs/$n.log" >&2 || true
	done
}

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	[ "$rc" = 0 ] || dump_logs
	say "teardown"
	local i
	# kubelet first: nothing may recreate pods while they are removed.
	for i in "${!names[@]}"; do [ "${names[$i]}" = kubelet ] && stop_pid kubelet "${pids[$i]}"; done
	# Every pod left, through the proxy: VMs destroyed by podvisor,
	# containers by containerd, their networks deleted.
	if [ -S "$work/criproxy.sock" ]; then
		cri rmp -fa >/dev/null 2>&1
	fi
	if [ -S "$work/containerd.sock" ]; then
		for t in $(in_node ctr -a "$work/containerd.sock" -n k8s.io tasks ls -q 2>/dev/null); do
			in_node ctr -a "$work/containerd.sock" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1
		done
	fi
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${names[$i]}" "${pids[$i]}"; done
	# kubelet's and containerd's mounts under the work dir, deepest first.
	awk -v w="$work" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done
	# kubelet's cgroups (cgroupfs driver), empty once its pods are gone.
	find /sys/fs/cgroup/*/kubepods -depth -type d -exec rmdir {} + 2>/dev/null
	ip netns del "$netns" 2>/dev/null
	if [ "$started_libvirtd" = 1 ] && [ -z "${KEEP_LIBVIRTD:-}" ]; then "$root/ci/libvirtd.sh" stop >/dev/null 2>&1; fi
	if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
	say "e2e: $([ "$rc" = 0 ] && echo PASS || echo "FAIL (exit $rc)") after $(($(date +%s) - t0)) s"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "the suite's test binary and the container images"
(cd "$root" && go test -tags e2e -c -o "$work/e2e.test" ./conformance/e2e/)
"$root/ci/images/build.sh" "$work/images" podvisor-e2e.local >/dev/null
# shellcheck disable=SC1091
. "$work/images/images.env"

# wait_for DESCRIPTION SECONDS CMD...: polls CMD once a second.
wait_for() {
	local what=$1 secs=$2
	shift 2
	for _ in $(seq 1 "$secs"); do
		"$@" >/dev/null 2>&1 && return 0
		for i in "${!pids[@]}"; do
			kill -0 "${pids[$i]}" 2>/dev/null || { echo "e2e: ${names[$i]} exited while waiting for $what" >&2; exit 1; }
		done
		sleep 1
	done
	echo "e2e: timed out after ${secs}s waiting for $what" >&2
	exit 1
}

say "libvirtd (root namespace) and the node network namespace $netns"
"$root/ci/libvirtd.sh" status 2>/dev/null | grep '^libvirtd: running' >/dev/null || started_libvirtd=1
# A libvirtd started here outlives the run: it must not hold the lock.
"$root/ci/libvirtd.sh" start 9>&-
ip netns add "$netns"
in_node ip link set lo up
# The node's address, on a veth pair that stays inside the namespace (the
# kernel here has no dummy interfaces). Its default route leads nowhere but
# lets kube-apiserver and kubelet find "the host's" address.
in_node ip link add node0 type veth peer name node0p
in_node ip addr add "$node_ip/24" dev node0
in_node ip link set node0p up
in_node ip link set node0 up
in_node ip route add default dev node0

say "PKI, etcd, kube-apiserver, controller-manager, scheduler"
"$root/ci/k8s/pki.sh" "$work/pki" "$node" "$node_ip" https://127.0.0.1:6443
pki=$work/pki
run etcd etcd --name e2e --data-dir "$work/etcd" \
	--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
	--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	--initial-cluster e2e=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381
wait_for etcd 60 in_node etcdctl --endpoints http://127.0.0.1:2379 endpoint health
run kube-apiserver "$k8sbin/kube-apiserver" --etcd-servers http://127.0.0.1:2379 \
	--bind-address 127.0.0.1 --secure-port 6443 --advertise-address "$node_ip" \
	--service-cluster-ip-range 10.96.0.0/24 --allow-privileged=true \
	--authorization-mode Node,RBAC --client-ca-file "$pki/ca.crt" \
	--tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
	--kubelet-preferred-address-types InternalIP \
	--kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key"
wait_for "kube-apiserver /readyz" 300 kubectl get --raw /readyz
run kube-controller-manager "$k8sbin/kube-controller-manager" --kubeconfig "$pki/controller-manager.kubeconfig" \
	--authentication-kubeconfig "$pki/controller-manager.kubeconfig" --authorization-kubeconfig "$pki/controller-manager.kubeconfig" \
	--bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
	--service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt"
run kube-scheduler "$k8sbin/kube-scheduler" --kubeconfig "$pki/scheduler.kubeconfig" \
	--authentication-kubeconfig "$pki/scheduler.kubeconfig" --authorization-kubeconfig "$pki/scheduler.kubeconfig" \
	--bind-address 127.0.0.1 --leader-elect=false
# Virtlet's CRDs; podvisor may read ConfigMaps and Secrets (cloud-init data
# sources) and list and watch VirtletImageMappings, no more.
kubectl apply -f "$root/deploy/crds.yaml" >/dev/null
kubectl wait --for condition=established --timeout=60s crd/virtletimagemappings.virtlet.k8s >/dev/null
kubectl create clusterrole podvisor-datasource --verb=get --resource=configmaps,secrets >/dev/null
kubectl create clusterrolebinding podvisor-datasource --clusterrole=podvisor-datasource --user=podvisor >/dev/null
kubectl create clusterrole podvisor-imagemappings --verb=get,list,watch --resource=virtletimagemappings.virtlet.k8s >/dev/null
kubectl create clusterrolebinding podvisor-imagemappings --clusterrole=podvisor-imagemappings --user=podvisor >/dev/null
# The ServiceAccount controller creates it; waiting proves the controller-manager works.
wait_for "the default ServiceAccount" 180 kubectl -n default get serviceaccount default

say "containerd (pods 10.240.88.0/24), podvisor (VMs 10.240.89.0/24), criproxy"
mkdir -p "$work/cni-containerd" "$work/cni-podvisor" "$work/translations"
cat >"$work/containerd.toml" <<TOML
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
[grpc]
  address = "$work/containerd.sock"
[debug]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Root here lacks CAP_SYS_RESOURCE: no negative oom_score_adj.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$work/cni-containerd"
TOML
cat >"$work/cni-containerd/10-e2e.conflist" <<JSON
{"cniVersion": "0.4.0", "name": "e2e-containers", "plugins": [
  {"type": "bridge", "bridge": "pve2ec0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.240.88.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$work/ipam-containerd"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
cat >"$work/cni-podvisor/10-e2e.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "e2e-vms", "plugins": [
  {"type": "bridge", "bridge": "pve2ev0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.240.89.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$work/ipam-podvisor"}}]}
JSON
# A Virtlet-style translation by name (kubelet asks for "<name>:latest").
cat >"$work/translations/images.yaml" <<YAML
translations:
- name: podvisor/testvm
  url: http://127.0.0.1:8099/podvisor-test-guest.qcow2
YAML
run httpd busybox httpd -f -p 127.0.0.1:8099 -h "$guest_dir"
run containerd containerd --config "$work/containerd.toml"
wait_for containerd 60 in_node ctr -a "$work/containerd.sock" version
for t in "$work"/images/*.tar; do
	in_node ctr -a "$work/containerd.sock" -n k8s.io images import "$t" >/dev/null
done
run podvisor "$root/bin/podvisor" --hypervisor libvirt --network cni --cni-conf-dir "$work/cni-podvisor" \
	--listen "unix://$work/podvisor.sock" --state-dir "$work/podvisor" \
	--image-translations-dir "$work/translations" --kubeconfig "$pki/podvisor.kubeconfig"
wait_for podvisor 120 in_node "$crictl" --runtime-endpoint "unix://$work/podvisor.sock" version
run criproxy "$root/bin/criproxy" --listen "unix://$work/criproxy.sock" \
	--primary "unix://$work/containerd.sock" --runtime "podvisor=unix://$work/podvisor.sock"
wait_for criproxy 60 cri version

say "kubelet (node $node, $node_ip) on criproxy"
mkdir -p "$work/kubelet" "$work/pod-logs"
cat >"$work/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
readOnlyPort: 0
containerRuntimeEndpoint: unix://$work/criproxy.sock
imageServiceEndpoint: unix://$work/criproxy.sock
podLogsDir: $work/pod-logs
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: AlwaysAllow}
clusterDNS: [10.96.0.10]
clusterDomain: cluster.local
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
YAML
run kubelet "$k8sbin/kubelet" --config "$work/kubelet.yaml" --kubeconfig "$pki/kubelet.kubeconfig" \
	--root-dir "$work/kubelet" --hostname-override "$node" --node-ip "$node_ip" --v 2
wait_for "node $node Ready" 300 kubectl wait --for=condition=Ready "node/$node" --timeout=5s
kubectl get nodes -o wide

say "the Ginkgo suite (conformance/e2e)"
in_node env KUBECONFIG="$pki/admin.kubeconfig" \
	PODVISOR_E2E_KUBECTL="$k8sbin/kubectl" \
	PODVISOR_E2E_PODVISORCTL="$root/bin/podvisorctl" \
	PODVISOR_E2E_NODE="$node" \
	PODVISOR_E2E_VM_IMAGE=virtlet.cloud/podvisor/testvm \
	PODVISOR_E2E_VM_IMAGE_URL=http://127.0.0.1:8099/podvisor-test-guest.qcow2 \
	PODVISOR_E2E_CONTAINER_IMAGE="$BUSYBOX_IMAGE" \
	PODVISOR_E2E_PODVISOR_SOCKET="$work/podvisor.sock" \
	PODVISOR_E2E_STATE_DIR="$work/podvisor" \
	"$work/e2e.test" -test.v -test.timeout "${E2E_TIMEOUT:-45m}" -ginkgo.v "$@"
