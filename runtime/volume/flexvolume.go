package volume

import (
	"fmt"
	"strings"
)

// VirtletFlexVolumeDir is the directory kubelet mounts a volume of
// Virtlet's flexvolume driver (driver "virtlet/flexvolume_driver") in,
// below the pod's volumes directory: kubelet turns the driver's "/" into
// "~".
const VirtletFlexVolumeDir = "virtlet~flexvolume_driver"

// virtletFlexVolume returns an error for a mount of a volume of Virtlet's
// flexvolume driver. podvisor ships no such driver: without one kubelet
// fails the pod before CreateContainer, so a mount that arrives is Virtlet's
// driver still installed on the node, whose directory holds only the
// driver's JSON description of a disk (qcow2, raw, ceph), not the data.
// Sharing it would silently give the guest an empty directory in place of
// the disk the pod asked for.
func virtletFlexVolume(m Mount) error {
	if !strings.Contains(m.HostPath+"/", "/volumes/"+VirtletFlexVolumeDir+"/") {
		return nil
	}
	return fmt.Errorf("volume %s: a flexVolume of Virtlet's driver virtlet/flexvolume_driver, which podvisor does not support: "+
		"use a PersistentVolumeClaim with volumeMode: Block (a CSI or local raw block volume) in volumeDevices for a disk, "+
		"or an ordinary volume in volumeMounts for files (see docs/volumes.md)", m)
}
