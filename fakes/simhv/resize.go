package simhv

import (
	"context"
	"fmt"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

var _ hypervisor.Resizer = (*Hypervisor)(nil)

// Sizing reports an active domain's vCPUs and memory, now and at most.
func (h *Hypervisor) Sizing(ctx context.Context, name string) (hypervisor.Sizing, error) {
	var s hypervisor.Sizing
	err := h.resize(ctx, name, func(r *runState) error {
		s = hypervisor.Sizing{VCPUs: r.VCPUs, MaxVCPUs: max(r.MaxVCPUs, r.VCPUs),
			MemoryBytes: int64(r.MemoryBytes), MaxMemoryBytes: int64(max(r.MaxMemoryBytes, r.MemoryBytes))}
		return nil
	})
	return s, err
}

// SetVCPUs changes an active domain's vCPUs within the most it was
// defined with, as libvirt's live SetVcpusFlags does.
func (h *Hypervisor) SetVCPUs(ctx context.Context, name string, n int) error {
	return h.resize(ctx, name, func(r *runState) error {
		if n < 1 || n > max(r.MaxVCPUs, r.VCPUs) {
			return fmt.Errorf("invalid argument: requested vcpus %d is outside 1..%d, the maximum of domain '%s'", n, max(r.MaxVCPUs, r.VCPUs), name)
		}
		r.VCPUs = n
		return nil
	})
}

// SetMemory changes an active domain's memory within its <memory>, as the
// balloon does.
func (h *Hypervisor) SetMemory(ctx context.Context, name string, bytes int64) error {
	return h.resize(ctx, name, func(r *runState) error {
		most := max(r.MaxMemoryBytes, r.MemoryBytes)
		if bytes < 1<<20 || uint64(bytes) > most {
			return fmt.Errorf("invalid argument: cannot set memory higher than max memory (%d KiB asked, %d KiB most) of domain '%s'", bytes>>10, most>>10, name)
		}
		r.MemoryBytes = uint64(bytes)
		return nil
	})
}

// resize runs fn on the run state of the active domain name and commits it.
func (h *Hypervisor) resize(ctx context.Context, name string, fn func(*runState) error) error {
	if err := h.before(ctx, OpResize, name); err != nil {
		return err
	}
	h.mu.Lock()
	d, err := h.runningLocked(name)
	if err == nil {
		rec := d.rec
		if err = fn(&rec.Run); err == nil {
			err = h.apply(d, rec)
		}
	}
	h.mu.Unlock()
	if err != nil {
		return err
	}
	return h.after(ctx, OpResize, name)
}
