package domain

import (
	"encoding/xml"
	"errors"
	"fmt"
	"sort"

	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/cgroups"
)

// Retarget says what a restored VM changes of its checkpointed domain: its
// identity and the host side of its devices. The virtual hardware (the
// devices, their addresses, memory, CPUs) is the checkpoint's: a memory
// state restores only into the hardware it was saved from.
type Retarget struct {
	// Name and UUID of the new domain.
	Name string
	UUID string
	// Pod identity for the title and podvisor's metadata.
	PodUID, PodName, PodNamespace, ContainerName string
	Attempt                                      uint32
	// Paths maps the file of each disk of the checkpointed domain to its
	// new place; a disk whose file is not in it keeps its source.
	Paths map[string]string
	// ConsoleSocket and DisplaySocket are the new sockets ("" keeps none).
	ConsoleSocket string
	DisplaySocket string
	// Emulator is the QEMU binary or wrapper ("" = libvirt's default).
	Emulator string
	// QEMUEnv replaces the host side of the emulator's environment (the
	// pod network's namespace and NICs for the wrapper).
	QEMUEnv map[string]string
	// Cgroup is the new VM's cgroup the wrapper joins ("" joins none):
	// the checkpointed one's is another VM's, or on another node none.
	Cgroup string
}

// RetargetXML returns saved, a checkpointed domain's definition, moved to
// the new identity and files of rt. libvirt checks on restore that the
// hardware did not change; this changes none of it.
func RetargetXML(saved string, rt Retarget) (string, error) {
	if !validName(rt.Name) || rt.UUID == "" || rt.PodUID == "" {
		return "", fmt.Errorf("retargeting a domain: name %q, UUID %q and pod UID %q are required", rt.Name, rt.UUID, rt.PodUID)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(saved); err != nil {
		return "", fmt.Errorf("retargeting a domain: the checkpointed definition does not parse: %w", err)
	}
	if d.Devices == nil {
		return "", errors.New("retargeting a domain: the checkpointed definition has no devices")
	}
	oldUUID := d.UUID
	d.ID = nil
	d.Name, d.UUID = rt.Name, rt.UUID
	d.Title = rt.PodNamespace + "/" + rt.PodName
	if err := retargetMetadata(&d, rt); err != nil {
		return "", err
	}
	for _, si := range d.SysInfo {
		if si.SMBIOS == nil || si.SMBIOS.System == nil {
			continue
		}
		for i, e := range si.SMBIOS.System.Entry {
			if e.Name == "uuid" && e.Value == oldUUID {
				si.SMBIOS.System.Entry[i].Value = rt.UUID // libvirt wants them equal
			}
		}
	}
	retargetDisks(d.Devices, rt.Paths)
	retargetChardevs(d.Devices, rt.ConsoleSocket)
	for i := range d.Devices.Graphics {
		if v := d.Devices.Graphics[i].VNC; v != nil && v.Socket != "" {
			v.Socket = rt.DisplaySocket
			v.Listeners = []libvirtxml.DomainGraphicListener{{Socket: &libvirtxml.DomainGraphicListenerSocket{Socket: rt.DisplaySocket}}}
		}
	}
	d.Devices.Emulator = rt.Emulator
	retargetEnv(&d, rt.QEMUEnv, rt.Cgroup)
	return Marshal(&d)
}

func retargetMetadata(d *libvirtxml.Domain, rt Retarget) error {
	m, err := ReadMetadata(d)
	if errors.Is(err, ErrNoMetadata) {
		m, err = &Metadata{}, nil
	}
	if err != nil {
		return fmt.Errorf("retargeting domain %s: %w", d.Name, err)
	}
	m.XMLName = xml.Name{}
	m.PodUID, m.PodName, m.PodNamespace, m.ContainerName, m.Attempt = rt.PodUID, rt.PodName, rt.PodNamespace, rt.ContainerName, rt.Attempt
	b, err := xml.Marshal(m)
	if err != nil {
		return fmt.Errorf("marshalling domain metadata: %w", err)
	}
	d.Metadata = &libvirtxml.DomainMetadata{XML: string(b)}
	return nil
}

// retargetDisks moves disk files per paths and drops the backing chains
// libvirt reported for the old files (it reads the new ones' itself).
func retargetDisks(dev *libvirtxml.DomainDeviceList, paths map[string]string) {
	for i := range dev.Disks {
		disk := &dev.Disks[i]
		if disk.Source == nil || disk.Source.File == nil {
			continue
		}
		if p, ok := paths[disk.Source.File.File]; ok {
			disk.Source.File.File = p
		}
		disk.BackingStore = nil
	}
}

// retargetChardevs puts the serial console on its new socket and leaves
// the guest agent's socket to libvirt, which names it after the domain.
func retargetChardevs(dev *libvirtxml.DomainDeviceList, console string) {
	for i := range dev.Serials {
		if s := dev.Serials[i].Source; s != nil && s.UNIX != nil {
			s.UNIX.Path = console
		}
	}
	for i := range dev.Consoles {
		if s := dev.Consoles[i].Source; s != nil && s.UNIX != nil {
			s.UNIX.Path = console
		}
	}
	for i := range dev.Channels {
		ch := &dev.Channels[i]
		if ch.Target != nil && ch.Target.VirtIO != nil && ch.Target.VirtIO.Name == GuestAgentChannel && ch.Source != nil && ch.Source.UNIX != nil {
			ch.Source.UNIX.Path = ""
		}
	}
}

func retargetEnv(d *libvirtxml.Domain, given map[string]string, cgroup string) {
	env := make(map[string]string, len(given)+2)
	for k, v := range given {
		env[k] = v
	}
	if cgroup != "" {
		env[cgroups.EnvCgroup] = cgroup
	}
	if d.QEMUCommandline == nil {
		if len(env) == 0 {
			return
		}
		d.QEMUCommandline = &libvirtxml.DomainQEMUCommandline{}
	}
	names := make([]string, 0, len(env))
	for n := range env {
		names = append(names, n)
	}
	sort.Strings(names)
	d.QEMUCommandline.Envs = nil
	for _, n := range names {
		d.QEMUCommandline.Envs = append(d.QEMUCommandline.Envs, libvirtxml.DomainQEMUCommandlineEnv{Name: n, Value: env[n]})
	}
	if len(d.QEMUCommandline.Envs) == 0 && len(d.QEMUCommandline.Args) == 0 {
		d.QEMUCommandline = nil
	}
}
