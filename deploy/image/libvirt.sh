#!/bin/bash
# The libvirt container's command (deploy/daemonset.yaml): the qemu.conf
# settings podvisor needs (the block ci/libvirtd.sh manages on test
# machines; docs/libvirt.md says why), virtlogd in the background, libvirtd
# in the foreground so that the container lives and dies with it.
set -euo pipefail

conf=/etc/libvirt/qemu.conf
begin="# BEGIN podvisor managed block (deploy/image/libvirt.sh)"
end="# END podvisor managed block"

# Keys set outside the block would make libvirt read one value and ignore
# the other: refuse them, as ci/libvirtd.sh does.
# A restarted container gets a fresh filesystem, but drop an earlier block
# anyway so that the script is safe to run twice.
tmp="$(mktemp)"
awk -v b="$begin" -v e="$end" '$0 == b {skip=1; next} $0 == e {skip=0; next} !skip {print}' "$conf" >"$tmp"
cat "$tmp" >"$conf"
rm -f "$tmp"
if grep -nE '^[[:space:]]*(user|group|clear_emulator_capabilities|namespaces|cgroup_controllers|cgroup_device_acl)[[:space:]]*=' "$conf"; then
	echo "libvirt.sh: $conf sets keys podvisor manages (above); remove them from the image" >&2
	exit 1
fi
cat >>"$conf" <<BLOCK
$begin
user = "root"
group = "root"
clear_emulator_capabilities = 0
namespaces = [ ]
cgroup_controllers = [ "devices" ]
cgroup_device_acl = [
    "/dev/null", "/dev/full", "/dev/zero",
    "/dev/random", "/dev/urandom",
    "/dev/ptmx", "/dev/kvm",
    "/dev/net/tun"
]
$end
BLOCK

mkdir -p /var/run/libvirt /var/lib/libvirt /var/log/libvirt
# Stale PID files from a previous container would stop the daemons starting.
rm -f /var/run/libvirtd.pid /var/run/virtlogd.pid /run/libvirtd.pid /run/virtlogd.pid

virtlogd -d
exec libvirtd
