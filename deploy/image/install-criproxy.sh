#!/bin/bash
# Puts criproxy between kubelet and the node's CRI runtime (containerd), or
# takes it out again. Run by the init container of deploy/node-setup.yaml
# with the host's / at $HOST_ROOT and the host's PID namespace (hostPID), or
# by hand on a node with HOST_ROOT=/ (docs/deploy.md lists the same steps).
#
#   install-criproxy.sh install     idempotent: changes nothing, and does not
#                                   restart kubelet, when the node is set up
#   install-criproxy.sh uninstall   kubelet back on the primary runtime, every
#                                   file this script wrote removed
#
# kubelet is pointed at the proxy by a kubelet configuration drop-in
# (KubeletConfiguration containerRuntimeEndpoint and imageServiceEndpoint in
# a .conf file under kubelet's --config-dir, GA since Kubernetes 1.35), not
# by editing /var/lib/kubelet/config.yaml, which `kubeadm upgrade` rewrites
# (from /var/lib/kubelet/instance-config.yaml, which names containerd). When
# kubelet runs without --config-dir, the flag is added to KUBELET_EXTRA_ARGS
# in the user's kubelet environment file, which kubeadm never writes.
#
# Environment (defaults in brackets):
#   HOST_ROOT          the host's root filesystem [/host]
#   CRIPROXY_SOCKET    the proxy's endpoint [unix:///run/criproxy/criproxy.sock]
#   PRIMARY_ENDPOINT   the runtime kubelet used so far [unix:///run/containerd/containerd.sock]
#   PODVISOR_ENDPOINT  podvisor's socket [unix:///run/podvisor/podvisor.sock]
#   ANNOTATION_ROUTING true: pods with kubernetes.io/target-runtime: virtlet.cloud
#                      go to podvisor (Virtlet's manifests); false: only
#                      runtimeClassName: podvisor does [true]
#   KUBELET_CONFIG_DIR kubelet's drop-in directory [the running kubelet's
#                      --config-dir, else /etc/kubernetes/kubelet.conf.d]
#   KUBELET_FLAGS_ENV  kubeadm's flag file [/var/lib/kubelet/kubeadm-flags.env]
#   KUBELET_EXTRA_ENV  the user's kubelet environment file [/etc/default/kubelet;
#                      /etc/sysconfig/kubelet where /etc/sysconfig exists]
#   CRIPROXY_BIN       the binary to install [/usr/local/bin/criproxy]
#   PROC_DIR           where to look for the running kubelet [/proc]
#   NO_SYSTEMCTL       1: only write files, do not call systemctl (tests)
#
# criproxy runs as criproxy.service, ordered before kubelet.service, so that
# kubelet finds its endpoint after a reboot. A node without systemd gets the
# same files; whatever starts its services must start criproxy as the unit's
# ExecStart says and restart kubelet (make e2e's harness does).
set -euo pipefail

host="${HOST_ROOT:-/host}"
host="${host%/}"
proxy="${CRIPROXY_SOCKET:-unix:///run/criproxy/criproxy.sock}"
primary="${PRIMARY_ENDPOINT:-unix:///run/containerd/containerd.sock}"
podvisor="${PODVISOR_ENDPOINT:-unix:///run/podvisor/podvisor.sock}"
annotation_routing="${ANNOTATION_ROUTING:-true}"
case "$annotation_routing" in
true | false) ;;
*)
	echo "install-criproxy: ANNOTATION_ROUTING=$annotation_routing: use true or false" >&2
	exit 1
	;;
esac
kflags="$host${KUBELET_FLAGS_ENV:-/var/lib/kubelet/kubeadm-flags.env}"
unit="$host/etc/systemd/system/criproxy.service"
bin="$host/usr/local/bin/criproxy"
src="${CRIPROXY_BIN:-/usr/local/bin/criproxy}"
proc="${PROC_DIR:-/proc}"
dropin_name=99-podvisor-criproxy.conf
# Marks the --config-dir this script added to the user's environment file.
extra_mark="# podvisor install-criproxy.sh: --config-dir added for $dropin_name"

log() { echo "install-criproxy: $*" >&2; }
die() {
	log "$*"
	exit 1
}

if [ -n "${KUBELET_EXTRA_ENV:-}" ]; then
	extra="$host$KUBELET_EXTRA_ENV"
elif [ -d "$host/etc/sysconfig" ]; then
	extra="$host/etc/sysconfig/kubelet"
else
	extra="$host/etc/default/kubelet"
fi

has_systemd() { [ -d "$host/run/systemd/system" ]; }

# hostctl runs systemctl in the host's namespaces (PID 1's). Without systemd
# it says what a service manager must do instead.
hostctl() {
	if [ "${NO_SYSTEMCTL:-0}" = 1 ]; then
		log "(NO_SYSTEMCTL) would run: $*"
		return 0
	fi
	if ! has_systemd; then
		log "no systemd on this node: not running '$*'; the node's service manager must do it"
		return 0
	fi
	if [ "$host" = "" ]; then
		"$@"
	else
		nsenter --target 1 --mount --uts --ipc --net --pid -- "$@"
	fi
}

# replace_file DEST: stdin becomes DEST when it differs; prints "changed".
replace_file() {
	local dest="$1" tmp
	mkdir -p "$(dirname "$dest")"
	tmp="$(mktemp "$dest.XXXXXX")"
	cat >"$tmp"
	if [ -f "$dest" ] && cmp -s "$tmp" "$dest"; then
		rm -f "$tmp"
		return 0
	fi
	if [ -f "$dest" ]; then chmod --reference="$dest" "$tmp"; else chmod 0644 "$tmp"; fi
	mv "$tmp" "$dest"
	echo changed
}

# running_config_dir prints the --config-dir of the running kubelet, if any.
running_config_dir() {
	local f args
	for f in "$proc"/[0-9]*/cmdline; do
		[ -r "$f" ] || continue
		args="$(tr '\0' '\n' <"$f" 2>/dev/null)" || continue
		[ "$(basename "$(head -n1 <<<"$args")")" = kubelet ] || continue
		awk '/^--config-dir=/ {sub(/^--config-dir=/, ""); d=$0} prev == "--config-dir" {d=$0} {prev=$0} END {if (d != "") print d}' <<<"$args"
		return 0
	done
}

# config_dir prints kubelet's drop-in directory (host path, without $host).
config_dir() {
	if [ -n "${KUBELET_CONFIG_DIR:-}" ]; then
		echo "$KUBELET_CONFIG_DIR"
		return
	fi
	local d
	d="$(running_config_dir)"
	if [ -z "$d" ] && [ -f "$kflags" ]; then
		d="$(grep -oE -- '--config-dir(=| +)[^ "]+' "$kflags" | tail -n1 | sed -E 's/--config-dir(=| +)//')" || true
	fi
	if [ -z "$d" ] && [ -f "$extra" ]; then
		d="$(grep -oE -- '--config-dir(=| +)[^ "]+' "$extra" | tail -n1 | sed -E 's/--config-dir(=| +)//')" || true
	fi
	echo "${d:-/etc/kubernetes/kubelet.conf.d}"
}

# ensure_config_dir_flag DIR: kubelet gets --config-dir=DIR at its next
# start, unless it already has a --config-dir. Prints "changed".
ensure_config_dir_flag() {
	local dir="$1"
	[ -n "$(running_config_dir)" ] && return 0
	grep -qsE -- '--config-dir(=| )' "$kflags" "$extra" && return 0
	mkdir -p "$(dirname "$extra")"
	touch "$extra"
	{
		if grep -qE '^KUBELET_EXTRA_ARGS=' "$extra"; then
			awk -v f="--config-dir=$dir" -v m="$extra_mark" '
				/^KUBELET_EXTRA_ARGS=/ && !done {
					v = substr($0, length("KUBELET_EXTRA_ARGS=") + 1)
					q = ""
					if (v ~ /^".*"$/ || v ~ /^'\''.*'\''$/) { q = substr(v, 1, 1); v = substr(v, 2, length(v) - 2) }
					if (q == "") q = "\""
					print m
					print "KUBELET_EXTRA_ARGS=" q (v == "" ? "" : v " ") f q
					done = 1; next
				}
				{print}' "$extra"
		else
			cat "$extra"
			echo "$extra_mark"
			echo "KUBELET_EXTRA_ARGS=\"--config-dir=$dir\""
		fi
	} | replace_file "$extra"
}

# remove_config_dir_flag: undoes ensure_config_dir_flag. Prints "changed".
remove_config_dir_flag() {
	[ -f "$extra" ] && grep -qxF "$extra_mark" "$extra" || return 0
	local out
	out="$(awk -v m="$extra_mark" '
		$0 == m {drop = 1; next}
		drop && /^KUBELET_EXTRA_ARGS=/ {
			sub(/ ?--config-dir=[^ "'\'']+/, "")
			drop = 0
			if ($0 ~ /^KUBELET_EXTRA_ARGS=(""|'\'''\''|)$/) next
		}
		{drop = 0; print}' "$extra")"
	if [ -z "$(tr -d '[:space:]' <<<"$out")" ]; then
		rm -f "$extra"
		echo changed
	else
		printf '%s\n' "$out" | replace_file "$extra"
	fi
}

# set_flag_endpoints ENDPOINT: kubelet's flags win over its configuration
# files and drop-ins, so endpoint flags in kubeadm-flags.env (kubeadm before
# 1.27 wrote them) are pointed at ENDPOINT too. Prints "changed".
set_flag_endpoints() {
	local ep="$1"
	[ -f "$kflags" ] || return 0
	sed -E \
		-e "s#(--container-runtime-endpoint(=| +))[^ \"]+#\1$ep#" \
		-e "s#(--image-service-endpoint(=| +))[^ \"]+#\1$ep#" \
		"$kflags" | replace_file "$kflags"
}

wait_socket() {
	local path="${1#unix://}" deadline=$((SECONDS + ${SOCKET_WAIT_SECONDS:-120}))
	while [ $SECONDS -lt "$deadline" ]; do
		[ -S "$host$path" ] && return 0
		sleep 1
	done
	die "$path did not appear within ${SOCKET_WAIT_SECONDS:-120} s: see journalctl -u criproxy on the node"
}

write_unit() {
	replace_file "$unit" <<UNIT
# Written by podvisor's install-criproxy.sh (deploy/node-setup.yaml).
[Unit]
Description=CRI proxy: containerd and podvisor behind one CRI socket
After=containerd.service
Wants=containerd.service
Before=kubelet.service

[Service]
ExecStart=/usr/local/bin/criproxy --listen $proxy --primary $primary --runtime podvisor=$podvisor --annotation-routing=$annotation_routing
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target kubelet.service
UNIT
}

install() {
	local changed="" out dir
	[ -x "$src" ] || die "$src missing: set CRIPROXY_BIN"
	[ -f "$host/var/lib/kubelet/config.yaml" ] || [ -f "$kflags" ] || [ -n "${KUBELET_CONFIG_DIR:-}" ] ||
		die "no kubelet config $host/var/lib/kubelet/config.yaml and no $kflags: is this a kubelet node? Set KUBELET_CONFIG_DIR to say where kubelet's drop-ins go"
	if ! cmp -s "$src" "$bin"; then
		mkdir -p "$(dirname "$bin")"
		cp "$src" "$bin.new"
		chmod 0755 "$bin.new"
		mv "$bin.new" "$bin"
		changed=1
	fi
	[ -n "$(write_unit)" ] && changed=1
	if [ -n "$changed" ]; then
		hostctl systemctl daemon-reload
		hostctl systemctl enable criproxy.service
		hostctl systemctl restart criproxy.service
	else
		hostctl systemctl enable --now criproxy.service
	fi
	[ "${NO_SYSTEMCTL:-0}" = 1 ] || wait_socket "$proxy"

	changed=""
	dir="$(config_dir)"
	out="$(replace_file "$host$dir/$dropin_name" <<CONF
# Written by podvisor's install-criproxy.sh (deploy/node-setup.yaml): kubelet
# reaches containerd and podvisor through criproxy. Removed by
# install-criproxy.sh uninstall.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: $proxy
imageServiceEndpoint: $proxy
CONF
)"
	[ -n "$out" ] && changed=1
	[ -n "$(ensure_config_dir_flag "$dir")" ] && changed=1
	[ -n "$(set_flag_endpoints "$proxy")" ] && changed=1
	if [ -n "$changed" ]; then
		log "kubelet now uses $proxy (drop-in $dir/$dropin_name); restarting kubelet"
		hostctl systemctl restart --no-block kubelet.service
	else
		log "node already set up: criproxy at $proxy in front of $primary"
	fi
}

uninstall() {
	local changed="" dir
	dir="$(config_dir)"
	if [ -f "$host$dir/$dropin_name" ]; then
		rm -f "$host$dir/$dropin_name"
		rmdir "$host$dir" 2>/dev/null || true
		changed=1
	fi
	[ -n "$(remove_config_dir_flag)" ] && changed=1
	[ -n "$(set_flag_endpoints "$primary")" ] && changed=1
	if [ -n "$changed" ]; then
		log "kubelet back on $primary; restarting kubelet"
		hostctl systemctl restart --no-block kubelet.service
	fi
	if [ -f "$unit" ]; then
		hostctl systemctl disable --now criproxy.service || true
		rm -f "$unit"
		hostctl systemctl daemon-reload
	fi
	rm -f "$bin"
	log "criproxy removed; delete VM pods before this: their IDs mean nothing to $primary"
}

case "${1:-}" in
install) install ;;
uninstall) uninstall ;;
*) die "usage: $0 install|uninstall" ;;
esac
