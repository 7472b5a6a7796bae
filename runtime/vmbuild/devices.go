package vmbuild

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/podvisor/podvisor/runtime/annotations"
	"github.com/podvisor/podvisor/runtime/domain"
	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/image"
	"github.com/podvisor/podvisor/runtime/podtypes"
	"github.com/podvisor/podvisor/runtime/volume"
)

// planDevices sorts the container's devices (block volumes) into the
// persistent root volume and the block disks; a device that cannot be
// passed is an InvalidArgument naming it.
func planDevices(sb *podtypes.Sandbox, c *podtypes.Container) (*volume.DevicePlan, error) {
	devs := make([]volume.Device, 0, len(c.Config.Devices))
	for _, d := range c.Config.Devices {
		// CRI permissions are cgroup device rules ("rwm"); no "w" is a
		// read-only claim. Empty: kubelet's default, read-write.
		ro := d.Permissions != "" && !strings.Contains(d.Permissions, "w")
		devs = append(devs, volume.Device{ContainerPath: d.ContainerPath, HostPath: d.HostPath, ReadOnly: ro})
	}
	p, err := volume.PlanDevices(devs)
	if err != nil {
		return nil, errdefs.InvalidArgumentf("pod %s/%s: %w", sb.Config.Namespace, sb.Config.Name, err)
	}
	return p, nil
}

// persistentRoot makes the volume at devicePath "/" the root disk: the
// image is written to it on first use, a marked volume is booted as the
// last VM left it (volume.PrepareRoot). A volume too small for the image,
// or with a marker podvisor cannot read, is an InvalidArgument naming it.
func (a *Assembler) persistentRoot(ctx context.Context, sb *podtypes.Sandbox, dev *volume.Device, vm *annotations.VMConfig, imagePath string) (domain.Disk, error) {
	pod := sb.Config.Namespace + "/" + sb.Config.Name
	size, format, err := image.VirtualSize(imagePath)
	if err != nil {
		return domain.Disk{}, fmt.Errorf("pod %s: %s (%s): reading the image for the persistent root volume: %w", pod, dev, dev.Volume(), err)
	}
	d, err := a.cfg.PrepareRoot(ctx, dev.HostPath, volume.RootImage{Path: imagePath, Format: format, Size: size})
	if err != nil {
		var unusable *volume.UnusableRootError
		if errors.As(err, &unusable) {
			return domain.Disk{}, errdefs.InvalidArgumentf("pod %s: %s (%s) as the persistent root filesystem: %w", pod, dev, dev.Volume(), err)
		}
		return domain.Disk{}, fmt.Errorf("pod %s: %s (%s) as the persistent root filesystem: %w", pod, dev, dev.Volume(), err)
	}
	log := a.cfg.Logger.With("pod", pod, "device", dev.HostPath, "volume", dev.Volume())
	switch {
	case d.Initialize:
		log.Info("persistent root volume initialized: the image written after podvisor's marker", "image", d.Marker.Image, "imageBytes", size)
	case d.Origin == volume.RootVirtlet:
		log.Info("persistent root volume made by Virtlet: booted as it is, from its second sector")
	default:
		log.Info("persistent root volume booted as it is (never rewritten)", "writtenFrom", d.Marker.Image, "written", d.Marker.Written)
	}
	if vm.RootVolumeSize > int64(d.Size) {
		log.Warn("VirtletRootVolumeSize is larger than the persistent root volume: the volume's size is the root disk's", "asked", vm.RootVolumeSize, "bytes", d.Size)
	}
	return domain.Disk{Path: dev.HostPath, Format: domain.FormatRaw, Block: true, Offset: d.Offset, Size: d.Size}, nil
}
