#!/bin/bash
# Starts, stops and reports the libvirt daemons podvisor needs on a machine
# without systemd (developers' machines and CI).
#
#   ci/libvirtd.sh start    apply qemu.conf settings, start virtlogd and
#                           libvirtd unless running, wait until libvirt answers
#   ci/libvirtd.sh stop     stop only the daemons this script started
#   ci/libvirtd.sh restart  restart libvirtd (only if this script started it);
#                           running domains keep running
#   ci/libvirtd.sh status   say what runs and who started it
#
# Environment: PODVISOR_CI_STATE (default /run/podvisor-ci) holds the PIDs of
# the daemons started here and their logs; QEMU_CONF (default
# /etc/libvirt/qemu.conf) is the file that gets the managed block.
set -euo pipefail

state="${PODVISOR_CI_STATE:-/run/podvisor-ci}"
qemu_conf="${QEMU_CONF:-/etc/libvirt/qemu.conf}"
uri="qemu:///system"
begin_marker="# BEGIN podvisor managed block (ci/libvirtd.sh)"
end_marker="# END podvisor managed block"

log() { echo "libvirtd.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# The settings podvisor's design needs (docs/libvirt.md says why):
# the emulator runs as root with its capabilities so that the emulator
# wrapper can enter the pod's network namespace (it then leaves QEMU only
# CAP_DAC_OVERRIDE, CAP_FOWNER and CAP_NET_ADMIN); no private mount
# namespace so that paths under the pod's directories are visible; /dev/net/tun
# added to libvirt's default device ACL; libvirt manages only the devices
# cgroup (the ACL): podvisor-vmwrapper puts QEMU in its pod's cgroup for the
# others, where libvirt's per-vCPU cgroups would take its threads out of it.
managed_block() {
	cat <<BLOCK
$begin_marker
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
$end_marker
BLOCK
}

# apply_qemu_conf rewrites the managed block; prints "changed" when the file
# changed. Settings of the same keys outside the block are refused: libvirt
# would read one of them and ignore the other.
apply_qemu_conf() {
	[ -f "$qemu_conf" ] || die "$qemu_conf not found: is libvirt-daemon-system installed? (run ci/install-deps.sh)"
	local outside
	outside="$(awk -v b="$begin_marker" -v e="$end_marker" '
		$0 == b {inb=1; next} $0 == e {inb=0; next}
		!inb && /^[[:space:]]*(user|group|clear_emulator_capabilities|namespaces|cgroup_controllers|cgroup_device_acl)[[:space:]]*=/ {print NR": "$0}
	' "$qemu_conf")"
	if [ -n "$outside" ]; then
		die "$qemu_conf sets keys that podvisor manages outside its block; comment them out:
$outside"
	fi
	local tmp
	tmp="$(mktemp "$qemu_conf.podvisor.XXXXXX")"
	awk -v b="$begin_marker" -v e="$end_marker" '
		$0 == b {skip=1; next} $0 == e {skip=0; next} !skip {print}
	' "$qemu_conf" >"$tmp"
	managed_block >>"$tmp"
	if cmp -s "$tmp" "$qemu_conf"; then
		rm -f "$tmp"
		return 0
	fi
	chmod --reference="$qemu_conf" "$tmp"
	mv "$tmp" "$qemu_conf"
	echo changed
}

# pid_alive PID NAME: the process exists and runs the program NAME.
pid_alive() {
	local pid="$1" name="$2"
	[ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]
}

# running_pid NAME: PID of the running daemon per its own pidfile, or empty.
running_pid() {
	local name="$1" pid=""
	if [ -r "/run/$name.pid" ]; then
		pid="$(tr -dc '0-9' <"/run/$name.pid")"
	fi
	if pid_alive "$pid" "$name"; then
		echo "$pid"
		return
	fi
	# No pidfile (started some other way): look for the process itself.
	pid="$(pgrep -x "$name" | head -n1 || true)"
	echo "$pid"
}

# ours NAME: the PID this script recorded for NAME if that process still runs.
ours() {
	local name="$1" pid=""
	[ -r "$state/$name.pid" ] && pid="$(cat "$state/$name.pid")"
	if pid_alive "$pid" "$name"; then echo "$pid"; fi
}

# without_inherited_fds runs a command with every descriptor above 2 closed.
# A daemon keeps what it inherits for as long as it runs: a caller's lock
# (flock /run/podvisor-heavy.lock make test) would stay held by libvirtd
# after the caller exited, and every other heavy run would wait for ever.
without_inherited_fds() {
	(
		for fd in /proc/"$BASHPID"/fd/*; do
			fd="${fd##*/}"
			if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
		done
		exec "$@"
	)
}

start_daemon() {
	local name="$1" pid
	pid="$(running_pid "$name")"
	if [ -n "$pid" ]; then
		log "$name already running (pid $pid)"
		return
	fi
	# Daemonised, the daemons would log to syslog, which these machines lack.
	LIBVIRT_LOG_OUTPUTS="3:file:$state/$name.log" without_inherited_fds "$name" -d
	local deadline=$((SECONDS + 30))
	while [ $SECONDS -lt $deadline ]; do
		pid="$(running_pid "$name")"
		if [ -n "$pid" ]; then
			echo "$pid" >"$state/$name.pid"
			log "started $name (pid $pid, log $state/$name.log)"
			return
		fi
		sleep 0.2
	done
	die "$name did not start within 30 s; see $state/$name.log"
}

stop_daemon() {
	local name="$1" pid
	pid="$(ours "$name")"
	if [ -z "$pid" ]; then
		rm -f "$state/$name.pid"
		return
	fi
	kill -TERM "$pid"
	local deadline=$((SECONDS + 30))
	while pid_alive "$pid" "$name"; do
		if [ $SECONDS -ge $deadline ]; then
			log "$name (pid $pid) ignored SIGTERM for 30 s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.5
			break
		fi
		sleep 0.2
	done
	rm -f "$state/$name.pid"
	log "stopped $name (pid $pid)"
}

wait_ready() {
	# The first call after a start probes QEMU's capabilities (~9 s here;
	# much longer when the machine is busy).
	local deadline=$((SECONDS + ${PODVISOR_LIBVIRTD_TIMEOUT:-180})) out
	while [ $SECONDS -lt $deadline ]; do
		if out="$(timeout 60 virsh -c "$uri" version 2>&1)"; then
			log "libvirt answers: $(echo "$out" | grep -i 'running hypervisor' || echo "$out" | head -n1)"
			return
		fi
		sleep 1
	done
	die "virsh -c $uri version did not answer within ${PODVISOR_LIBVIRTD_TIMEOUT:-180} s: $out"
}

cmd_start() {
	[ "$(id -u)" -eq 0 ] || die "must run as root"
	command -v libvirtd >/dev/null || die "libvirtd not installed (run ci/install-deps.sh)"
	mkdir -p "$state"
	local changed
	changed="$(apply_qemu_conf)"
	if [ -n "$changed" ]; then
		log "updated the managed block in $qemu_conf"
		if [ -n "$(ours libvirtd)" ]; then
			stop_daemon libvirtd
		elif [ -n "$(running_pid libvirtd)" ]; then
			log "warning: libvirtd was started elsewhere and runs with the old $qemu_conf; restart it"
		fi
	fi
	start_daemon virtlogd
	start_daemon libvirtd
	wait_ready
}

cmd_restart() {
	[ -n "$(ours libvirtd)" ] || die "libvirtd was not started by this script (no live PID in $state/libvirtd.pid); not restarting it"
	stop_daemon libvirtd
	start_daemon libvirtd
	wait_ready
}

cmd_stop() {
	stop_daemon libvirtd
	stop_daemon virtlogd
}

cmd_status() {
	local rc=0 name pid
	for name in virtlogd libvirtd; do
		pid="$(running_pid "$name")"
		if [ -z "$pid" ]; then
			echo "$name: not running"
			rc=1
		elif [ "$(ours "$name")" = "$pid" ]; then
			echo "$name: running (pid $pid, started by ci/libvirtd.sh)"
		else
			echo "$name: running (pid $pid, started elsewhere)"
		fi
	done
	return $rc
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
restart) cmd_restart ;;
status) cmd_status ;;
*) die "usage: $0 start|stop|restart|status" ;;
esac
