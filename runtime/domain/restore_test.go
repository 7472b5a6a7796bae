package domain

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/annotations"
)

// A retargeted domain has the new identity, files, sockets and
// environment, and every other part of the checkpointed one unchanged.
func TestRetargetXML(t *testing.T) {
	in := validInput(t, map[string]string{annotations.KeyRootVolumeSize: "8Gi"})
	in.DisplaySocket = "/var/lib/podvisor/vms/pv-old/vnc.sock"
	in.QEMUEnv = map[string]string{"PODVISOR_NETNS": "/run/netns/old", "PODVISOR_NICS": "pv-tap0=0a:58:0a:00:00:05"}
	in.Cgroup = "/kubepods/podold/pv-old"
	d, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	d.Devices.Channels[0].Source.UNIX.Path = "/var/lib/libvirt/qemu/channel/target/domain-3-pv-old/org.qemu.guest_agent.0"
	saved, err := Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	rt := Retarget{
		Name: "pv-0123456789abcdef", UUID: "8c3e0e57-54b5-4a5d-9d07-0f5a36cb5a9e",
		PodUID: "new-uid", PodName: "restored", PodNamespace: "prod", ContainerName: "vm", Attempt: 0,
		Paths:         map[string]string{in.RootDisk.Path: "/new/root.qcow2", in.CloudInitISO: "/new/cloudinit.iso"},
		ConsoleSocket: "/new/console.sock", DisplaySocket: "/new/vnc.sock",
		Emulator: "/usr/libexec/podvisor-vmwrapper",
		QEMUEnv:  map[string]string{"PODVISOR_NETNS": "/run/netns/new", "PODVISOR_NICS": "pv-tap0=0a:58:0a:01:00:07"},
		Cgroup:   "/kubepods/podnew/pv-0123456789abcdef",
	}
	out, err := RetargetXML(saved, rt)
	if err != nil {
		t.Fatal(err)
	}
	var got libvirtxml.Domain
	if err := got.Unmarshal(out); err != nil {
		t.Fatal(err)
	}
	if got.Name != rt.Name || got.UUID != rt.UUID || got.Title != "prod/restored" || got.Devices.Emulator != rt.Emulator {
		t.Errorf("identity: %s %s %q %s", got.Name, got.UUID, got.Title, got.Devices.Emulator)
	}
	m, err := ReadMetadata(&got)
	if err != nil || m.PodUID != "new-uid" || m.PodName != "restored" || m.PodNamespace != "prod" || m.RootVolumeSize != 8<<30 {
		t.Errorf("metadata = %+v, %v (the root volume size stays)", m, err)
	}
	disks := got.Devices.Disks
	if disks[0].Source.File.File != "/new/root.qcow2" || disks[len(disks)-1].Source.File.File != "/new/cloudinit.iso" {
		t.Errorf("root %s, drive %s", disks[0].Source.File.File, disks[len(disks)-1].Source.File.File)
	}
	if disks[1].Source.File.File != in.VolumeDisks[0].Path {
		t.Errorf("a disk not in Paths moved to %s", disks[1].Source.File.File)
	}
	if p := got.Devices.Serials[0].Source.UNIX.Path; p != "/new/console.sock" {
		t.Errorf("console socket %s", p)
	}
	if p := got.Devices.Channels[0].Source.UNIX.Path; p != "" {
		t.Errorf("agent socket %s, want libvirt's choice", p)
	}
	if v := got.Devices.Graphics[0].VNC; v.Socket != "/new/vnc.sock" || v.Listeners[0].Socket.Socket != "/new/vnc.sock" {
		t.Errorf("display %+v", v)
	}
	wantEnv := []libvirtxml.DomainQEMUCommandlineEnv{{Name: "PODVISOR_CGROUP", Value: rt.Cgroup},
		{Name: "PODVISOR_NETNS", Value: "/run/netns/new"}, {Name: "PODVISOR_NICS", Value: "pv-tap0=0a:58:0a:01:00:07"}}
	if diff := cmp.Diff(wantEnv, got.QEMUCommandline.Envs); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}

	// Everything else is the checkpoint's: put the changed parts back and
	// compare with the saved definition.
	var orig libvirtxml.Domain
	if err := orig.Unmarshal(saved); err != nil {
		t.Fatal(err)
	}
	got.Name, got.UUID, got.Title, got.Metadata = orig.Name, orig.UUID, orig.Title, orig.Metadata
	got.Devices.Emulator = orig.Devices.Emulator
	got.Devices.Disks[0].Source.File.File = orig.Devices.Disks[0].Source.File.File
	got.Devices.Disks[len(disks)-1].Source.File.File = orig.Devices.Disks[len(disks)-1].Source.File.File
	got.Devices.Serials = orig.Devices.Serials
	got.Devices.Channels = orig.Devices.Channels
	got.Devices.Graphics = orig.Devices.Graphics
	got.QEMUCommandline.Envs = orig.QEMUCommandline.Envs
	a, _ := got.Marshal()
	b, _ := orig.Marshal()
	if diff := cmp.Diff(b, a); diff != "" {
		t.Errorf("retargeting changed more than it should (-saved +retargeted):\n%s", diff)
	}
}

func TestRetargetXMLRefusals(t *testing.T) {
	ok := Retarget{Name: "pv-0123456789abcdef", UUID: "8c3e0e57-54b5-4a5d-9d07-0f5a36cb5a9e", PodUID: "u"}
	for name, tc := range map[string]struct {
		saved string
		rt    Retarget
	}{
		"no name":    {"<domain type='qemu'><devices/></domain>", Retarget{UUID: ok.UUID, PodUID: "u"}},
		"no pod UID": {"<domain type='qemu'><devices/></domain>", Retarget{Name: ok.Name, UUID: ok.UUID}},
		"not XML":    {"{json}", ok},
		"no devices": {"<domain type='qemu'><name>x</name></domain>", ok},
	} {
		if _, err := RetargetXML(tc.saved, tc.rt); err == nil {
			t.Errorf("%s: RetargetXML succeeded", name)
		}
	}
}
