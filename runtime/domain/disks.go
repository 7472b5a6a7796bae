package domain

import (
	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/annotations"
)

// maxDisks bounds the disks of one VM (virtio-blk disks each take a PCI slot).
const maxDisks = 20

// WrapperNICPCISlot is the slot on PCI bus 0 that libvirt's automatic
// addresses never reach in a domain Build returns: an emulator wrapper that
// adds its own NIC behind libvirt's back (-device virtio-net-pci,...,addr=0x1f)
// must put it there. libvirt fills slots upwards from 0x2: the fixed devices
// take 0x2-0x6 and each virtio disk, libvirt NIC or 9p share one more, so the slot 0x10
// of the first experiment is taken as soon as a VM has 10 virtio disks.
// This holds for the i440fx machine types ("pc", the default).
const WrapperNICPCISlot = 0x1f

// fixedPCIDevices counts slots 0x0-0x6: host bridge, PIIX3 (with USB), VGA,
// SCSI controller or its free slot, virtio-serial, balloon, RNG.
const fixedPCIDevices = 7

// disks lays out the root disk, the volume disks and the cloud-init drive,
// in this order, on the bus VirtletDiskDriver names. The root disk is
// first (vda; SCSI LUN 0, probed first, so sda in practice); the guest
// must not rely on the other disks' names: Linux probes SCSI disks
// asynchronously, so a volume and the cloud-init drive take sdb and sdc
// in either order. Block volumes are found by their serial (volume's
// GuestLinks).
func disks(in Input) ([]libvirtxml.DomainDisk, []libvirtxml.DomainController) {
	all := make([]Disk, 0, 2+len(in.VolumeDisks))
	all = append(all, in.RootDisk)
	all = append(all, in.VolumeDisks...)
	if in.CloudInitISO != "" {
		all = append(all, Disk{Path: in.CloudInitISO, Format: FormatRaw, ReadOnly: true})
	}

	scsi := in.VM.DiskDriver == annotations.DiskDriverSCSI
	prefix, bus := "vd", "virtio"
	if scsi {
		prefix, bus = "sd", "scsi"
	}
	out := make([]libvirtxml.DomainDisk, 0, len(all))
	for i, d := range all {
		dd := libvirtxml.DomainDisk{
			Device: "disk",
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: string(d.Format)},
			Target: &libvirtxml.DomainDiskTarget{Dev: DiskName(prefix, i), Bus: bus},
			Serial: d.Serial,
		}
		if d.Block {
			dd.Source = &libvirtxml.DomainDiskSource{Block: &libvirtxml.DomainDiskSourceBlock{Dev: d.Path}}
		} else {
			dd.Source = &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: d.Path}}
		}
		if d.Size != 0 {
			dd.Source.Slices = &libvirtxml.DomainDiskSlices{Slices: []libvirtxml.DomainDiskSlice{
				{Type: "storage", Offset: uint(d.Offset), Size: uint(d.Size)},
			}}
		}
		if d.ReadOnly {
			dd.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
		} else {
			// Let the guest's TRIM shrink sparse overlays and volumes.
			dd.Driver.Discard = "unmap"
		}
		if i == 0 {
			// Boot from the root disk only, never from the cloud-init drive.
			dd.Boot = &libvirtxml.DomainDeviceBoot{Order: 1}
		}
		if scsi {
			zero, unit := uint(0), uint(i)
			dd.Address = &libvirtxml.DomainAddress{Drive: &libvirtxml.DomainAddressDrive{
				Controller: &zero, Bus: &zero, Target: &zero, Unit: &unit,
			}}
		}
		out = append(out, dd)
	}
	if !scsi {
		return out, nil
	}
	zero := uint(0)
	return out, []libvirtxml.DomainController{{Type: "scsi", Index: &zero, Model: "virtio-scsi"}}
}

// DiskName is the Linux-style name of the i-th disk (0-based) with a prefix
// such as "sd": sda ... sdz, sdaa ..., as libvirt numbers targets.
func DiskName(prefix string, i int) string {
	var b []byte
	for n := i; ; n = n/26 - 1 {
		b = append([]byte{byte('a' + n%26)}, b...)
		if n < 26 {
			break
		}
	}
	return prefix + string(b)
}
