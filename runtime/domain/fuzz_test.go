package domain

import (
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/annotations"
)

// FuzzBuild drives annotations.Parse and Build with arbitrary annotations
// and inputs. Nothing may panic; a refused input must be an error naming the
// field; an accepted one must marshal, and read back to the same XML.
func FuzzBuild(f *testing.F) {
	f.Add("2", "virtio", "mode: host-model", "", int64(512<<20), int64(1024), int64(100000), int64(50000), uint8(2), true, "kvm",
		testContainerID, "b7d4c2a0-5e1f-4c3b-9a8d-7e6f5a4b3c2d", "vm", "/var/lib/podvisor/vol.raw", "PODVISOR_NETNS", "/var/run/netns/x")
	f.Add("1", "scsi", "", "6ed9e1c2-8f3b-4a57-9c0d-2b1e3f4a5b6c", int64(0), int64(0), int64(0), int64(0), uint8(0), false, "qemu",
		"c1", "uid", "<pod & \"name\">", "/a b/c'd.qcow2", "X", "a&b<c>")
	f.Fuzz(func(t *testing.T, vcpu, driver, cpuSetting, sysUUID string, mem, shares, period, quota int64, vols uint8, ci bool, dtype,
		containerID, podUID, podName, volPath, envName, envValue string) {
		vm, err := annotations.Parse(map[string]string{
			annotations.KeyVCPUCount:         vcpu,
			annotations.KeyDiskDriver:        driver,
			annotations.KeyLibvirtCPUSetting: cpuSetting,
			annotations.KeySystemUUID:        sysUUID,
		}, annotations.Resources{MemoryLimitBytes: mem, CPUShares: shares, CPUPeriod: period, CPUQuota: quota}, nil)
		if err != nil {
			return // FuzzParse covers the errors
		}
		name := NameFor(containerID)
		in := Input{
			Name: name, PodUID: podUID, PodName: podName, PodNamespace: "ns", DomainType: dtype, VM: vm,
			RootDisk:      Disk{Path: "/var/lib/podvisor/" + name + ".qcow2", Format: FormatQCOW2},
			ConsoleSocket: "/run/podvisor/" + name + ".sock",
			QEMUEnv:       map[string]string{envName: envValue},
		}
		for i := 0; i < int(vols%24); i++ {
			in.VolumeDisks = append(in.VolumeDisks, Disk{Path: volPath, Format: FormatRaw, ReadOnly: i%2 == 1})
		}
		if ci {
			in.CloudInitISO = "/var/lib/podvisor/" + name + ".iso"
		}
		d, err := Build(in)
		if err != nil {
			if d != nil || !strings.HasPrefix(err.Error(), "domain input ") {
				t.Fatalf("Build error %q (domain %v): want only an error naming the input field", err, d)
			}
			return
		}
		s, err := Marshal(d)
		if err != nil {
			t.Fatalf("Marshal of a built domain: %v", err)
		}
		var back libvirtxml.Domain
		if err := back.Unmarshal(s); err != nil {
			t.Fatalf("reading back the marshalled domain: %v\n%s", err, s)
		}
		again, err := Marshal(&back)
		if err != nil {
			t.Fatal(err)
		}
		if again != s {
			t.Fatalf("XML changed on a round trip:\n%s\n---\n%s", s, again)
		}
		m, err := ReadMetadata(&back)
		if err != nil || m.PodUID != podUID || m.PodName != podName {
			t.Fatalf("metadata read back %+v, %v; want pod %q %q", m, err, podUID, podName)
		}
		if n := len(back.Devices.Disks); n != 1+len(in.VolumeDisks)+btoi(ci) {
			t.Fatalf("%d disks read back, want %d", n, 1+len(in.VolumeDisks)+btoi(ci))
		}
	})
}
