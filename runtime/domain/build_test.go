package domain

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/annotations"
)

func TestNameFor(t *testing.T) {
	tests := []struct{ id, want string }{
		{testContainerID, "pv-3f1c9e7ab2d04c51"},
		{"3F1C9E7AB2D04C51FFFF", "pv-3f1c9e7ab2d04c51"},
		{"1b4e28ba-2fa1-11d2-883f-0016d3cca427", "pv-1b4e28ba2fa111d2"},
	}
	for _, tt := range tests {
		if got := NameFor(tt.id); got != tt.want {
			t.Errorf("NameFor(%q) = %q, want %q", tt.id, got, tt.want)
		}
	}
	// Anything that is not (long enough) hex is hashed: still short, valid,
	// stable and different for different IDs.
	seen := map[string]string{}
	for _, id := range []string{"", "abc", "my container/1", "my container/2", "0123456789abcde", "zzzzzzzzzzzzzzzzzzzz"} {
		n := NameFor(id)
		if n != NameFor(id) {
			t.Errorf("NameFor(%q) is not stable", id)
		}
		if len(n) != 19 || !validName(n) {
			t.Errorf("NameFor(%q) = %q: want pv- and 16 hex digits", id, n)
		}
		if other, dup := seen[n]; dup {
			t.Errorf("NameFor(%q) = NameFor(%q) = %q", id, other, n)
		}
		seen[n] = id
	}
}

func TestUUIDFor(t *testing.T) {
	a := UUIDFor("pod-a", 0)
	if a != UUIDFor("pod-a", 0) {
		t.Fatal("UUIDFor is not deterministic")
	}
	u, err := uuid.Parse(a)
	if err != nil || u.Version() != 5 {
		t.Fatalf("UUIDFor = %q (version %d, err %v): want a version 5 UUID", a, u.Version(), err)
	}
	for _, other := range []string{UUIDFor("pod-b", 0), UUIDFor("pod-a", 1), UUIDFor("pod-a", 2)} {
		if other == a {
			t.Errorf("UUIDFor collides: %s", other)
		}
	}
}

func TestDiskName(t *testing.T) {
	for i, want := range map[int]string{0: "sda", 1: "sdb", 25: "sdz", 26: "sdaa", 27: "sdab", 51: "sdaz", 52: "sdba", 701: "sdzz", 702: "sdaaa"} {
		if got := DiskName("sd", i); got != want {
			t.Errorf("DiskName(sd, %d) = %q, want %q", i, got, want)
		}
	}
}

func validInput(t *testing.T, ann map[string]string) Input {
	t.Helper()
	return goldenCase{name: "t", ann: ann, ci: "nocloud", vols: 2}.input(t)
}

func TestBuildDiskLayout(t *testing.T) {
	for _, driver := range []string{"scsi", "virtio"} {
		in := validInput(t, map[string]string{annotations.KeyDiskDriver: driver})
		d, err := Build(in)
		if err != nil {
			t.Fatal(err)
		}
		disks := d.Devices.Disks
		wantPaths := []string{in.RootDisk.Path, in.VolumeDisks[0].Path, in.VolumeDisks[1].Path, in.CloudInitISO}
		if len(disks) != len(wantPaths) {
			t.Fatalf("%s: %d disks, want %d", driver, len(disks), len(wantPaths))
		}
		prefix := map[string]string{"scsi": "sd", "virtio": "vd"}[driver]
		for i, dd := range disks {
			if dd.Source.File.File != wantPaths[i] {
				t.Errorf("%s: disk %d is %s, want %s", driver, i, dd.Source.File.File, wantPaths[i])
			}
			if want := DiskName(prefix, i); dd.Target.Dev != want || dd.Target.Bus != driver {
				t.Errorf("%s: disk %d target %s on %s, want %s on %s", driver, i, dd.Target.Dev, dd.Target.Bus, want, driver)
			}
			if (dd.Boot != nil) != (i == 0) {
				t.Errorf("%s: disk %d boot = %v; only the root disk boots", driver, i, dd.Boot)
			}
			if driver == "scsi" && (dd.Address == nil || dd.Address.Drive == nil || *dd.Address.Drive.Unit != uint(i)) {
				t.Errorf("scsi: disk %d lacks drive address unit %d", i, i)
			}
			if driver == "virtio" && dd.Address != nil {
				t.Errorf("virtio: disk %d has an address; libvirt assigns PCI slots", i)
			}
		}
		ci := disks[len(disks)-1]
		if ci.ReadOnly == nil || ci.Driver.Type != "raw" {
			t.Errorf("%s: cloud-init drive must be raw and read-only: %+v", driver, ci)
		}
		nctl := len(d.Devices.Controllers)
		if driver == "scsi" && (nctl != 1 || d.Devices.Controllers[0].Model != "virtio-scsi") {
			t.Errorf("scsi: want one virtio-scsi controller, got %+v", d.Devices.Controllers)
		}
		if driver == "virtio" && nctl != 0 {
			t.Errorf("virtio: want no controller, got %+v", d.Devices.Controllers)
		}
	}
}

func TestBuildIdentityAndResources(t *testing.T) {
	in := validInput(t, map[string]string{annotations.KeyVCPUCount: "3", annotations.KeyRootVolumeSize: "8Gi"})
	in.VM.MemoryBytes = 768 << 20
	d, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if d.UUID != UUIDFor(in.PodUID, 0) || d.Name != in.Name || d.Type != TypeKVM {
		t.Errorf("identity: name %s uuid %s type %s", d.Name, d.UUID, d.Type)
	}
	if d.Memory.Value != 768*1024 || d.Memory.Unit != "KiB" || d.VCPU.Value != 3 {
		t.Errorf("memory %d %s, vcpus %d", d.Memory.Value, d.Memory.Unit, d.VCPU.Value)
	}
	if len(d.SysInfo) != 0 || d.CPU != nil || d.CPUTune != nil {
		t.Errorf("unexpected sysinfo %v, cpu %v or cputune %v", d.SysInfo, d.CPU, d.CPUTune)
	}
	if d.OnPoweroff != "destroy" || d.OnReboot != "restart" || d.OnCrash != "destroy" || d.Features.ACPI == nil {
		t.Errorf("lifecycle %s/%s/%s acpi %v", d.OnPoweroff, d.OnReboot, d.OnCrash, d.Features.ACPI)
	}
	s, err := Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back libvirtxml.Domain
	if err := back.Unmarshal(s); err != nil {
		t.Fatal(err)
	}
	m, err := ReadMetadata(&back)
	if err != nil {
		t.Fatal(err)
	}
	if m.PodUID != in.PodUID || m.PodName != "vm" || m.PodNamespace != "default" || m.ContainerName != "vm" || m.RootVolumeSize != 8<<30 {
		t.Errorf("metadata read back: %+v", m)
	}
	// As libvirt hands it back, with its own prefix.
	back.Metadata.XML = `<pv:instance xmlns:pv="urn:podvisor:domain:1" pod-uid="u1" attempt="2"/>`
	if m, err := ReadMetadata(&back); err != nil || m.PodUID != "u1" || m.Attempt != 2 {
		t.Errorf("prefixed metadata: %+v, %v", m, err)
	}
	back.Metadata.XML = `<other xmlns="urn:someone:else"/>`
	if _, err := ReadMetadata(&back); err != ErrNoMetadata {
		t.Errorf("foreign metadata: err = %v, want ErrNoMetadata", err)
	}
}

func TestBuildSystemUUID(t *testing.T) {
	in := validInput(t, map[string]string{annotations.KeySystemUUID: "6ED9E1C2-8F3B-4A57-9C0D-2B1E3F4A5B6C"})
	d, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	const want = "6ed9e1c2-8f3b-4a57-9c0d-2b1e3f4a5b6c"
	if d.UUID != want || d.SysInfo[0].SMBIOS.System.Entry[0].Value != want || d.OS.SMBios.Mode != "sysinfo" {
		t.Errorf("uuid %s, sysinfo %+v, smbios %+v", d.UUID, d.SysInfo, d.OS.SMBios)
	}
}

func TestBuildCPUTune(t *testing.T) {
	in := validInput(t, nil)
	in.VM.CPUShares, in.VM.CPUPeriod, in.VM.CPUQuota = 300000, 0, 25000
	d, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	ct := d.CPUTune
	if ct.Shares.Value != cpuShareCap || ct.GlobalPeriod.Value != defaultCPUPeriod || ct.GlobalQuota.Value != 25000 || ct.Quota != nil || ct.Period != nil {
		t.Errorf("cputune %+v", ct)
	}
}

func TestBuildDoesNotShareCPUSetting(t *testing.T) {
	in := validInput(t, map[string]string{annotations.KeyLibvirtCPUSetting: customCPU})
	d, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	d.CPU.Model.Value = "changed"
	d.CPU.Features[0].Name = "changed"
	if in.VM.CPUSetting.Model.Value != "Westmere" || in.VM.CPUSetting.Features[0].Name != "vmx" {
		t.Errorf("changing the domain changed the VMConfig: %+v", in.VM.CPUSetting)
	}
}

func TestBuildRejectsBadInput(t *testing.T) {
	long := "/" + strings.Repeat("s", 107)
	tests := []struct {
		name  string
		tweak func(*Input)
		want  []string
	}{
		{"empty name", func(in *Input) { in.Name = "" }, []string{"domain input Name"}},
		{"name with slash", func(in *Input) { in.Name = "a/b" }, []string{"domain input Name", `"a/b"`}},
		{"no pod uid", func(in *Input) { in.PodUID = "" }, []string{"domain input PodUID: is empty"}},
		{"newline in pod name", func(in *Input) { in.PodName = "a\nb" }, []string{"domain input PodName", "control characters"}},
		{"bad type", func(in *Input) { in.DomainType = "xen" }, []string{`domain input DomainType: "xen" is neither "kvm" nor "qemu"`}},
		{"nil vm", func(in *Input) { in.VM = nil }, []string{"domain input VM: is nil"}},
		{"relative root", func(in *Input) { in.RootDisk.Path = "root.qcow2" }, []string{"domain input RootDisk.Path", "absolute"}},
		{"no root", func(in *Input) { in.RootDisk.Path = "" }, []string{"domain input RootDisk.Path: is empty"}},
		{"bad format", func(in *Input) { in.VolumeDisks[1].Format = "vmdk" }, []string{`domain input VolumeDisks[1].Format: "vmdk"`}},
		{"bad serial", func(in *Input) { in.VolumeDisks[0].Serial = "has space" }, []string{"domain input VolumeDisks[0].Serial"}},
		{"too many disks", func(in *Input) { in.VolumeDisks = make([]Disk, 20) }, []string{"more than 20"}},
		{"long socket", func(in *Input) { in.ConsoleSocket = long }, []string{"domain input ConsoleSocket", "longer than a unix socket path"}},
		{"long display socket", func(in *Input) { in.DisplaySocket = long }, []string{"domain input DisplaySocket", "longer than a unix socket path"}},
		{"relative display socket", func(in *Input) { in.DisplaySocket = "vnc.sock" }, []string{"domain input DisplaySocket"}},
		{"pci slots", func(in *Input) {
			in.VM.DiskDriver = annotations.DiskDriverVirtio
			in.VolumeDisks = make([]Disk, 18)
			for i := range in.VolumeDisks {
				in.VolumeDisks[i] = Disk{Path: "/v", Format: FormatRaw}
			}
			in.NICs = make([]libvirtxml.DomainInterface, 5)
		}, []string{"domain input NICs", "slot 0x1f is kept"}},
		{"pci slots with shares", func(in *Input) {
			in.NICs = make([]libvirtxml.DomainInterface, 1)
			for i := 0; i < 24; i++ {
				in.Filesystems = append(in.Filesystems, Filesystem{HostPath: "/d", Tag: fmt.Sprintf("t%d", i)})
			}
		}, []string{"domain input NICs", "24 shared filesystems", "slot 0x1f is kept"}},
		{"relative share", func(in *Input) { in.Filesystems = []Filesystem{{HostPath: "data", Tag: "data"}} }, []string{"domain input Filesystems[0].HostPath", "absolute"}},
		{"no share path", func(in *Input) { in.Filesystems = []Filesystem{{Tag: "data"}} }, []string{"domain input Filesystems[0].HostPath: is empty"}},
		{"long tag", func(in *Input) { in.Filesystems = []Filesystem{{HostPath: "/d", Tag: strings.Repeat("t", 32)}} }, []string{"domain input Filesystems[0].Tag", "1 to 31"}},
		{"tag with space", func(in *Input) { in.Filesystems = []Filesystem{{HostPath: "/d", Tag: "a b"}} }, []string{`domain input Filesystems[0].Tag: "a b"`}},
		{"empty tag", func(in *Input) { in.Filesystems = []Filesystem{{HostPath: "/d"}} }, []string{`domain input Filesystems[0].Tag: ""`}},
		{"duplicate tag", func(in *Input) {
			in.Filesystems = []Filesystem{{HostPath: "/a", Tag: "data"}, {HostPath: "/b", Tag: "data"}}
		}, []string{`domain input Filesystems[1].Tag: "data" is also the tag of Filesystems[0]`}},
		{"relative iso", func(in *Input) { in.CloudInitISO = "ci.iso" }, []string{"domain input CloudInitISO"}},
		{"bad env", func(in *Input) { in.QEMUEnv = map[string]string{"1X": "v"} }, []string{`domain input QEMUEnv: "1X"`}},
		{"bad arg", func(in *Input) { in.QEMUArgs = []string{""} }, []string{"domain input QEMUArgs[0]"}},
		{"two problems", func(in *Input) { in.DomainType = ""; in.PodUID = "" }, []string{"DomainType", "PodUID"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := validInput(t, nil)
			tt.tweak(&in)
			d, err := Build(in)
			if err == nil {
				t.Fatalf("Build accepted it: %+v", d)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
