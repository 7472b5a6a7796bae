#!/bin/bash
# The vms container's command (deploy/daemonset.yaml). QEMU processes join
# this container's mount, UTS and IPC namespaces (podvisor-vms-emulator
# finds them through the PID written here) so that they keep a stable view
# of the node's files when the libvirt container restarts.
set -euo pipefail
pidfile=/var/lib/podvisor/vms.pid
mkdir -p "$(dirname "$pidfile")"
echo $$ >"$pidfile.tmp"
mv "$pidfile.tmp" "$pidfile"
trap 'rm -f "$pidfile"; exit 0' TERM INT
# sleep in the background so that the trap runs as soon as TERM arrives.
while :; do
	sleep 3600 &
	wait $! || true
done
