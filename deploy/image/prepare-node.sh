#!/bin/bash
# Init container of the podvisor DaemonSet. The host's /run is mounted at
# /host/run with Bidirectional propagation.
#
# /run/netns becomes a shared mount point on the host before the containers
# bind it, as `ip netns add` does: the network namespaces podvisor
# bind-mounts there later then propagate to the libvirt and vms containers
# (HostToContainer), whose QEMU enters them.
set -euo pipefail
dir=/host/run/netns
mkdir -p "$dir"
if ! mountpoint -q "$dir"; then
	mount --bind "$dir" "$dir"
fi
mount --make-shared "$dir"
mkdir -p /host/run/podvisor

if [ -c /dev/kvm ]; then
	echo "prepare-node: /dev/kvm present; podvisor --kvm auto decides whether it works"
else
	echo "prepare-node: no /dev/kvm on this node: VMs will use software emulation (TCG), which is slow"
fi
