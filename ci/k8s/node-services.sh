#!/usr/bin/env bash
# The e2e node's stand-in for systemd (this machine has none), for two units
# and nothing else:
#
#   kubelet.service   run as kubeadm's drop-in (10-kubeadm.conf) runs it:
#                     kubelet --kubeconfig=/etc/kubernetes/kubelet.conf
#                       --config=/var/lib/kubelet/config.yaml
#                       $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
#                     with /var/lib/kubelet/kubeadm-flags.env and
#                     /etc/default/kubelet as its EnvironmentFiles;
#                     Restart=always.
#   criproxy.service  once /etc/systemd/system/criproxy.service exists (the
#                     node setup writes it): its ExecStart; Restart=always;
#                     stopped when the unit is removed.
#
# Where the node setup (deploy/image/install-criproxy.sh) calls `systemctl
# restart` on a systemd node, this loop restarts the unit when a file the
# unit reads changed: kubelet's config, flag and environment files and its
# drop-ins; criproxy's unit and binary. Every process runs in the node's
# network namespace. PIDs in STATEDIR/{kubelet,criproxy}.pid, output in
# LOGDIR/{kubelet,criproxy}.log. TERM stops kubelet, then criproxy.
#
# Usage: ci/k8s/node-services.sh NETNS KUBELET_BINARY LOGDIR STATEDIR
set -euo pipefail

netns=$1 kubelet_bin=$2 logs=$3 state=$4
unit=/etc/systemd/system/criproxy.service
mkdir -p "$logs" "$state"

say() { echo "node-services: $(date +%T) $*" >>"$logs/node-services.log"; }

alive() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

stop() { # unit
	alive "$1" || { rm -f "$state/$1.pid"; return 0; }
	local pid
	pid=$(cat "$state/$1.pid")
	say "stopping $1 (pid $pid)"
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$state/$1.pid"
}

# kubelet_inputs prints the files kubelet reads at start, drop-ins included.
kubelet_inputs() {
	local f d
	for f in /var/lib/kubelet/config.yaml /var/lib/kubelet/kubeadm-flags.env /etc/default/kubelet; do
		[ -f "$f" ] && echo "$f"
	done
	grep -ohE -- '--config-dir(=| +)[^ "]+' /var/lib/kubelet/kubeadm-flags.env /etc/default/kubelet 2>/dev/null |
		sed -E 's/--config-dir(=| +)//' | while read -r d; do
		find "$d" -name '*.conf' -type f 2>/dev/null | sort
	done
}

hash_of() { # files...: one hash of names and contents ("none" for no file)
	[ $# -gt 0 ] || { echo none; return; }
	{ printf '%s\n' "$@"; cat "$@" 2>/dev/null; } | sha256sum | cut -d' ' -f1
}

start_kubelet() {
	(
		KUBELET_KUBEADM_ARGS="" KUBELET_EXTRA_ARGS=""
		# shellcheck disable=SC1091
		[ -f /var/lib/kubelet/kubeadm-flags.env ] && . /var/lib/kubelet/kubeadm-flags.env
		# shellcheck disable=SC1091
		[ -f /etc/default/kubelet ] && . /etc/default/kubelet
		# shellcheck disable=SC2086 # word splitting, as systemd does for $VARS
		exec nsenter --net="/run/netns/$netns" "$kubelet_bin" --kubeconfig=/etc/kubernetes/kubelet.conf \
			--config=/var/lib/kubelet/config.yaml $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
	) >>"$logs/kubelet.log" 2>&1 &
	echo $! >"$state/kubelet.pid"
	say "started kubelet (pid $!): $(grep -sv '^#' /etc/default/kubelet | tr '\n' ' ')"
}

start_criproxy() {
	local cmd
	cmd=$(sed -n 's/^ExecStart=//p' "$unit" | tail -n1)
	[ -n "$cmd" ] || { say "no ExecStart in $unit"; return; }
	# shellcheck disable=SC2086 # ExecStart's words
	nsenter --net="/run/netns/$netns" $cmd >>"$logs/criproxy.log" 2>&1 &
	echo $! >"$state/criproxy.pid"
	say "started criproxy (pid $!): $cmd"
}

shutdown() {
	stop kubelet
	stop criproxy
	say "stopped"
	exit 0
}
trap shutdown TERM INT

kubelet_hash="" seen="" proxy_hash=""
while :; do
	# shellcheck disable=SC2046
	h=$(hash_of $(kubelet_inputs))
	if ! alive kubelet; then
		[ -n "$kubelet_hash" ] && say "kubelet is not running: (re)starting it"
		start_kubelet
		kubelet_hash=$h seen=$h
	elif [ "$h" != "$kubelet_hash" ]; then
		# Restart once the files have stayed the same for a second: the
		# node setup writes several of them in a row.
		if [ "$h" = "$seen" ]; then
			say "kubelet's files changed: restarting kubelet"
			stop kubelet
			start_kubelet
			kubelet_hash=$h
		fi
		seen=$h
	fi
	if [ -f "$unit" ]; then
		p=$(hash_of "$unit" /usr/local/bin/criproxy)
		if ! alive criproxy || [ "$p" != "$proxy_hash" ]; then
			stop criproxy
			start_criproxy
			proxy_hash=$p
		fi
	elif alive criproxy; then
		say "$unit removed"
		stop criproxy
		proxy_hash=""
	fi
	sleep 1 &
	wait $! || true
done
