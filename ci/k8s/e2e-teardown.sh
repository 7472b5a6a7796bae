# shellcheck shell=bash disable=SC2154,SC2034
# Sourced by ci/e2e.sh: its EXIT trap. Stops what the run started, on
# success and on failure, and removes the node's files (ci/e2e.sh refused to
# start if any of them existed).

# own_qemus prints the PIDs of QEMU processes in a mount namespace other
# than ours: the DaemonSet's (in its vms container). A libvirtd of
# ci/libvirtd.sh runs QEMU in this mount namespace.
own_qemus() {
	local me p
	me=$(readlink /proc/self/ns/mnt)
	for p in $(pgrep -f '^[^ ]*qemu-system' 2>/dev/null); do
		[ "$(readlink "/proc/$p/ns/mnt" 2>/dev/null)" != "$me" ] && echo "$p"
	done
	return 0
}

cleanup() {
	local rc=$? i p
	set +e
	trap - EXIT INT TERM
	[ "$rc" = 0 ] || dump_logs
	say "teardown"
	# kubelet and criproxy first (node-services.sh stops both): nothing
	# may recreate pods while they are removed.
	[ -n "${svcmgr:-}" ] && stop_pid node-services "$svcmgr"
	# Pods left, on containerd directly (criproxy is gone): the DaemonSets'
	# and the suite's containers; a VM that outlived its pod is killed below.
	if [ -S /run/containerd/containerd.sock ]; then
		in_node "$crictl" --runtime-endpoint unix:///run/containerd/containerd.sock --timeout 60s rmp -fa >/dev/null 2>&1
		for t in $(ctr_ -n k8s.io tasks ls -q 2>/dev/null); do
			ctr_ -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1
		done
	fi
	# Shims of a containerd that died first, with their containers.
	for p in $(pgrep -f 'containerd-shim-runc-v2 .*-address /run/containerd/containerd.sock$'); do
		pkill -9 -P "$p" 2>/dev/null
		kill -9 "$p" 2>/dev/null
	done
	p=$(own_qemus)
	if [ -n "$p" ]; then
		echo "e2e: killing QEMU processes left by the DaemonSet's libvirt: $p" >&2
		# shellcheck disable=SC2086
		kill -9 $p 2>/dev/null
	fi
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${names[$i]}" "${pids[$i]}"; done
	# Mounts under the node's directories (kubelet's pod volumes,
	# containerd's rootfs and shm, podvisor's network namespaces), deepest first.
	awk '$2 ~ "^/(var/lib/kubelet|var/lib/containerd|run/containerd|var/lib/podvisor|run/podvisor|var/lib/podvisor-e2e)(/|$)" {print $2}' /proc/mounts |
		sort -r | while read -r m; do umount -l "$m"; done
	# Network namespaces the run's pods left (containerd's cni-*, podvisor's).
	if [ -f "$work/netns-before" ]; then
		for n in /run/netns/cni-* /run/netns/podvisor-*; do
			[ -e "$n" ] || continue
			grep -qx "${n##*/}" "$work/netns-before" || ip netns del "${n##*/}" 2>/dev/null
		done
	fi
	# kubelet's cgroups (cgroupfs driver), empty once its pods are gone.
	find /sys/fs/cgroup/*/kubepods -depth -type d -exec rmdir {} + 2>/dev/null
	# The VMs' own cgroups (podvisor-vms-emulator), empty once they are gone.
	rmdir /sys/fs/cgroup/*/podvisor-vms 2>/dev/null
	ip netns del "$netns" 2>/dev/null
	ip link del pve2e0 2>/dev/null
	ip link del pve2e1 2>/dev/null
	for p in "${node_paths[@]}"; do rm -rf "$p"; done
	if [ -n "${cni_state:-}" ]; then
		rm -rf "$cni_state/networks/$cni_net" "$cni_state/networks/$cni_net-b" "$cni_state/results/$cni_net"-*
		[ "$made_cni_state" = 1 ] && rmdir "$cni_state"/* "$cni_state" 2>/dev/null
	fi
	rm -f /run/containerd/containerd.sock.ttrpc
	rm -f /etc/cni/net.d/10-podvisor-e2e.conflist /etc/cni/net.d/90-podvisor-e2e-b.conflist
	rmdir /etc/cni 2>/dev/null
	[ "$made_root_shared" = 1 ] && mount --make-private /
	if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
	say "e2e: $([ "$rc" = 0 ] && echo PASS || echo "FAIL (exit $rc)") after $(($(date +%s) - t0)) s"
	exit "$rc"
}
