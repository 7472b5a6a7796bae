package libvirt

import (
	"context"
	"fmt"

	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/domain"
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
		vcpus := int(info.NrVirtCpu)
		if guest, err := guestVCPUs(d); err != nil {
			return err
		} else if guest {
			// The guest's own count, through its agent; without an
			// agent the vCPUs cannot change, and memory still can.
			n, err := d.GetVcpusFlags(lv.DOMAIN_VCPU_GUEST)
			if err != nil {
				h.log.Warn("under TCG the guest agent counts the vCPUs the guest has online; it does not answer: the present ones are reported", "domain", name, "err", err)
			} else {
				vcpus = int(n)
			}
		}
		s = hypervisor.Sizing{
			VCPUs: vcpus, MaxVCPUs: int(maxVCPUs),
			MemoryBytes: int64(info.Memory) * 1024, MaxMemoryBytes: int64(info.MaxMem) * 1024,
		}
		return nil
	})
	return s, err
}

// SetVCPUs hot-plugs or unplugs vCPUs of the running domain. Unplugging
// needs the guest's cooperation (ACPI eject); libvirt waits 5 s for it and
// reports a timeout otherwise (errdefs.ErrUnavailable: the unplug goes on,
// and a retry finds it done). Under TCG, where every vCPU is present from
// boot (domain.GuestOnlinedVCPUs), the guest agent onlines or offlines
// them in the guest instead.
func (h *Hypervisor) SetVCPUs(ctx context.Context, name string, n int) error {
	if n < 1 {
		return fmt.Errorf("setting the vCPUs of domain %q: %d is fewer than 1", name, n)
	}
	return h.withDomain(ctx, fmt.Sprintf("setting %d vCPUs of domain", n), name, func(d *lv.Domain) error {
		guest, err := guestVCPUs(d)
		if err != nil {
			return err
		}
		if !guest {
			return d.SetVcpusFlags(uint(n), lv.DOMAIN_VCPU_LIVE)
		}
		if err := d.SetVcpusFlags(uint(n), lv.DOMAIN_VCPU_GUEST); err != nil {
			return fmt.Errorf("under TCG the guest agent onlines and offlines the guest's vCPUs (QEMU 7.2's TCG cannot hot-plug them; docs/libvirt.md): %w", err)
		}
		return nil
	})
}

// guestVCPUs says the domain's vCPU count changes in the guest, through
// its agent: a TCG domain (domain.GuestOnlinedVCPUs builds those with
// every vCPU present).
func guestVCPUs(d *lv.Domain) (bool, error) {
	x, err := d.GetXMLDesc(0)
	if err != nil {
		return false, err
	}
	var def libvirtxml.Domain
	if err := def.Unmarshal(x); err != nil {
		return false, fmt.Errorf("reading the domain's XML: %w", err)
	}
	return def.Type == domain.TypeQEMU, nil
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
