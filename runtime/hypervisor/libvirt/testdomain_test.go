package libvirt

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/annotations"
	"github.com/podvisor/podvisor/runtime/domain"
)

// testDomainSpec is what a test domain differs in.
type testDomainSpec struct {
	name    string
	dir     string // the console and guest agent sockets go here
	overlay string // root disk (qcow2)
	iso     string // cloud-init drive, or none
	mac     string // with a MAC: a user-mode NIC (QEMU's DHCP server) in place of podvisor's tap
	agent   bool   // the guest agent channel on dir/agent.sock; without, none (podvisor's domains always have one: this tests a domain that lacks it)
	fss     []domain.Filesystem
	root    *domain.Disk  // in place of overlay (a persistent root volume)
	vols    []domain.Disk // volume disks after the root disk
	virtio  bool          // VirtletDiskDriver virtio (default: scsi)
	// The container's resources (nil: a 256 MiB memory limit), the
	// emulator ("" = libvirt's QEMU), the VM's cgroup and its most vCPUs.
	res      *annotations.Resources
	emulator string
	cgroup   string
	maxVCPUs int
}

// buildTestDomain returns the XML of a test domain built as podvisor builds
// its VMs, by domain.Build from Virtlet's defaults (256 MiB): the root disk,
// the drive, the console on dir/console.sock, the guest agent channel if
// asked for and the shared filesystems. QEMU is libvirt's default
// emulator, not podvisor-vmwrapper, so a NIC is user-mode. The domain is
// destroyed and undefined at the end of the test.
func buildTestDomain(t *testing.T, h *Hypervisor, s testDomainSpec) string {
	t.Helper()
	var ann map[string]string
	if s.virtio {
		ann = map[string]string{annotations.KeyDiskDriver: string(annotations.DiskDriverVirtio)}
	}
	res := annotations.Resources{MemoryLimitBytes: 256 << 20}
	if s.res != nil {
		res = *s.res
	}
	vm, err := annotations.Parse(ann, res, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := domain.Input{
		Name: s.name, PodUID: "6f1e0c9a-1b2c-4d3e-8f40-5a6b7c8d9e0f", PodName: s.name, PodNamespace: "default", ContainerName: "vm",
		DomainType: h.DomainType(), VM: vm, RootDisk: domain.Disk{Path: s.overlay, Format: domain.FormatQCOW2},
		VolumeDisks: s.vols, CloudInitISO: s.iso, Filesystems: s.fss, ConsoleSocket: filepath.Join(s.dir, "console.sock"),
		Emulator: s.emulator, Cgroup: s.cgroup, MaxVCPUs: s.maxVCPUs, TCGTranslationCacheMiB: domain.DefaultTCGTranslationCacheMiB,
	}
	if s.root != nil {
		in.RootDisk = *s.root
	}
	if s.agent {
		in.GuestAgentSocket = filepath.Join(s.dir, "agent.sock")
	}
	d, err := domain.Build(in)
	if err != nil {
		t.Fatalf("domain.Build: %v", err)
	}
	if !s.agent {
		d.Devices.Channels = nil
	}
	if s.mac != "" {
		d.Devices.Interfaces = append(d.Devices.Interfaces, libvirtxml.DomainInterface{
			Source: &libvirtxml.DomainInterfaceSource{User: &libvirtxml.DomainInterfaceSourceUser{}},
			MAC:    &libvirtxml.DomainInterfaceMAC{Address: s.mac},
			Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
		})
	}
	x, err := domain.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = h.Destroy(ctx, s.name)
		_ = h.Undefine(ctx, s.name)
	})
	return x
}
