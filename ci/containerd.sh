#!/usr/bin/env bash
# Starts or stops a private containerd for the proxy's tests: Debian's 1.6
# (config version 2) or, with CONTAINERD_BIN_DIR, a containerd 2.x built by
# ci/build-containerd.sh (config version 3), with runc from Debian; its own
# root, state, socket and CNI network, no systemd. Only what this script
# started is stopped (by PID file).
#
#   ci/containerd.sh start   # prints nothing on success; socket below
#   ci/containerd.sh stop
#   ci/containerd.sh wipe    # stop, then delete its root and state dirs
#
# Socket: unix:///run/podvisor-ci-containerd/containerd.sock
# Env: PAUSE_IMAGE (sandbox image; default 127.0.0.1:5055/podvisor-test/pause:1.0),
#      IMAGES_DIR (docker-archive tarballs to import into namespace k8s.io),
#      REGISTRY (host:port of a plain-HTTP local registry containerd may pull from;
#      default 127.0.0.1:5055), CRICTL (used by stop to remove pods cleanly),
#      CONTAINERD_BIN_DIR (containerd, ctr and containerd-shim-runc-v2 of 2.x;
#      default: Debian's containerd 1.6 on PATH).
set -euo pipefail

root_dir=/var/lib/podvisor-ci-containerd
state_dir=/run/podvisor-ci-containerd
sock=$state_dir/containerd.sock
pidfile=$state_dir/containerd.pid
log=$state_dir/containerd.log
cni_conf=$state_dir/cni
pause=${PAUSE_IMAGE:-127.0.0.1:5055/podvisor-test/pause:1.0}
registry=${REGISTRY:-127.0.0.1:5055}

bindir=${CONTAINERD_BIN_DIR:-}
containerd_bin=${bindir:+$bindir/}containerd
ctr() { command "${bindir:+$bindir/}ctr" "$@"; }

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

# config_v2: containerd 1.x's CRI plugin configuration.
config_v2() {
	cat <<TOML
version = 2
root = "$root_dir"
state = "$state_dir/state"
[grpc]
  address = "$sock"
[debug]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause"
  # Root here lacks CAP_SYS_RESOURCE: no negative oom_score_adj.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$cni_conf"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$registry"]
    endpoint = ["http://$registry"]
TOML
}

# config_v3: containerd 2.x's: the CRI plugin split into
# io.containerd.cri.v1.images, io.containerd.cri.v1.runtime and
# io.containerd.grpc.v1.cri; registry hosts in a hosts.toml directory.
config_v3() {
	mkdir -p "$state_dir/certs.d/$registry"
	cat >"$state_dir/certs.d/$registry/hosts.toml" <<HOSTS
server = "http://$registry"
[host."http://$registry"]
  capabilities = ["pull", "resolve"]
HOSTS
	cat <<TOML
version = 3
root = "$root_dir"
state = "$state_dir/state"
[grpc]
  address = "$sock"
[debug]
  address = ""
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$pause"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$state_dir/certs.d"
[plugins.'io.containerd.cri.v1.runtime']
  # Root here lacks CAP_SYS_RESOURCE: no negative oom_score_adj.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$cni_conf"
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
TOML
}

start() {
	if running; then
		echo "containerd.sh: already running (pid $(cat "$pidfile"))" >&2
	else
		mkdir -p "$root_dir" "$state_dir" "$cni_conf"
		if [ -n "$bindir" ]; then config_v3; else config_v2; fi >"$state_dir/config.toml"

		# A private bridge and subnet; no masquerading: nothing leaves the
		# namespaces the tests create.
		cat >"$cni_conf/10-podvisor-ci.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "podvisor-ci",
  "plugins": [
    {"type": "bridge", "bridge": "pvci0", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.240.77.0/24"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$state_dir/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
		# fd 9 may be a caller's lock (ci/test-proxy.sh): containerd must not hold it.
		PATH="${bindir:+$bindir:}$PATH" "$containerd_bin" --config "$state_dir/config.toml" >>"$log" 2>&1 9>&- &
		echo $! >"$pidfile"
		for _ in $(seq 1 300); do
			if [ -S "$sock" ] && ctr -a "$sock" version >/dev/null 2>&1; then break; fi
			running || { tail -n 30 "$log" >&2; echo "containerd.sh: containerd exited at start-up (log $log)" >&2; exit 1; }
			sleep 0.1
		done
		ctr -a "$sock" version >/dev/null 2>&1 || { echo "containerd.sh: containerd did not answer on $sock (log $log)" >&2; exit 1; }
	fi
	if [ -n "${IMAGES_DIR:-}" ]; then
		for t in "$IMAGES_DIR"/*.tar; do
			ctr -a "$sock" -n k8s.io images import --no-unpack=false "$t" >/dev/null ||
				{ echo "containerd.sh: importing $t failed" >&2; exit 1; }
		done
	fi
}

stop() {
	if ! running; then
		rm -f "$pidfile"
		return 0
	fi
	pid=$(cat "$pidfile")
	# Pods first, while containerd can still tear down their networks.
	if [ -n "${CRICTL:-}" ] && [ -x "$CRICTL" ]; then
		"$CRICTL" --runtime-endpoint "unix://$sock" --timeout 60s rmp -fa >/dev/null 2>&1 || true
	fi
	for t in $(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
		ctr -a "$sock" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
	done
	kill "$pid"
	for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
	rm -f "$pidfile"
	# Mounts containerd left (sandbox shm, rootfs) under its own dirs.
	awk -v r="$root_dir" -v s="$state_dir" '$2 ~ "^"r || $2 ~ "^"s {print $2}' /proc/mounts | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

# wipe stops containerd and deletes its root and state: the next start is
# a fresh containerd with no images or pods.
wipe() {
	stop
	rm -rf "$root_dir" "$state_dir"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
wipe) wipe ;;
*) echo "usage: ci/containerd.sh start|stop|wipe" >&2; exit 2 ;;
esac
