#!/usr/bin/env bash
# CI's e2e on a kind cluster with KVM (.github/workflows/e2e.yml): the same
# Ginkgo suite as `make e2e` (conformance/e2e), but podvisor is installed
# the way users install it, from deploy/, into a real cluster.
#
#   kind/setup.sh [extra ginkgo flags]
#
# Steps: build the image (deploy/image/Dockerfile), the test guest
# (ci/build-guest.sh), the test container images (ci/images/build.sh),
# podvisorctl and the suite (go test -tags e2e -c); create the cluster (kind/cluster.yaml);
# load the images; apply deploy/ through a kustomize overlay that sets the
# image, as docs/install.md has operators do (kubectl apply -k); add a translation for
# the test guest; wait for criproxy (node setup) and podvisor; run the suite
# inside the node, where it reaches podvisor's socket, state directory and
# (through kind/virsh) libvirt, as ci/e2e.sh's suite does on the machine.
#
# Needs docker, kind (v0.33.0), kubectl and go; not root. It cannot run on
# our development machines (no privileged containers): docs/deploy.md.
# Env: CLUSTER (default podvisor-e2e), KEEP=1 keeps the cluster,
# PODVISOR_GUEST_DIR (default /var/tmp/podvisor-test-guest), E2E_TIMEOUT
# (default 45m), IMAGE (default podvisor/podvisor:VERSION, the version of
# internal/version/VERSION).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cluster=${CLUSTER:-podvisor-e2e}
image=${IMAGE:-podvisor/podvisor:$(tr -d '[:space:]' <"$root/internal/version/VERSION")}
guest_dir=${PODVISOR_GUEST_DIR:-/var/tmp/podvisor-test-guest}
node=$cluster-control-plane
work=$(mktemp -d /tmp/podvisor-kind.XXXXXX)
t0=$(date +%s)

say() { printf '\n\033[1m[%4ds] %s\033[0m\n' "$(($(date +%s) - t0))" "$*"; }
die() { echo "kind/setup.sh: $*" >&2; exit 1; }
for tool in docker kind kubectl go; do
	command -v "$tool" >/dev/null || die "$tool not found"
done

kubectl() { command kubectl --context "kind-$cluster" "$@"; }
in_node() { docker exec -i "$node" "$@"; }

cleanup() {
	rc=$?
	if [ $rc -ne 0 ]; then
		say "failed: node state for the log"
		kubectl -n kube-system get pods -o wide || true
		kubectl -n kube-system logs ds/podvisor -c podvisor --tail=200 || true
		kubectl -n kube-system logs ds/podvisor -c libvirt --tail=100 || true
		kubectl -n kube-system logs ds/podvisor-node-setup -c install-criproxy || true
		in_node journalctl -u criproxy -u kubelet --no-pager -n 100 || true
	fi
	if [ "${KEEP:-0}" != 1 ]; then
		kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
		rm -rf "$work"
	else
		echo "kept cluster $cluster and $work"
	fi
	exit $rc
}
trap cleanup EXIT

say "builds: image $image, test guest, test images, the suite"
docker build -f "$root/deploy/image/Dockerfile" -t "$image" "$root"
if [ ! -f "$guest_dir/podvisor-test-guest.qcow2" ]; then
	# ci/build-guest.sh downloads its kernel package (root). sudo's
	# secure_path would hide setup-go's Go: pass PATH.
	sudo env "PATH=$PATH" "$root/ci/build-guest.sh" "$guest_dir" >/dev/null
fi
"$root/ci/images/build.sh" "$work/images" podvisor-e2e.local >/dev/null
# shellcheck disable=SC1091
. "$work/images/images.env"
(cd "$root" && CGO_ENABLED=0 go test -tags e2e -c -o "$work/e2e.test" ./conformance/e2e/)
(cd "$root" && CGO_ENABLED=0 go build -o "$work/podvisorctl" ./cmd/podvisorctl)

say "cluster $cluster (kind/cluster.yaml)"
[ -c /dev/kvm ] || echo "warning: no /dev/kvm on this machine: VMs will run under TCG (slow)"
kind create cluster --name "$cluster" --config "$root/kind/cluster.yaml" --wait 5m
kind load docker-image --name "$cluster" "$image"
for t in "$work"/images/*.tar; do
	kind load image-archive --name "$cluster" "$t"
done

say "podvisor from deploy/"
# The test guest, served to podvisor as a file under its state directory
# (the DaemonSet mounts the node's /var/lib/podvisor).
in_node mkdir -p /var/lib/podvisor/e2e
docker cp "$guest_dir/podvisor-test-guest.qcow2" "$node:/var/lib/podvisor/e2e/podvisor-test-guest.qcow2"
# The operator's way (docs/install.md): an overlay naming the image.
mkdir -p "$work/overlay"
cat >"$work/overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $(realpath --relative-to="$work/overlay" "$root/deploy")
images:
- name: podvisor/podvisor
  newName: ${image%:*}
  newTag: ${image##*:}
# The VirtletImageMapping spec's URL is the guest server on the node's
# loopback (mapping objects may not name files): podvisor may reach it.
patches:
- target: {kind: DaemonSet, name: podvisor}
  patch: |-
    - {op: test, path: /spec/template/spec/containers/0/name, value: podvisor}
    - {op: add, path: /spec/template/spec/containers/0/command/-, value: --image-download-allow-networks=127.0.0.1/32}
YAML
kubectl apply -k "$work/overlay"
# The test guest over http on the node's loopback, from the busybox test
# image (its static busybox has httpd), host network.
kubectl -n kube-system apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata: {name: podvisor-e2e-guest-server, namespace: kube-system}
spec:
  hostNetwork: true
  nodeName: $node
  containers:
  - name: httpd
    image: $BUSYBOX_IMAGE
    command: [busybox, httpd, -f, -p, 127.0.0.1:8099, -h, /srv]
    volumeMounts: [{name: guest, mountPath: /srv, readOnly: true}]
  volumes: [{name: guest, hostPath: {path: /var/lib/podvisor/e2e, type: Directory}}]
YAML
kubectl -n kube-system wait --for=condition=Ready pod/podvisor-e2e-guest-server --timeout=5m
# The suite's image name, as in ci/e2e.sh (kubelet adds ":latest").
kubectl -n kube-system create configmap virtlet-image-translations \
	--from-literal=images.yaml="$(kubectl -n kube-system get configmap virtlet-image-translations -o jsonpath='{.data.images\.yaml}')" \
	--from-literal=e2e.yaml="translations:
- regexp: '^podvisor/testvm(:latest)?\$'
  url: file:///var/lib/podvisor/e2e/podvisor-test-guest.qcow2
" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n kube-system rollout status ds/podvisor-node-setup --timeout=5m
# kubelet restarted onto criproxy: wait until the node is back.
kubectl wait --for=condition=Ready "node/$node" --timeout=5m
in_node grep -q criproxy.sock /etc/kubernetes/kubelet.conf.d/99-podvisor-criproxy.conf || die "kubelet was not moved onto criproxy"
kubectl -n kube-system rollout status ds/podvisor --timeout=10m

say "the Ginkgo suite (conformance/e2e) inside the node"
docker cp "$work/e2e.test" "$node:/usr/local/bin/podvisor-e2e.test"
docker cp "$root/kind/virsh" "$node:/usr/local/bin/virsh"
docker cp "$work/podvisorctl" "$node:/usr/local/bin/podvisorctl"
in_node env KUBECONFIG=/etc/kubernetes/admin.conf \
	PODVISOR_E2E_KUBECTL=/usr/bin/kubectl \
	PODVISOR_E2E_PODVISORCTL=/usr/local/bin/podvisorctl \
	PODVISOR_E2E_NODE="$node" \
	PODVISOR_E2E_VM_IMAGE=virtlet.cloud/podvisor/testvm \
	PODVISOR_E2E_VM_IMAGE_URL=http://127.0.0.1:8099/podvisor-test-guest.qcow2 \
	PODVISOR_E2E_CONTAINER_IMAGE="$BUSYBOX_IMAGE" \
	PODVISOR_E2E_PODVISOR_SOCKET=/run/podvisor/podvisor.sock \
	PODVISOR_E2E_STATE_DIR=/var/lib/podvisor \
	/usr/local/bin/podvisor-e2e.test -test.v -test.timeout "${E2E_TIMEOUT:-45m}" -ginkgo.v "$@"
