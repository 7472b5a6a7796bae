package volume

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/podvisor/podvisor/runtime/domain"
)

// Device is one CRI device: a block volume (volumeDevices) kubelet maps
// at HostPath, asked for at ContainerPath (the devicePath).
type Device struct {
	ContainerPath string
	HostPath      string
	// ReadOnly: kubelet's permissions lack "w" (a claim or volume mounted
	// readOnly).
	ReadOnly bool
}

func (d Device) String() string {
	return fmt.Sprintf("volume device at %q (host path %q)", d.ContainerPath, d.HostPath)
}

// Volume is the persistent volume's name as kubelet's host path gives it
// (.../volumeDevices/<plugin>/<pv name>), else the host path itself: what
// messages name the volume by. CRI carries no claim name.
func (d Device) Volume() string {
	if strings.Contains(d.HostPath, "/volumeDevices/") {
		return "persistent volume " + path.Base(d.HostPath)
	}
	return "device " + d.HostPath
}

// BlockDisk is a block volume given to the guest as a disk after the root
// disk, found in the guest by its Serial.
type BlockDisk struct {
	Device
	Serial string
}

// DevicePlan is what becomes of a container's devices.
type DevicePlan struct {
	// Root is the device at devicePath "/": the VM's persistent root
	// disk in place of an overlay of the image (nil: none).
	Root *Device
	// Disks are the other devices, in kubelet's (volumeDevices') order.
	Disks []BlockDisk
}

// PlanDevices sorts the container's devices into the persistent root
// volume and the block disks. A device path that is not absolute and
// clean or has control characters, a relative host path, and two devices
// at one path are errors naming them.
func PlanDevices(devs []Device) (*DevicePlan, error) {
	p := &DevicePlan{}
	var errs []error
	seen := map[string]bool{}
	for _, d := range devs {
		switch {
		case !path.IsAbs(d.ContainerPath) || path.Clean(d.ContainerPath) != d.ContainerPath || hasControl(d.ContainerPath):
			errs = append(errs, fmt.Errorf("%s: the device path is not an absolute, clean path without control characters", d))
			continue
		case !filepath.IsAbs(d.HostPath) || hasControl(d.HostPath):
			errs = append(errs, fmt.Errorf("%s: the host path is not an absolute path without control characters", d))
			continue
		case seen[d.ContainerPath]:
			errs = append(errs, fmt.Errorf("%s: another device has the same device path", d))
			continue
		}
		seen[d.ContainerPath] = true
		if d.ContainerPath == "/" {
			if d.ReadOnly {
				errs = append(errs, fmt.Errorf("%s: a read-only volume cannot be the persistent root filesystem (podvisor writes the image to it, the guest its root)", d))
				continue
			}
			dd := d
			p.Root = &dd
			continue
		}
		p.Disks = append(p.Disks, BlockDisk{Device: d, Serial: diskSerial(d.ContainerPath)})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// diskSerial is the disk serial of the device at devicePath p: "podvisor-"
// and 8 hex digits of its SHA-256 (17 characters; virtio-blk keeps 20).
// The same path gives the same serial, so the guest's link survives a
// restart with its name.
func diskSerial(p string) string {
	sum := sha256.Sum256([]byte(p))
	return "podvisor-" + hex.EncodeToString(sum[:4])
}

// VolumeDisks are the domain's disks of the block volumes, in order.
func (p *DevicePlan) VolumeDisks() []domain.Disk {
	out := make([]domain.Disk, 0, len(p.Disks))
	for _, d := range p.Disks {
		out = append(out, domain.Disk{Path: d.HostPath, Format: domain.FormatRaw, Block: true, Serial: d.Serial, ReadOnly: d.ReadOnly})
	}
	return out
}

// guestLinkFunc finds the disk with serial $1 and links path $2 to it:
// through udev's /dev/disk/by-id links (virtio-blk and QEMU's SCSI disk)
// where the guest has udev, else through sysfs (virtio-blk's serial, SCSI
// VPD page 0x80 after its 4-byte header). It waits up to 10 s for the
// disk, and never replaces a device path that is a device of its own.
const guestLinkFunc = `podvisor_link() {
  dev=
  for try in 1 2 3 4 5 6 7 8 9 10; do
    for d in "/dev/disk/by-id/virtio-$1" "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_$1"; do
      if [ -b "$d" ]; then dev=$(readlink -f "$d"); break 2; fi
    done
    for b in /sys/block/*; do
      s=$(cat "$b/serial" 2>/dev/null || tail -c +5 "$b/device/vpd_pg80" 2>/dev/null | tr -d '\000')
      if [ "$s" = "$1" ]; then dev=/dev/${b##*/}; break 2; fi
    done
    sleep 1
  done
  if [ -z "$dev" ]; then echo "podvisor: no disk with serial $1 for $2" >&2; return 1; fi
  if [ -e "$2" ] && [ ! -L "$2" ]; then
    [ "$(readlink -f "$2")" = "$dev" ] && return 0
    echo "podvisor: $2 exists and is not a link: not linking it to $dev" >&2; return 1
  fi
  mkdir -p "$(dirname "$2")" && ln -sfn "$dev" "$2" && echo "podvisor: linked $2 to $dev"
}`

// GuestLinks is the cloud-init bootcmd entry (nil when there are no block
// disks) that links each block volume's device path to its disk in the
// guest, as Virtlet did: the device path the pod asked for (/dev/testpvc)
// becomes a symbolic link to the disk (/dev/vdb). bootcmd runs at every
// boot (the links live in the guest's /dev, which each boot makes anew)
// and before cloud-init's mounts, so user-data that mounts the device
// path works; it runs before write_files too, so the script is inline.
func (p *DevicePlan) GuestLinks() []string {
	if len(p.Disks) == 0 {
		return nil
	}
	// A subshell: its exit ends only this entry, not the bootcmd
	// entries cloud-init runs after it in the same script.
	lines := []string{"(", guestLinkFunc, "rc=0"}
	for _, d := range p.Disks {
		lines = append(lines, fmt.Sprintf("podvisor_link %s %s || rc=1", shellQuote(d.Serial), shellQuote(d.ContainerPath)))
	}
	lines = append(lines, "exit $rc", ")")
	return []string{strings.Join(lines, "\n") + "\n"}
}
