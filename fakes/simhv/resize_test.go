package simhv

import (
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// A running domain grows and shrinks within the <vcpu> and <memory> it was
// defined with, and refuses more, like libvirt's live calls.
func TestResizeWithinTheDefinedMaximum(t *testing.T) {
	f := newFixture(t, Options{})
	f.start("vm", func(d *libvirtxml.Domain) {
		d.VCPU = &libvirtxml.DomainVCPU{Value: 4, Current: 1}
		d.Memory = &libvirtxml.DomainMemory{Value: 512, Unit: "MiB"}
		d.CurrentMemory = &libvirtxml.DomainCurrentMemory{Value: 512, Unit: "MiB"}
	})
	got, err := f.hv.Sizing(f.ctx, "vm")
	want := hypervisor.Sizing{VCPUs: 1, MaxVCPUs: 4, MemoryBytes: 512 << 20, MaxMemoryBytes: 512 << 20}
	if err != nil || got != want {
		t.Fatalf("Sizing = %+v, %v; want %+v", got, err, want)
	}
	if err := f.hv.SetVCPUs(f.ctx, "vm", 3); err != nil {
		t.Fatal(err)
	}
	if err := f.hv.SetMemory(f.ctx, "vm", 256<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.hv.SetVCPUs(f.ctx, "vm", 5); err == nil || !strings.Contains(err.Error(), "1..4") {
		t.Errorf("5 of at most 4 vCPUs: %v", err)
	}
	if err := f.hv.SetMemory(f.ctx, "vm", 1<<30); err == nil || !strings.Contains(err.Error(), "max memory") {
		t.Errorf("1 GiB of at most 512 MiB: %v", err)
	}
	got, _ = f.hv.Sizing(f.ctx, "vm")
	if want := (hypervisor.Sizing{VCPUs: 3, MaxVCPUs: 4, MemoryBytes: 256 << 20, MaxMemoryBytes: 512 << 20}); got != want {
		t.Errorf("after resizing: %+v; want %+v", got, want)
	}
	st, _ := f.hv.Stats(f.ctx, "vm")
	// The simulated guest uses a quarter of the RAM its balloon leaves it.
	if st.MemoryBytes != 256<<20/4 {
		t.Errorf("Stats.MemoryBytes %d after the balloon left 256 MiB; want a quarter of it", st.MemoryBytes)
	}
	if err := f.hv.Destroy(f.ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.hv.Sizing(f.ctx, "vm"); err == nil {
		t.Error("Sizing of a stopped domain succeeded")
	}
}
