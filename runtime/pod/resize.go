package pod

import (
	"context"
	"errors"
	"fmt"

	"github.com/podvisor/podvisor/runtime/annotations"
	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// UpdateContainerResources resizes a running VM in place (kubelet's
// in-place pod resize): vCPUs are hot-plugged or unplugged, the balloon
// gives or takes memory, and the VM's cgroup gets the new limits; the
// emulator keeps running. What the VM was created with bounds it: vCPUs
// up to the maximum of its <vcpu>, memory up to its boot RAM. Anything
// else is an error that names what cannot change, and nothing changes.
func (m *Manager) UpdateContainerResources(ctx context.Context, id string, res Resources) error {
	rid, err := m.resolveContainer(id)
	if err != nil {
		return err
	}
	unlock := m.locks.lock(rid)
	defer unlock()
	c, _ := m.refreshLocked(ctx, rid)
	if c == nil {
		return errdefs.NotFoundf("container %q not found", id)
	}
	if c.Config.Resources == res {
		return nil
	}
	if c.State != ContainerRunning {
		return errdefs.FailedPreconditionf("container %s is %s: only a running VM's resources can change in place", c.ID, c.State)
	}
	rz, ok := m.hv.(hypervisor.Resizer)
	if !ok || m.cfg.Resources == nil {
		return errdefs.Unimplementedf("the %T hypervisor cannot resize a VM in place", m.hv)
	}
	sb := m.getSandbox(c.SandboxID)
	if sb == nil {
		return errdefs.NotFoundf("sandbox %s of container %s not found", c.SandboxID, c.ID)
	}
	target, err := m.cfg.Resources.Target(sb, c, res)
	if err != nil {
		return err
	}
	size, err := rz.Sizing(ctx, c.DomainName)
	if err != nil {
		return fmt.Errorf("reading the vCPUs and memory of VM %s: %w", c.DomainName, err)
	}
	if err := checkResize(c, target, size); err != nil {
		return err
	}
	if err := m.resize(ctx, rz, sb, c, res, target, size); err != nil {
		return err
	}
	cp := *c
	cp.Config.Resources = res
	if err := m.putContainer(&cp); err != nil {
		return err
	}
	m.log.Info("container resized in place", "pod", c.SandboxID, "container", c.ID,
		"vcpus", target.VCPUs, "memoryMiB", target.MemoryBytes>>20, "cpuQuota", res.CPUQuota, "cpuPeriod", res.CPUPeriod)
	return nil
}

// checkResize refuses what the VM cannot become without a restart.
func checkResize(c *Container, t ResizeTarget, s hypervisor.Sizing) error {
	var errs []error
	if t.VCPUs > s.MaxVCPUs {
		errs = append(errs, fmt.Errorf("%d vCPUs asked, but the VM of container %s can have at most %d, fixed when it was created (recreate the pod for more)",
			t.VCPUs, c.ID, s.MaxVCPUs))
	}
	if t.MemoryBytes > s.MaxMemoryBytes {
		errs = append(errs, fmt.Errorf("memory limit %d MiB asked, but the VM of container %s can have at most %d MiB, its RAM when it was created (memory can shrink and grow back; recreate the pod for more)",
			t.MemoryBytes>>20, c.ID, s.MaxMemoryBytes>>20))
	}
	if len(errs) > 0 {
		return errdefs.InvalidArgumentf("resizing container %s in place: %w", c.ID, errors.Join(errs...))
	}
	return nil
}

// resize changes the guest and the cgroup in an order that never leaves
// QEMU over its limit: the cgroup first allows the larger of old and new,
// then the guest changes, then the cgroup gets exactly the new limits.
func (m *Manager) resize(ctx context.Context, rz hypervisor.Resizer, sb *Sandbox, c *Container, res Resources, t ResizeTarget, s hypervisor.Sizing) error {
	wider := widerOf(c.Config.Resources, res)
	if err := m.cfg.Resources.SetLimits(sb, c, wider, false); err != nil {
		return fmt.Errorf("resizing container %s: %w", c.ID, err)
	}
	restore := func(cause error) error {
		if rerr := m.cfg.Resources.SetLimits(sb, c, c.Config.Resources, false); rerr != nil {
			m.log.Error("restoring the cgroup limits of a VM whose resize failed", "container", c.ID, "err", rerr)
		}
		return cause
	}
	if t.VCPUs != s.VCPUs && !t.VCPUsFixed {
		if err := rz.SetVCPUs(ctx, c.DomainName, t.VCPUs); err != nil {
			return restore(fmt.Errorf("resizing container %s: %d vCPUs: %w", c.ID, t.VCPUs, err))
		}
	}
	if t.MemoryBytes != s.MemoryBytes {
		if err := rz.SetMemory(ctx, c.DomainName, t.MemoryBytes); err != nil {
			return restore(fmt.Errorf("resizing container %s: %d MiB of memory: %w", c.ID, t.MemoryBytes>>20, err))
		}
	}
	if err := m.cfg.Resources.SetLimits(sb, c, res, false); err != nil {
		// The guest has changed; the limits stay the wider ones, and
		// kubelet's retry sets them.
		return fmt.Errorf("resizing container %s: the guest was resized but its cgroup limits were not (the balloon may still be taking memory back; kubelet retries): %w", c.ID, err)
	}
	return nil
}

// widerOf is, per resource, the looser of a and b (a quota of 0 or below:
// no limit; a memory limit of 0: the default guest RAM).
func widerOf(a, b Resources) Resources {
	w := Resources{CPUShares: max(a.CPUShares, b.CPUShares), CPUPeriod: b.CPUPeriod}
	mem := func(r Resources) int64 {
		if r.MemoryLimitBytes == 0 {
			return annotations.DefaultMemoryBytes
		}
		return r.MemoryLimitBytes
	}
	w.MemoryLimitBytes = max(mem(a), mem(b))
	switch {
	case a.CPUQuota <= 0 || b.CPUQuota <= 0:
		w.CPUQuota = 0
	default:
		pa, pb := periodOr(a.CPUPeriod), periodOr(b.CPUPeriod)
		// The larger share of a CPU, in b's period.
		w.CPUQuota = max(b.CPUQuota, (a.CPUQuota*pb+pa-1)/pa)
	}
	return w
}

func periodOr(p int64) int64 {
	if p <= 0 {
		return 100000
	}
	return p
}
