#!/bin/bash
# Builds podvisor's test guest offline: a Debian kernel, a busybox initramfs
# and a FAT disk booted by syslinux, packed as OUTDIR/podvisor-test-guest.qcow2
# (about 11 MB). No mounts are needed (the host kernel lacks vfat/iso9660).
#
#   ci/build-guest.sh OUTDIR
#
# The result is cached: nothing is rebuilt while the qcow2 exists and this
# script and ci/guest-agent/*.go are unchanged (their sha256 is stored beside
# the image).
#
# What the guest does at boot (/etc/rcS under busybox init):
#  - mounts proc, sys, dev; loads virtio/storage/fs/ACPI modules
#  - finds a cloud-init drive: NoCloud (label cidata, iso9660 or vfat) or
#    ConfigDrive (label config-2); sets the hostname from meta-data
#    local-hostname or meta_data.json hostname
#  - starts the guest agent (ci/guest-agent, static Go): the QEMU guest
#    agent protocol on the virtio port org.qemu.guest_agent.0 (guest-exec
#    and guest-exec-status for podvisor's ExecSync/Exec, guest-sync, -ping,
#    -info, -shutdown, -get-osinfo, -network-get-interfaces)
#  - applies the drive's network config (NoCloud network-config v1 or v2,
#    ConfigDrive network_data.json) with `podvisor-guest-agent netconfig`;
#    DHCP on every other NIC (udhcpc, routes incl. option 121, MTU, DNS)
#  - applies #cloud-config user-data (`podvisor-guest-agent cloudconfig`:
#    bootcmd, write_files, mounts, runcmd: podvisor's sysctls (busybox
#    sysctl), files, environment and volumes) before it starts the agent,
#    so an exec sees them
#  - runs user-data when it starts with "#!" (output on the console)
#  - answers on TCP 8080 with its hostname (raw, no request needed) and
#    serves the hostname over HTTP on port 80
#  - powers off on the ACPI power button (virsh shutdown)
#  - prints on ttyS0:  PODVISOR-GUEST: hostname=<name>
#                      PODVISOR-GUEST: net=static ip=<addr>  or
#                      PODVISOR-GUEST: net=dhcp ip=<addr>    (one per NIC,
#                      PODVISOR-GUEST: ip=<addr>              each followed by this)
#                      PODVISOR-GUEST: agent=/dev/vportNpM   (when the channel exists)
#                      PODVISOR-GUEST: ready
#  - onlines hot-plugged vCPUs (in-place resize) within a second; its
#    agent answers guest-get-vcpus and guest-set-vcpus (TCG's resize)
#  - keeps a root shell on ttyS0 (respawned)
set -euo pipefail

out="${1:?usage: $0 OUTDIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
image="$out/podvisor-test-guest.qcow2"
stamp="$image.script-sha256"
self="$(readlink -f "${BASH_SOURCE[0]}")"
repo="$(cd "$(dirname "$self")/.." && pwd)"
export PATH="$PATH:/usr/local/go/bin"
want="$(cat "$self" "$repo"/ci/guest-agent/*.go | sha256sum | cut -d' ' -f1)"

if [ -f "$image" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	echo "build-guest: $image is up to date"
	exit 0
fi

for tool in go busybox mkfs.vfat syslinux mcopy cpio gzip qemu-img depmod modprobe dpkg apt-get; do
	command -v "$tool" >/dev/null || { echo "build-guest: $tool missing (run ci/install-deps.sh)" >&2; exit 1; }
done

work="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"

# --- kernel -----------------------------------------------------------------
# Debian: linux-image-amd64 names one package with the kernel and every
# module. Ubuntu (GitHub's runners): linux-image-generic names the kernel
# package; its modules are in linux-modules-KVER and linux-modules-extra-KVER,
# zstd-compressed. GUEST_KERNEL_META names another meta package.
# shellcheck disable=SC1091 # the machine's, not ours
os_id="$(. /etc/os-release 2>/dev/null && echo "${ID:-}")"
meta_default=linux-image-amd64
[ "$os_id" = ubuntu ] && meta_default=linux-image-generic
meta="${GUEST_KERNEL_META:-$meta_default}"
kernel_pkg() { apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
kpkg="$(kernel_pkg)"
if [ -z "$kpkg" ]; then
	# apt's lists are missing on a fresh machine.
	DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=900 update >/dev/null
	kpkg="$(kernel_pkg)"
fi
[ -n "$kpkg" ] || { echo "build-guest: cannot tell the kernel package from 'apt-cache depends $meta' (GUEST_KERNEL_META names the meta package)" >&2; exit 1; }
pkgs=("$kpkg")
if [ "$os_id" = ubuntu ]; then
	kv="${kpkg#linux-image-}"
	pkgs+=("linux-modules-$kv")
	apt-cache show "linux-modules-extra-$kv" >/dev/null 2>&1 && pkgs+=("linux-modules-extra-$kv")
fi
cache="$out/.cache"
mkdir -p "$cache"
download() {
	(cd "$cache" && { apt-get -q download "$1" 2>&1 | grep -v 'unsandboxed as root' || true; }) >&2
	find "$cache" -maxdepth 1 -name "${1}_*.deb" | head -n1
}
for p in "${pkgs[@]}"; do
	deb="$(find "$cache" -maxdepth 1 -name "${p}_*.deb" | head -n1)"
	if [ -z "$deb" ]; then
		deb="$(download "$p")"
	fi
	if [ -z "$deb" ]; then
		# Stale lists can name a version the archive no longer has.
		DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=900 update >/dev/null
		deb="$(download "$p")"
	fi
	[ -n "$deb" ] || { echo "build-guest: apt-get download $p failed" >&2; exit 1; }
	dpkg -x "$deb" kpkg
done
# Merged-/usr packages ship /usr/lib/modules.
if [ ! -d kpkg/lib/modules ] && [ -d kpkg/usr/lib/modules ]; then
	mkdir -p kpkg/lib
	mv kpkg/usr/lib/modules kpkg/lib/modules
fi
kver="$(find kpkg/lib/modules -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n1)"
depmod -b kpkg "$kver"

# --- rootfs -----------------------------------------------------------------
root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/acpi/PWRF,proc,sys,dev,run,tmp,mnt/cidata,root,www,lib/modules,var/log}
cp "$(command -v busybox)" "$root/bin/busybox"
for applet in $(busybox --list-full); do
	[ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
ln -s /bin/busybox "$root/init"
# Debian 12's busybox-static has no pgrep; critest's execSync-with-timeout
# spec runs `pgrep sleep` in the container. Names only (no options), as an
# extended regular expression, with procps' exit status.
if [ ! -e "$root/usr/bin/pgrep" ]; then
	cat >"$root/usr/bin/pgrep" <<'PGREP'
#!/bin/sh
[ $# -eq 1 ] && [ "${1#-}" = "$1" ] || { echo "usage: pgrep PATTERN (the test guest's pgrep takes no options)" >&2; exit 2; }
st=1
for d in /proc/[0-9]*; do
	pid=${d#/proc/}
	[ "$pid" = $$ ] && continue
	read -r name <"$d/comm" 2>/dev/null || continue
	if echo "$name" | grep -Eq -- "$1"; then echo "$pid"; st=0; fi
done
exit $st
PGREP
	chmod 755 "$root/usr/bin/pgrep"
fi
(cd "$repo" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS='' go build -trimpath -ldflags "-s -w" \
	-o "$root/sbin/podvisor-guest-agent" ./ci/guest-agent)

# Modules, loaded in dependency order by insmod from a list.
modules="virtio_pci virtio_blk virtio_scsi virtio_net virtio_console virtio_balloon
	sd_mod sr_mod ata_piix ata_generic isofs vfat nls_cp437 nls_iso8859_1 nls_utf8 ext4
	9p 9pnet_virtio virtiofs button evdev"
: >"$root/etc/modules.list"
# shellcheck disable=SC2086
modprobe -d kpkg -S "$kver" -a --show-depends $modules | awk '$1 == "insmod" {print $2}' | awk '!seen[$0]++' |
	while read -r ko; do
		rel="${ko#"$work"/kpkg}"
		rel="${rel#kpkg}"
		mkdir -p "$root/$(dirname "$rel")"
		# busybox insmod loads plain .ko files only (Ubuntu's are .ko.zst).
		case "$rel" in
		*.ko.zst) dest="${rel%.zst}"; zstd -dqc "kpkg/$rel" >"$root/$dest" ;;
		*.ko.xz) dest="${rel%.xz}"; xz -dc "kpkg/$rel" >"$root/$dest" ;;
		*) dest="$rel"; cp "kpkg/$rel" "$root/$dest" ;;
		esac
		echo "$dest" >>"$root/etc/modules.list"
	done

cat >"$root/etc/inittab" <<'EOF'
::sysinit:/etc/rcS
ttyS0::respawn:-/bin/sh
::ctrlaltdel:/sbin/poweroff
::shutdown:/bin/sync
::shutdown:/bin/umount -a -r
EOF

cat >"$root/etc/rcS" <<'EOF'
#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
say() { echo "PODVISOR-GUEST: $*"; }

while read -r ko; do insmod "$ko" 2>/dev/null; done </etc/modules.list
hostname podvisor-guest

# Cloud-init drive: NoCloud (cidata) or ConfigDrive (config-2).
mount_drive() {
	for try in 1 2 3 4 5 6 7 8 9 10; do
		for dev in /dev/sr* /dev/vd* /dev/sd* /dev/hd*; do
			[ -b "$dev" ] || continue
			for fs in iso9660 vfat; do
				mount -o ro -t $fs "$dev" /mnt/cidata 2>/dev/null || continue
				if [ -f /mnt/cidata/meta-data ] || [ -f /mnt/cidata/openstack/latest/meta_data.json ]; then
					return 0
				fi
				umount /mnt/cidata
			done
		done
		sleep 0.5
	done
	return 1
}
userdata=
drive=
if mount_drive; then
	drive=/mnt/cidata
	if [ -f /mnt/cidata/meta-data ]; then
		name=$(sed -n 's/^local-hostname:[[:space:]]*//p' /mnt/cidata/meta-data | tr -d "\"'\r" | head -n1)
		userdata=/mnt/cidata/user-data
	else
		name=$(tr ',' '\n' </mnt/cidata/openstack/latest/meta_data.json |
			sed -n 's/.*"hostname"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' | head -n1)
		userdata=/mnt/cidata/openstack/latest/user_data
	fi
	[ -n "$name" ] && hostname "$name"
else
	echo "podvisor-guest: no cloud-init drive found"
fi
echo "127.0.0.1 localhost $(hostname)" >/etc/hosts
say "hostname=$(hostname)"

# The ACPI power button (virsh shutdown) runs /etc/acpi/PWRF/00000080.
acpid -l /run/acpid.log
ip link set lo up

# Static config from the drive first (it may rename NICs); DHCP for the rest.
static=
if [ -n "$drive" ]; then
	static=$(podvisor-guest-agent netconfig "$drive")
	case $? in
	0) ;;
	3) echo "podvisor-guest: no network config on the drive: DHCP" ;;
	*) echo "podvisor-guest: the drive's network config was not applied: DHCP" ;;
	esac
fi
for path in /sys/class/net/*; do
	iface=${path##*/}
	[ "$iface" = lo ] && continue
	[ -e "$path/device" ] || continue
	how=dhcp
	for s in $static; do [ "$s" = "$iface" ] && how=static; done
	if [ $how = dhcp ]; then
		ip link set "$iface" up
		udhcpc -i "$iface" -s /etc/udhcpc.sh -t 10 -T 2 -A 5 -b -p "/run/udhcpc.$iface.pid" -x "hostname:$(hostname)" >/run/udhcpc.$iface.log 2>&1
	fi
	addr=$(ip -4 -o addr show dev "$iface" | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p' | head -n1)
	say "net=$how ip=${addr:-none}"
	say "ip=${addr:-none}"
done

# cloud-config user-data (sysctls, files, environment, volumes) before the agent
# starts, so that the first exec sees what the pod gave the guest.
if [ -n "$userdata" ] && [ -f "$userdata" ] && [ "$(head -c 13 "$userdata")" = "#cloud-config" ]; then
	podvisor-guest-agent cloudconfig "$userdata" || echo "podvisor-guest: cloud-config not fully applied"
fi
# The guest agent waits for its virtio port (a minute at most).
podvisor-guest-agent agent &

# vCPUs hot-plugged by an in-place resize (KVM) arrive offline and no udev
# here onlines them: the guest does, once a second, for each CPU that
# appears, as udev's "add" rule would. CPUs present now are left as they
# are: under TCG all are present from boot, the cloud-init bootcmd took
# some offline and the guest agent onlines them on a resize.
( seen=" $(cd /sys/devices/system/cpu && echo cpu[0-9]*) "
while true; do
	now=" "
	for d in /sys/devices/system/cpu/cpu[0-9]*; do
		c=${d##*/}
		case "$seen" in *" $c "*) now="$now$c "; continue ;; esac
		[ "$(cat "$d/online" 2>/dev/null)" = 0 ] && echo 1 >"$d/online" 2>/dev/null
		# Seen once online: retried next second until then.
		[ "$(cat "$d/online" 2>/dev/null)" = 0 ] || now="$now$c "
	done
	seen=$now
	busybox sleep 1
done ) >/dev/null 2>&1 &

# Port 8080 answers the hostname at once; port 80 serves it over HTTP.
# The loops above and here sleep as `busybox sleep` (its process name is
# busybox): critest's execSync-with-timeout spec checks with `pgrep sleep`
# that the sleep it started is gone, and found the guest's own.
( while true; do nc -ll -p 8080 -e /bin/hostname; busybox sleep 1; done ) >/dev/null 2>&1 &
hostname >/www/index.html
httpd -p 80 -h /www

if [ -n "$userdata" ] && [ -f "$userdata" ] && [ "$(head -c 2 "$userdata")" = "#!" ]; then
	cp "$userdata" /run/user-data
	chmod +x /run/user-data
	/run/user-data
	echo "podvisor-guest: user-data exited with $?"
fi
say ready
EOF

cat >"$root/etc/udhcpc.sh" <<'EOF'
#!/bin/sh
# udhcpc event script: configure $interface from the lease.
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	[ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
	while ip route del default dev "$interface" 2>/dev/null; do :; done
	if [ -n "$staticroutes" ]; then
		# RFC 3442: with classless routes the router option is ignored.
		set -- $staticroutes
		while [ $# -ge 2 ]; do
			if [ "$2" = "0.0.0.0" ]; then
				ip route replace "$1" dev "$interface"
			else
				ip route replace "$1" via "$2" dev "$interface" onlink
			fi
			shift 2
		done
	elif [ -n "$router" ]; then
		set -- $router
		ip route replace default via "$1" dev "$interface" onlink
	fi
	: >/etc/resolv.conf
	[ -n "$search" ] && echo "search $search" >>/etc/resolv.conf
	[ -z "$search" ] && [ -n "$domain" ] && echo "search $domain" >>/etc/resolv.conf
	for ns in $dns; do echo "nameserver $ns" >>/etc/resolv.conf; done
	;;
esac
exit 0
EOF

cat >"$root/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo "podvisor-guest: ACPI power button, powering off" >/dev/console
exec poweroff
EOF
chmod +x "$root/etc/rcS" "$root/etc/udhcpc.sh" "$root/etc/acpi/PWRF/00000080"
echo 'root::0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -9 >initrd.gz

# --- boot disk ----------------------------------------------------------------
cat >syslinux.cfg <<'EOF'
SERIAL 0 115200
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND console=ttyS0,115200 quiet
EOF
cp "kpkg/boot/vmlinuz-$kver" vmlinuz
size_mb=$(( ($(stat -c %s vmlinuz) + $(stat -c %s initrd.gz)) / 1048576 + 8 ))
truncate -s "${size_mb}M" disk.raw
mkfs.vfat -n PODVISOR disk.raw >/dev/null
syslinux --install disk.raw
mcopy -i disk.raw syslinux.cfg vmlinuz initrd.gz ::/
qemu-img convert -c -O qcow2 disk.raw "$work/guest.qcow2"
mv "$work/guest.qcow2" "$image"
echo "$want" >"$stamp"
echo "build-guest: built $image (kernel $kver, $(du -h "$image" | cut -f1))"
