#!/bin/bash
# Puts criproxy between kubelet and the node's CRI runtime (containerd), or
# takes it out again. Run by the init container of deploy/node-setup.yaml
# with the host's / at $HOST_ROOT and the host's PID namespace (hostPID), or
# by hand on a node with HOST_ROOT=/ (docs/deploy.md lists the same steps).
#
#   install-criproxy.sh install     idempotent: changes nothing, and does not
#                                   restart kubelet, when the node is set up
#   install-criproxy.sh uninstall   kubelet back on the primary runtime
#
# Environment (defaults in brackets):
#   HOST_ROOT         the host's root filesystem [/host]
#   CRIPROXY_SOCKET   the proxy's endpoint [unix:///run/criproxy/criproxy.sock]
#   PRIMARY_ENDPOINT  the runtime kubelet used so far [unix:///run/containerd/containerd.sock]
#   PODVISOR_ENDPOINT podvisor's socket [unix:///run/podvisor/podvisor.sock]
#   KUBELET_CONFIG    kubelet's config file [/var/lib/kubelet/config.yaml]
#   KUBELET_FLAGS_ENV kubeadm's flag file [/var/lib/kubelet/kubeadm-flags.env]
#   CRIPROXY_BIN      the binary to install [/usr/local/bin/criproxy]
#   NO_SYSTEMCTL      1: only write files, do not call systemctl (tests)
#
# Needs systemd on the node (kubeadm nodes and kind nodes have it): criproxy
# runs as criproxy.service, ordered before kubelet.service, so that kubelet
# finds its endpoint after a reboot.
set -euo pipefail

host="${HOST_ROOT:-/host}"
proxy="${CRIPROXY_SOCKET:-unix:///run/criproxy/criproxy.sock}"
primary="${PRIMARY_ENDPOINT:-unix:///run/containerd/containerd.sock}"
podvisor="${PODVISOR_ENDPOINT:-unix:///run/podvisor/podvisor.sock}"
kcfg="$host${KUBELET_CONFIG:-/var/lib/kubelet/config.yaml}"
kflags="$host${KUBELET_FLAGS_ENV:-/var/lib/kubelet/kubeadm-flags.env}"
unit="$host/etc/systemd/system/criproxy.service"
bin="$host/usr/local/bin/criproxy"
src="${CRIPROXY_BIN:-/usr/local/bin/criproxy}"

log() { echo "install-criproxy: $*" >&2; }
die() { log "$*"; exit 1; }

# hostctl runs a command in the host's namespaces (PID 1's).
hostctl() {
	if [ "${NO_SYSTEMCTL:-0}" = 1 ]; then
		log "(NO_SYSTEMCTL) would run: $*"
		return 0
	fi
	if [ "$host" = / ]; then
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
	[ -f "$dest" ] && chmod --reference="$dest" "$tmp"
	mv "$tmp" "$dest"
	echo changed
}

# set_endpoints ENDPOINT: kubelet's runtime and image endpoints become
# ENDPOINT, in the config file (containerRuntimeEndpoint,
# imageServiceEndpoint) and, when kubeadm passes them as flags (the flag
# wins over the file), in kubeadm-flags.env. Prints "changed" on a change.
set_endpoints() {
	local ep="$1" changed=""
	[ -f "$kcfg" ] || die "kubelet config $kcfg not found: set KUBELET_CONFIG"
	local out
	out="$(awk -v ep="$ep" '
		/^containerRuntimeEndpoint:/ {print "containerRuntimeEndpoint: " ep; r=1; next}
		/^imageServiceEndpoint:/ {print "imageServiceEndpoint: " ep; i=1; next}
		{print}
		END {
			if (!r) print "containerRuntimeEndpoint: " ep
			if (!i) print "imageServiceEndpoint: " ep
		}' "$kcfg" | replace_file "$kcfg")"
	[ -n "$out" ] && changed=1
	if [ -f "$kflags" ]; then
		out="$(sed -E \
			-e "s#--container-runtime-endpoint(=| +)[^ \"]+#--container-runtime-endpoint=$ep#" \
			-e "s#--image-service-endpoint(=| +)[^ \"]+#--image-service-endpoint=$ep#" \
			"$kflags" | replace_file "$kflags")"
		[ -n "$out" ] && changed=1
	fi
	if [ -n "$changed" ]; then echo changed; fi
}

wait_socket() {
	local path="${1#unix://}" deadline=$((SECONDS + 60))
	while [ $SECONDS -lt $deadline ]; do
		[ -S "$host$path" ] && return 0
		sleep 1
	done
	die "$path did not appear within 60 s: see journalctl -u criproxy on the node"
}

install() {
	local changed=""
	[ -x "$src" ] || die "$src missing: set CRIPROXY_BIN"
	if ! cmp -s "$src" "$bin"; then
		mkdir -p "$(dirname "$bin")"
		cp "$src" "$bin.new"
		chmod 0755 "$bin.new"
		mv "$bin.new" "$bin"
		changed=1
	fi
	local out
	out="$(replace_file "$unit" <<UNIT
# Written by podvisor's install-criproxy.sh (deploy/node-setup.yaml).
[Unit]
Description=CRI proxy: containerd and podvisor behind one CRI socket
After=containerd.service
Wants=containerd.service
Before=kubelet.service

[Service]
ExecStart=/usr/local/bin/criproxy --listen $proxy --primary $primary --runtime podvisor=$podvisor
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target kubelet.service
UNIT
)"
	[ -n "$out" ] && changed=1
	if [ -n "$changed" ]; then
		hostctl systemctl daemon-reload
		hostctl systemctl enable criproxy.service
		hostctl systemctl restart criproxy.service
	else
		hostctl systemctl enable --now criproxy.service
	fi
	[ "${NO_SYSTEMCTL:-0}" = 1 ] || wait_socket "$proxy"
	out="$(set_endpoints "$proxy")"
	if [ -n "$out" ]; then
		log "kubelet now uses $proxy; restarting kubelet"
		hostctl systemctl restart --no-block kubelet.service
	else
		log "node already set up: criproxy at $proxy in front of $primary"
	fi
}

uninstall() {
	local out
	out="$(set_endpoints "$primary")"
	if [ -n "$out" ]; then
		log "kubelet back on $primary; restarting kubelet"
		hostctl systemctl restart --no-block kubelet.service
	fi
	if [ -f "$unit" ]; then
		hostctl systemctl disable --now criproxy.service || true
		rm -f "$unit"
		hostctl systemctl daemon-reload
	fi
	rm -f "$bin"
}

case "${1:-}" in
install) install ;;
uninstall) uninstall ;;
*) die "usage: $0 install|uninstall" ;;
esac
