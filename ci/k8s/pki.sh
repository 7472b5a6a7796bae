#!/bin/bash
# Generates the PKI of the e2e one-node cluster with openssl: a CA, the
# apiserver's serving cert, client certs (admin, controller-manager,
# scheduler, kubelet, podvisor, apiserver->kubelet), the service-account
# key pair,
# and a kubeconfig per client.
#
# Usage: ci/k8s/pki.sh DIR NODE_NAME NODE_IP APISERVER_URL
set -euo pipefail

dir=${1:?usage: ci/k8s/pki.sh DIR NODE_NAME NODE_IP APISERVER_URL}
node=${2:?node name}
node_ip=${3:?node IP}
server=${4:?apiserver URL}
mkdir -p "$dir"
cd "$dir"

ossl() { openssl "$@" 2>/dev/null; }

ossl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=podvisor-e2e-ca"

# cert NAME SUBJECT [SAN] [EXTKEYUSAGE]
cert() {
	local name=$1 subj=$2 san=${3:-} eku=${4:-clientAuth}
	{
		echo "basicConstraints=CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$eku"
		[ -n "$san" ] && echo "subjectAltName=$san"
	} >"$name.ext"
	ossl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj"
	ossl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" -days 2 -extfile "$name.ext"
	rm -f "$name.csr" "$name.ext"
}

cert apiserver "/CN=kube-apiserver" \
	"DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,IP:$node_ip" serverAuth
cert kubelet-serving "/CN=$node" "DNS:$node,IP:$node_ip,IP:127.0.0.1" serverAuth
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
cert admin "/O=system:masters/CN=podvisor-e2e-admin"
cert controller-manager "/CN=system:kube-controller-manager"
cert scheduler "/CN=system:kube-scheduler"
cert kubelet "/O=system:nodes/CN=system:node:$node"
# podvisor reads ConfigMaps and Secrets for cloud-init data sources and
# watches VirtletImageMappings; ci/e2e.sh grants this identity exactly that
# (ClusterRoles podvisor-datasource and podvisor-imagemappings).
cert podvisor "/CN=podvisor"

ossl genrsa -out sa.key 2048
ossl rsa -in sa.key -pubout -out sa.pub

kubeconfig() { # NAME CERT
	cat >"$1.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: $server
    certificate-authority: $dir/ca.crt
users:
- name: $2
  user:
    client-certificate: $dir/$2.crt
    client-key: $dir/$2.key
contexts:
- name: e2e
  context: {cluster: e2e, user: $2}
current-context: e2e
YAML
}
kubeconfig admin admin
kubeconfig controller-manager controller-manager
kubeconfig scheduler scheduler
kubeconfig kubelet kubelet
kubeconfig podvisor podvisor
chmod 600 ./*.key
