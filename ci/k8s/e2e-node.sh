# shellcheck shell=bash disable=SC2154,SC2034
# Sourced by ci/e2e.sh: brings up the e2e node (network namespace, control
# plane, containerd 2.x, kubelet laid out as kubeadm lays it out) and
# defines the install and uninstall helpers. Uses ci/e2e.sh's variables.

say "the node: network namespace $netns, node IP $node_ip"
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
ls /run/netns >"$work/netns-before"
# systemd makes / a shared mount at boot, and the DaemonSet's volumes with
# mount propagation need that (containerd refuses HostToContainer from a
# private mount). This machine's / is private: shared for the run, private
# again at the end.
if ! grep -qE '^[0-9]+ [0-9]+ [^ ]+ / / [^ ]+ shared:' /proc/self/mountinfo; then
	mount --make-shared /
	made_root_shared=1
fi

say "PKI, etcd, kube-apiserver, controller-manager, scheduler (Kubernetes $("$k8sbin/kubectl" version --client -o json | sed -n 's/.*"gitVersion": "\(.*\)".*/\1/p' | head -n1))"
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
# The ServiceAccount controller creates it; waiting proves the controller-manager works.
wait_for "the default ServiceAccount" 180 kubectl -n default get serviceaccount default

say "containerd $("$ctrdbin/containerd" --version | awk '{print $3}') and the node's CNI network (10.240.88.0/24, shared by containers and VMs)"
# The node's CNI configuration and plugins where the DaemonSet mounts them.
mkdir -p /etc/cni/net.d /opt/cni/bin /var/lib/cni
for p in bridge host-local loopback portmap; do cp "/usr/lib/cni/$p" /opt/cni/bin/; done
cat >/etc/cni/net.d/10-podvisor-e2e.conflist <<JSON
{"cniVersion": "1.0.0", "name": "$cni_net", "plugins": [
  {"type": "bridge", "bridge": "pve2e0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.240.88.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
# A second network that VM pods name by annotation (Multus's
# k8s.v1.cni.cncf.io/networks): podvisor finds it by name in the same
# directory; the 90- file never sorts first, so it is nobody's default.
cat >/etc/cni/net.d/90-$cni_net-b.conflist <<JSON
{"cniVersion": "1.0.0", "name": "$cni_net-b", "plugins": [
  {"type": "bridge", "bridge": "pve2e1", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.240.89.0/24"}]]}}]}
JSON
# containerd 2.x: config version 3, the CRI plugin split into
# io.containerd.cri.v1.images / .runtime and io.containerd.grpc.v1.cri.
cat >"$work/containerd.toml" <<TOML
version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[debug]
  address = ""
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"
[plugins.'io.containerd.cri.v1.runtime']
  # Root here lacks CAP_SYS_RESOURCE: no negative oom_score_adj.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/opt/cni/bin"]
    conf_dir = "/etc/cni/net.d"
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
TOML
run httpd busybox httpd -f -p 127.0.0.1:8099 -h "$guest_dir"
# A registry on the node's loopback with the test guest as a KubeVirt
# containerDisk (one layer, the disk under /disk/), pushed with skopeo: the
# containerDisk spec pulls it by RuntimeClass (containerdisk_test.go).
# shellcheck source=ci/registry.inc
. "$root/ci/registry.inc"
registry_config "$work/registry.yml" "$work/registry" "$registry"
run registry docker-registry serve "$work/registry.yml"
wait_for "the registry on $registry" 60 in_node curl -fsS "http://$registry/v2/"
mkdir -p "$work/containerdisk/disk"
cp "$guest_dir/podvisor-test-guest.qcow2" "$work/containerdisk/disk/disk.qcow2"
(cd "$root" && go build -o "$work/bin/mkimage" ./ci/images/mkimage)
"$work/bin/mkimage" -o "$work/containerdisk.tar" -tag "$containerdisk" "$work/containerdisk"
in_node skopeo copy --quiet --dest-tls-verify=false "docker-archive:$work/containerdisk.tar" "docker://$containerdisk"
containerdisk_digest=$(in_node skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$containerdisk")
rm -rf "$work/containerdisk" "$work/containerdisk.tar"
# The shim is found on PATH; runc is Debian's.
run containerd env PATH="$ctrdbin:$PATH" "$ctrdbin/containerd" --config "$work/containerd.toml"
wait_for containerd 60 ctr_ version
for t in "$work"/images/*.tar "$image_tar"; do
	ctr_ -n k8s.io images import "$t" >/dev/null || die "importing $t into containerd failed"
done
# Never `cmd | grep -q` under pipefail: grep exits at its first match, the
# writer then dies of SIGPIPE and the pipeline fails although it matched.
images=$(ctr_ -n k8s.io images ls -q)
grep -qxF "$image_ref" <<<"$images" || die "$image_tar did not import as $image_ref"

say "kubelet (node $node, $node_ip) on containerd, laid out as kubeadm lays it out"
mkdir -p /var/lib/kubelet /etc/kubernetes
cp "$pki/kubelet.kubeconfig" /etc/kubernetes/kubelet.conf
cat >/var/lib/kubelet/config.yaml <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
readOnlyPort: 0
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
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
# kubeadm 1.37 keeps the node's CRI socket here and writes it into
# config.yaml at every `kubeadm upgrade`.
echo 'containerRuntimeEndpoint: "unix:///run/containerd/containerd.sock"' >/var/lib/kubelet/instance-config.yaml
echo "KUBELET_KUBEADM_ARGS=\"--hostname-override=$node --node-ip=$node_ip --v=2\"" >/var/lib/kubelet/kubeadm-flags.env
node_files() { # the files the node setup may change, with their contents
	local f
	for f in /var/lib/kubelet/config.yaml /var/lib/kubelet/kubeadm-flags.env /var/lib/kubelet/instance-config.yaml \
		/etc/default/kubelet /etc/kubernetes/kubelet.conf.d /usr/local/bin/criproxy /etc/systemd/system/criproxy.service; do
		if [ -d "$f" ]; then echo "$f: directory: $(find "$f" -mindepth 1 -printf '%P ' | sort)"; elif [ -e "$f" ]; then echo "$f: $(sha256sum <"$f" | cut -c1-16)"; else echo "$f: absent"; fi
	done
}
node_files >"$work/node-files-before"
"$root/ci/k8s/node-services.sh" "$netns" "$k8sbin/kubelet" "$logs" "$svc" 9>&- &
svcmgr=$!
wait_for "node $node Ready" 300 kubectl wait --for=condition=Ready "node/$node" --timeout=5s
kubectl get nodes -o wide

# kubelet_endpoint_is EP: the running kubelet's configuration (its
# /configz, through the API server) names EP as its runtime endpoint.
kubelet_endpoint_is() {
	local configz
	configz=$(kubectl get --raw "/api/v1/nodes/$node/proxy/configz") || return
	grep -qF "\"containerRuntimeEndpoint\":\"$1\"" <<<"$configz"
}

# write_overlay DIR DEPLOY: the operator's overlay for this node: the image
# built here, and what this cluster lacks or must keep apart:
# - libvirt's hostPaths under $libvirt_host (a libvirtd of make test may
#   use the standard ones on this machine);
# - podvisor's kubeconfig at the API server's address (no cluster DNS or
#   kube-proxy here to resolve kubernetes.default.svc);
# - the test guest's image translation;
# - the node's plain-http registry ($registry) as insecure;
# - an empty /lib/modules where the machine has none.
write_overlay() {
	local dir=$1 base=$2 modules_patch=""
	mkdir -p "$dir"
	# This machine's kernel has no /lib/modules, which a real node has.
	[ -d /lib/modules ] || modules_patch="      - {name: modules, hostPath: {path: /var/lib/podvisor-e2e/lib-modules, type: DirectoryOrCreate}}"
	cat >"$dir/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $(realpath --relative-to="$dir" "$base")
images:
- name: podvisor/podvisor
  newName: docker.io/podvisor/podvisor
  newTag: "$version"
patches:
- path: libvirt-paths.yaml
- path: kubeconfig.yaml
- path: translations.yaml
# The test guest is served on the node's loopback (127.0.0.1:8099), which
# image downloads may not reach unless allowed.
- target: {kind: DaemonSet, name: podvisor}
  patch: |-
    - {op: test, path: /spec/template/spec/containers/0/name, value: podvisor}
    - {op: add, path: /spec/template/spec/containers/0/command/-, value: --image-download-allow-networks=127.0.0.1/32}
    - {op: add, path: /spec/template/spec/containers/0/command/-, value: --image-insecure-registries=$registry}
YAML
	cat >"$dir/libvirt-paths.yaml" <<YAML
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: podvisor, namespace: kube-system}
spec:
  template:
    spec:
      volumes:
      - {name: libvirt-run, hostPath: {path: $libvirt_host/run, type: DirectoryOrCreate}}
      - {name: libvirt-etc-qemu, hostPath: {path: $libvirt_host/etc-qemu, type: DirectoryOrCreate}}
      - {name: libvirt-lib, hostPath: {path: $libvirt_host/lib, type: DirectoryOrCreate}}
      - {name: libvirt-cache, hostPath: {path: $libvirt_host/cache, type: DirectoryOrCreate}}
      - {name: libvirt-log, hostPath: {path: $libvirt_host/log, type: DirectoryOrCreate}}
$modules_patch
YAML
	sed 's#server: https://kubernetes.default.svc#server: https://127.0.0.1:6443#' <<'YAML' >"$dir/kubeconfig.yaml"
apiVersion: v1
kind: ConfigMap
metadata: {name: podvisor-kubeconfig, namespace: kube-system}
data:
  kubeconfig: |
    apiVersion: v1
    kind: Config
    clusters:
    - name: in-cluster
      cluster:
        server: https://kubernetes.default.svc
        certificate-authority: /etc/podvisor/serviceaccount/ca.crt
    users:
    - name: podvisor
      user:
        tokenFile: /etc/podvisor/serviceaccount/token
    contexts:
    - name: in-cluster
      context: {cluster: in-cluster, user: podvisor}
    current-context: in-cluster
YAML
	cat >"$dir/translations.yaml" <<YAML
apiVersion: v1
kind: ConfigMap
metadata: {name: virtlet-image-translations, namespace: kube-system}
data:
  e2e.yaml: |
    translations:
    - name: podvisor/testvm
      url: http://127.0.0.1:8099/podvisor-test-guest.qcow2
    - regexp: '^checkpoint/([a-z0-9][a-z0-9._-]*\.tar)$'
      url: file:///var/lib/kubelet/checkpoints/\$1
YAML
}

no_podvisor_pods() {
	local pods
	pods=$(kubectl -n kube-system get pods -l app.kubernetes.io/name=podvisor -o name) && [ -z "$pods" ]
}
criproxy_stopped() { ! [ -f "$svc/criproxy.pid" ]; }

# uninstall_podvisor: what docs/deploy.md tells an operator, then checks
# that the node's kubelet files are as they were before the install.
uninstall_podvisor() {
	# VM pods first (docs/deploy.md): a suite that stopped half-way leaves
	# its namespace, and without podvisor its VMs would run on.
	local ns
	for ns in $(kubectl get ns -o name | sed -n 's#^namespace/\(podvisor-e2e-.*\)#\1#p'); do
		kubectl delete ns "$ns" --wait=true --timeout=4m >/dev/null
	done
	kubectl delete -k "$work/overlay" --wait=true --timeout=5m >/dev/null
	wait_for "the podvisor pods gone" 300 no_podvisor_pods
	mkdir -p "$work/uninstall"
	# kustomize reads files below the kustomization only.
	cp "$root/deploy/uninstall/node-uninstall.yaml" "$work/uninstall/"
	cat >"$work/uninstall/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- node-uninstall.yaml
images:
- name: podvisor/podvisor
  newName: docker.io/podvisor/podvisor
  newTag: "$version"
YAML
	kubectl apply -k "$work/uninstall" >/dev/null
	kubectl -n kube-system rollout status ds/podvisor-node-uninstall --timeout=5m
	wait_for "kubelet back on containerd" 180 kubelet_endpoint_is unix:///run/containerd/containerd.sock
	wait_for "node $node Ready on containerd" 180 kubectl wait --for=condition=Ready "node/$node" --timeout=5s
	kubectl delete -k "$work/uninstall" --wait=true --timeout=3m >/dev/null
	wait_for "criproxy stopped" 60 criproxy_stopped
	node_files >"$work/node-files-after"
	if ! diff -u "$work/node-files-before" "$work/node-files-after"; then
		die "the uninstall did not restore the node's kubelet files (above: before install, after uninstall)"
	fi
	echo "node restored: $(wc -l <"$work/node-files-after") files as before the install; kubelet on containerd"
}
