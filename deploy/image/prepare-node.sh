#!/bin/bash
# Init container of the podvisor DaemonSet. The host's /run is mounted at
# /host/run (HOST_RUN) with Bidirectional propagation.
#
# /run/netns becomes a shared mount point on the host before the containers
# bind it, as `ip netns add` does: the network namespaces podvisor
# bind-mounts there later then propagate to the libvirt and vms containers
# (HostToContainer), whose QEMU enters them.
#
# The bind is recursive (mount --rbind, MS_BIND|MS_REC, as
# runtime/network/netns.go does): the namespaces of pods already on the
# node are mounts under /run/netns, and a plain bind would cover them with
# empty files, leaving CNI unable to tear those pods down.
set -euo pipefail
run="${HOST_RUN:-/host/run}"
dir="$run/netns"
mkdir -p "$dir"
if ! mountpoint -q "$dir"; then
	mount --rbind "$dir" "$dir"
fi
mount --make-rshared "$dir"
mkdir -p "$run/podvisor"

if [ -c /dev/kvm ]; then
	echo "prepare-node: /dev/kvm present; podvisor --kvm auto decides whether it works"
else
	echo "prepare-node: no /dev/kvm on this node: VMs will use software emulation (TCG), which is slow"
fi
