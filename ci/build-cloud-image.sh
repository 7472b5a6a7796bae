#!/bin/bash
# Builds a Debian 12 cloud image the way a user would boot one: the
# distribution's own cloud-init, systemd, openssh-server, qemu-guest-agent and
# cloud-guest-utils (growpart), a Debian kernel and initramfs on an ext4 root
# partition booted by extlinux from the disk's MBR. Packed as
# OUTDIR/podvisor-debian12-cloud.qcow2 (2 GiB virtual, ~300 MB).
#
#   ci/build-cloud-image.sh OUTDIR
#
# Built from Debian packages through apt's configured mirror (mmdebstrap with
# the machine's apt sources): nothing else is fetched. Root (loop device and
# mount). Cached like ci/build-guest.sh: nothing is rebuilt while the qcow2
# exists and this script is unchanged (its sha256 is stored beside the
# image); concurrent builds into one OUTDIR take turns on OUTDIR/.lock.
#
# What a user gets, as on Debian's own cloud images:
#  - cloud-init reads NoCloud (cidata) and ConfigDrive (config-2) drives;
#    its default user is "debian" (ssh keys from the meta-data, sudo);
#  - networking: ifupdown with cloud-init's ENI renderer, resolvconf writes
#    /etc/resolv.conf (the ENI dns-* lines), DHCP by dhclient when the drive
#    has no network config;
#  - the console is ttyS0 (the kernel's last console=, a getty on it);
#  - growpart + resize2fs grow the root partition to the disk's size;
#  - qemu-guest-agent on org.qemu.guest_agent.0; systemd-logind powers off
#    on the ACPI power button.
set -euo pipefail

out="${1:?usage: $0 OUTDIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
image="$out/podvisor-debian12-cloud.qcow2"
stamp="$image.script-sha256"
self="$(readlink -f "${BASH_SOURCE[0]}")"
want="$(sha256sum "$self" | cut -d' ' -f1)"
suite=bookworm
size=2G
label=cloudimg-rootfs

log() { echo "build-cloud-image: $*" >&2; }
die() { log "$*"; exit 1; }

# One build per OUTDIR at a time: a second caller waits, then finds the
# image up to date.
exec 9>"$out/.lock"
flock 9
if [ -f "$image" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	log "$image is up to date"
	exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root (mmdebstrap, a loop device and a mount)"
for tool in mmdebstrap extlinux losetup sfdisk mkfs.ext4 dumpe2fs debugfs unshare qemu-img mount; do
	command -v "$tool" >/dev/null || die "$tool missing (run ci/install-deps.sh: ci/deps-cloudimage.txt)"
done
mbr=/usr/lib/syslinux/mbr/mbr.bin
[ -f "$mbr" ] || die "$mbr missing (syslinux-common)"

packages=(
	systemd systemd-sysv udev dbus libpam-systemd
	linux-image-amd64 initramfs-tools
	cloud-init cloud-guest-utils fdisk e2fsprogs
	openssh-server sudo qemu-guest-agent
	ifupdown isc-dhcp-client resolvconf net-tools iproute2 netbase iputils-ping
	locales tzdata procps less
)
# Drivers a VM never needs, left out to keep the image small.
excludes=()
for d in gpu media net/wireless net/ethernet infiniband staging isdn bluetooth usb/serial sound; do
	excludes+=("--dpkgopt=path-exclude=/lib/modules/*/kernel/drivers/$d/*")
done
excludes+=("--dpkgopt=path-exclude=/lib/modules/*/kernel/sound/*")

# The root as cloud images ship it: no host keys, no machine-id, the
# datasources podvisor writes, the console on the serial port.
customize=$(
	cat <<'EOF'
set -e
r="$1"
sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' "$r/etc/locale.gen"
chroot "$r" locale-gen >/dev/null
echo LANG=en_US.UTF-8 >"$r/etc/default/locale"
cat >"$r/etc/cloud/cloud.cfg.d/90_dpkg.cfg" <<'CFG'
# podvisor writes NoCloud (cidata) and ConfigDrive (config-2) drives.
datasource_list: [ NoCloud, ConfigDrive, None ]
CFG
cat >>"$r/etc/cloud/cloud.cfg.d/90_dpkg.cfg" <<'CFG'
# As Debian's cloud images: /etc/hosts names the instance (sudo, and
# anything else that resolves its own host name, needs it).
manage_etc_hosts: true
CFG
# No lo stanza of our own: cloud-init's ENI renderer always writes one in
# interfaces.d/50-cloud-init, carrying the network config's global DNS
# servers and searches (dns-nameservers on lo); a second "iface lo" here is
# brought up after it and its empty resolvconf record replaces lo's, which
# loses them. systemd brings lo up by itself.
cat >"$r/etc/network/interfaces" <<'ENI'
# cloud-init writes interfaces.d/50-cloud-init, lo included.
source /etc/network/interfaces.d/*
ENI
mkdir -p "$r/etc/network/interfaces.d"
echo "LABEL=cloudimg-rootfs / ext4 defaults,errors=remount-ro 0 1" >"$r/etc/fstab"
echo debian >"$r/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
rm -f "$r"/etc/ssh/ssh_host_*
: >"$r/etc/machine-id"
rm -f "$r/var/lib/dbus/machine-id"
ln -sf ../run/resolvconf/resolv.conf "$r/etc/resolv.conf"
rm -rf "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/* "$r"/var/log/*.log
EOF
)

work="$(mktemp -d "$out/.build.XXXXXX")"
mnt="$work/mnt"
loop=""
cleanup() {
	set +e
	mountpoint -q "$mnt" && umount "$mnt"
	[ -n "$loop" ] && losetup -d "$loop"
	rm -rf "$work"
}
trap cleanup EXIT

sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
	[ -s "$f" ] && sources+=("$f")
done
[ "${#sources[@]}" -gt 0 ] || die "no apt sources in /etc/apt: mmdebstrap needs a Debian mirror"

log "mmdebstrap $suite: ${packages[*]}"
mmdebstrap --variant=minbase --skip=output/dev \
	--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
	"${excludes[@]}" \
	--include="$(
		IFS=,
		echo "${packages[*]}"
	)" \
	--customize-hook="$customize" \
	"$suite" "$work/root.tar" "${sources[@]}" >&2

kver="$(tar -tf "$work/root.tar" | sed -n 's#^\./boot/vmlinuz-##p' | head -n1)"
[ -n "$kver" ] || die "no kernel in the root"
tar -tf "$work/root.tar" "./boot/initrd.img-$kver" >/dev/null || die "no initramfs for $kver"

# One bootable MBR partition from 1 MiB to the end. ext4 without the 64bit
# feature: extlinux (syslinux 6.04) cannot read 64bit ext4.
truncate -s "$size" "$work/disk.raw"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$work/disk.raw"
bytes=$(stat -c %s "$work/disk.raw")
loop="$(losetup -f --show --offset $((2048 * 512)) --sizelimit $((bytes - 2048 * 512)) "$work/disk.raw")"
mkfs.ext4 -q -O ^64bit -L "$label" "$loop"
# The root is written in a mount namespace of our own: a mount made in the
# machine's namespace is copied into every namespace another process makes
# meanwhile (unshare, ip netns exec), where it stays mounted after our
# umount: the file system is then never finished (its superblock still says
# needs_recovery, data may be unwritten) and the image boots without a
# consistent root.
populate() {
	set -euo pipefail
	local loop=$1 mnt=$2 tarball=$3 kver=$4 label=$5
	mkdir -p "$mnt"
	mount "$loop" "$mnt"
	tar -C "$mnt" --numeric-owner --xattrs --xattrs-include='*' -xpf "$tarball"
	# mmdebstrap --skip=output/dev leaves out /dev itself: the initramfs
	# moves its /dev there and opens /dev/console before starting init.
	[ -d "$mnt/dev" ] || mkdir -m 0755 "$mnt/dev"
	mkdir -p "$mnt/boot/extlinux"
	printf '%s\n' "SERIAL 0 115200" "DEFAULT debian" "PROMPT 0" "TIMEOUT 0" "LABEL debian" \
		"  KERNEL /boot/vmlinuz-$kver" "  INITRD /boot/initrd.img-$kver" \
		"  APPEND root=LABEL=$label ro console=tty0 console=ttyS0,115200n8" >"$mnt/boot/extlinux/extlinux.conf"
	extlinux --install "$mnt/boot/extlinux" >&2
	umount "$mnt"
}
export -f populate
unshare -m --propagation private bash -c 'populate "$@"' populate "$loop" "$mnt" "$work/root.tar" "$kver" "$label"
rm -f "$work/root.tar"
# A file system still in use somewhere, or not cleanly unmounted, must not
# become the image.
if dumpe2fs -h "$loop" 2>/dev/null | grep -E '^Filesystem features:.*needs_recovery' >/dev/null; then
	die "the root file system was not cleanly unmounted (needs_recovery): not packing it"
fi
debugfs -R 'stat /dev' "$loop" 2>/dev/null | grep 'Type: directory' >/dev/null || die "the root has no /dev directory"
losetup -d "$loop"
loop=""
dd if="$mbr" of="$work/disk.raw" bs=440 count=1 conv=notrunc status=none

qemu-img convert -c -O qcow2 "$work/disk.raw" "$work/image.qcow2"
mv "$work/image.qcow2" "$image"
echo "$want" >"$stamp"
log "built $image (kernel $kver, $(du -h "$image" | cut -f1))"
