#!/bin/bash
# Installs every Debian package named in ci/deps-*.txt (one per line, '#'
# comments allowed). Idempotent: when all packages are already installed it
# only runs dpkg -s and returns, so a second run takes about a second.
# Must run as root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

mapfile -t pkgs < <(cat "$here"/deps-*.txt | sed -e 's/#.*//' -e 's/[[:space:]]//g' | grep -v '^$' | sort -u)
if [ "${#pkgs[@]}" -eq 0 ]; then
	echo "install-deps: no packages listed in $here/deps-*.txt"
	exit 0
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep 'install ok installed' >/dev/null; }

# Docker's containerd.io (GitHub's ubuntu-24.04 runners, most Docker hosts)
# conflicts with the distribution's containerd and runc: installing those
# would remove Docker. Its containerd and runc binaries serve our scripts
# (ci/containerd.sh starts containerd with its own configuration).
if installed containerd.io; then
	kept=()
	for p in "${pkgs[@]}"; do
		case "$p" in
		containerd | runc) echo "install-deps: $p: Docker's containerd.io provides it; not installing the distribution's" ;;
		*) kept+=("$p") ;;
		esac
	done
	pkgs=("${kept[@]}")
fi

missing=()
for p in "${pkgs[@]}"; do
	# dpkg -s succeeds for removed-but-configured packages too; check Status.
	if ! installed "$p"; then
		missing+=("$p")
	fi
done

if [ "${#missing[@]}" -eq 0 ]; then
	echo "install-deps: all ${#pkgs[@]} packages already installed"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: must run as root to install: ${missing[*]}" >&2
	exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Other installers may hold the dpkg lock (parallel CI steps): wait for it.
apt_opts=(-q -o DPkg::Lock::Timeout=900)
apt-get "${apt_opts[@]}" update
# Recommends stay on: libvirt's QEMU driver and firmware arrive that way.
# Packages must not start their daemons (libvirtd, containerd, etcd, ...):
# the test scripts start their own, with their own configuration, and stop
# them by PID. Debian's way is a policy-rc.d that denies; add a temporary
# one unless the machine already has its own.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# podvisor ci/install-deps.sh: no daemon starts during installs\nexit 101\n' >"$policy"
	chmod +x "$policy"
	trap 'rm -f "$policy"' EXIT
fi
apt-get "${apt_opts[@]}" install -y "${missing[@]}"
