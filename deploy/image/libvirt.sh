#!/bin/bash
# The libvirt container's command (deploy/daemonset.yaml): the qemu.conf
# settings podvisor needs (the block ci/libvirtd.sh manages on test
# machines; docs/libvirt.md says why), virtlogd in the background, libvirtd
# in the foreground so that the container lives and dies with it.
set -euo pipefail

begin="# BEGIN podvisor managed block (deploy/image/libvirt.sh)"
end="# END podvisor managed block"

# managed_block FILE KEYS: replaces FILE's managed block with stdin. Keys
# (an extended regexp of names) set outside the block would make libvirt
# read one value and ignore the other: refuse them, as ci/libvirtd.sh does.
# A restarted container gets a fresh filesystem, but an earlier block is
# dropped anyway so that the script is safe to run twice.
managed_block() {
	local conf="$1" keys="$2" tmp
	tmp="$(mktemp)"
	awk -v b="$begin" -v e="$end" '$0 == b {skip=1; next} $0 == e {skip=0; next} !skip {print}' "$conf" >"$tmp"
	cat "$tmp" >"$conf"
	rm -f "$tmp"
	if grep -nE "^[[:space:]]*($keys)[[:space:]]*=" "$conf"; then
		echo "libvirt.sh: $conf sets keys podvisor manages (above); remove them from the image" >&2
		exit 1
	fi
	{ echo "$begin"; cat; echo "$end"; } >>"$conf"
}

managed_block /etc/libvirt/qemu.conf 'user|group|clear_emulator_capabilities|namespaces|cgroup_controllers|cgroup_device_acl' <<BLOCK
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
BLOCK

# podvisor is this libvirtd's one client and carries every VM's calls on
# one connection; libvirtd stops reading a connection with
# max_client_requests (default 5) calls in flight. Starting a VM takes
# seconds on a loaded node, so with 8 VMs starting at once every other
# call of every pod (a console to open, a status) waited up to 26 s
# (e2e, 2026-12-04). Workers to match: most calls wait on a QEMU monitor,
# not on a CPU.
managed_block /etc/libvirt/libvirtd.conf 'max_client_requests|max_workers' <<BLOCK
max_workers = 64
max_client_requests = 64
BLOCK

mkdir -p /var/run/libvirt /var/lib/libvirt /var/log/libvirt
# Stale PID files from a previous container would stop the daemons starting.
rm -f /var/run/libvirtd.pid /var/run/virtlogd.pid /run/libvirtd.pid /run/virtlogd.pid

virtlogd -d
exec libvirtd
