package libvirt

import (
	"context"
	"fmt"

	lv "libvirt.org/go/libvirt"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// Sizing reports a running domain's vCPUs and memory, now and at most.
func (h *Hypervisor) Sizing(ctx context.Context, name string) (hypervisor.Sizing, error) {
	var s hypervisor.Sizing
	err := h.withDomain(ctx, "reading the vCPUs and memory of domain", name, func(d *lv.Domain) error {
		info, err := d.GetInfo()
		if err != nil {
			return err
		}
		if info.State != lv.DOMAIN_RUNNING && info.State != lv.DOMAIN_PAUSED && info.State != lv.DOMAIN_BLOCKED {
			return fmt.Errorf("%w: the domain is not running", hypervisor.ErrInvalidState)
		}
		maxVCPUs, err := d.GetVcpusFlags(lv.DOMAIN_VCPU_LIVE | lv.DOMAIN_VCPU_MAXIMUM)
		if err != nil {
			return err
		}
		s = hypervisor.Sizing{
			VCPUs: int(info.NrVirtCpu), MaxVCPUs: int(maxVCPUs),
			MemoryBytes: int64(info.Memory) * 1024, MaxMemoryBytes: int64(info.MaxMem) * 1024,
		}
		return nil
	})
	return s, err
}

// SetVCPUs hot-plugs or unplugs vCPUs of the running domain. Unplugging
// needs the guest's cooperation (ACPI eject); libvirt waits a few seconds
// for it and reports a timeout otherwise.
func (h *Hypervisor) SetVCPUs(ctx context.Context, name string, n int) error {
	if n < 1 {
		return fmt.Errorf("setting the vCPUs of domain %q: %d is fewer than 1", name, n)
	}
	return h.withDomain(ctx, fmt.Sprintf("setting %d vCPUs of domain", n), name, func(d *lv.Domain) error {
		return d.SetVcpusFlags(uint(n), lv.DOMAIN_VCPU_LIVE)
	})
}

// SetMemory sets the running domain's memory through its balloon.
func (h *Hypervisor) SetMemory(ctx context.Context, name string, bytes int64) error {
	if bytes < 1<<20 {
		return fmt.Errorf("setting the memory of domain %q: %d bytes is less than 1 MiB", name, bytes)
	}
	return h.withDomain(ctx, fmt.Sprintf("setting %d MiB of memory of domain", bytes>>20), name, func(d *lv.Domain) error {
		return d.SetMemoryFlags(uint64(bytes/1024), lv.DOMAIN_MEM_LIVE)
	})
}

var _ hypervisor.Resizer = (*Hypervisor)(nil)
