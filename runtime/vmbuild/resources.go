package vmbuild

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/podvisor/podvisor/runtime/annotations"
	"github.com/podvisor/podvisor/runtime/cgroups"
	"github.com/podvisor/podvisor/runtime/domain"
	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/podtypes"
)

// QEMUMemoryOverheadBytes is the memory a VM's QEMU needs beyond its
// guest's RAM (device models, VGA memory, page tables, libraries): the
// VM's cgroup allows the container's memory limit plus this, and the
// RuntimeClass's overhead.podFixed (deploy/runtimeclass.yaml) charges it
// to the pod; keep both equal (deploy's consistency test checks). Set from
// docs/bench/overhead.md (2026-12-04): QEMU's RSS beyond the guest's RAM
// and TCG's cache was 55 MiB for a VM alone (the cgroup is charged RSS, a
// first VM's libraries whole), and 96 MiB leaves the rest for I/O buffers
// and the disk images' page cache, also charged to the pod's cgroup.
const QEMUMemoryOverheadBytes = 96 << 20

// MemoryOverheadBytes is QEMUMemoryOverheadBytes plus, under TCG, QEMU's
// translation cache (tbCacheMiB, 0: QEMU's default), which a KVM node does
// not pay.
func MemoryOverheadBytes(domainType string, tbCacheMiB uint) int64 {
	if domainType != domain.TypeQEMU {
		return QEMUMemoryOverheadBytes
	}
	if tbCacheMiB == 0 {
		tbCacheMiB = domain.QEMUDefaultTCGTranslationCacheMiB
	}
	return QEMUMemoryOverheadBytes + int64(tbCacheMiB)<<20
}

// CgroupFS makes, limits and removes cgroups; cgroups.FS implements it.
type CgroupFS interface {
	Create(path string, l cgroups.Limits) error
	Set(path string, l cgroups.Limits) error
	Remove(path string) error
}

// memoryRaiser is the optional part of a CgroupFS that raises the pod
// cgroup's memory limit (cgroups.FS.RaiseMemory).
type memoryRaiser interface {
	RaiseMemory(path string, bytes int64) (old int64, raised bool, err error)
}

// Limits are the cgroup limits of a VM: the container's CPU limits as
// they are, its memory limit (the guest's RAM) plus QEMU's overhead.
func Limits(vm *annotations.VMConfig, domainType string, tbCacheMiB uint) cgroups.Limits {
	return cgroups.Limits{
		CPUShares:   vm.CPUShares,
		CPUQuota:    vm.CPUQuota,
		CPUPeriod:   vm.CPUPeriod,
		MemoryBytes: vm.MemoryBytes + MemoryOverheadBytes(domainType, tbCacheMiB),
	}
}

// CgroupPath is the VM's cgroup below its sandbox's cgroup parent.
func CgroupPath(sb *podtypes.Sandbox, c *podtypes.Container) (string, error) {
	p, err := cgroups.VMPath(sb.Config.CgroupParent, c.DomainName)
	if err != nil {
		return "", errdefs.InvalidArgumentf("pod %s/%s: %w", sb.Config.Namespace, sb.Config.Name, err)
	}
	return p, nil
}

// PrepareStart makes the VM's cgroup with its container's limits; the
// emulator wrapper joins it when libvirt starts QEMU. Without a CgroupFS
// there is nothing to do.
func (a *Assembler) PrepareStart(_ context.Context, sb *podtypes.Sandbox, c *podtypes.Container) error {
	if a.cfg.Cgroups == nil {
		return nil
	}
	return a.SetLimits(sb, c, c.Config.Resources, true)
}

// SetLimits writes the cgroup limits res gives the VM of c (create: make
// the cgroup first).
func (a *Assembler) SetLimits(sb *podtypes.Sandbox, c *podtypes.Container, res podtypes.Resources, create bool) error {
	if a.cfg.Cgroups == nil {
		return nil
	}
	cp := *c
	cp.Config.Resources = res
	vm, err := ParseVMConfig(sb, &cp)
	if err != nil {
		return err
	}
	path, err := CgroupPath(sb, c)
	if err != nil {
		return err
	}
	l := Limits(vm, a.cfg.DomainType, a.cfg.TCGTranslationCacheMiB)
	if err := a.podRoomForQEMU(sb, path, l.MemoryBytes); err != nil {
		return err
	}
	set := a.cfg.Cgroups.Set
	if create {
		set = a.cfg.Cgroups.Create
	}
	if err := set(path, l); err != nil {
		return fmt.Errorf("limits of the VM's cgroup %s: %w", path, err)
	}
	return nil
}

// podRoomForQEMU raises the pod cgroup's memory limit to the VM's (guest
// RAM and QEMU's overhead) when it is lower. kubelet makes it the
// container's limit plus the pod's overhead; a pod routed by Virtlet's
// annotation rather than the RuntimeClass has no overhead, so QEMU would
// be OOM-killed in a pod cgroup of the guest's RAM alone (Virtlet's
// cirros-vm example, 160Mi). The scheduler does not count what is added:
// the RuntimeClass is still the way to have it counted.
func (a *Assembler) podRoomForQEMU(sb *podtypes.Sandbox, vmPath string, bytes int64) error {
	r, ok := a.cfg.Cgroups.(memoryRaiser)
	if !ok || sb.Config.CgroupParent == "" {
		return nil
	}
	pod := filepath.Dir(vmPath)
	old, raised, err := r.RaiseMemory(pod, bytes)
	if err != nil {
		return fmt.Errorf("making room for QEMU's overhead in the pod's cgroup %s: %w", pod, err)
	}
	if raised && a.cfg.Logger != nil {
		a.cfg.Logger.Warn("the pod's memory limit left no room for QEMU's overhead (no RuntimeClass overhead): raised the pod cgroup's limit; use runtimeClassName: podvisor to have the scheduler count it",
			"pod", sb.Config.Namespace+"/"+sb.Config.Name, "cgroup", pod, "fromBytes", old, "toBytes", bytes)
	}
	return nil
}

// Release removes the VM's cgroup once its QEMU is gone.
func (a *Assembler) Release(_ context.Context, sb *podtypes.Sandbox, c *podtypes.Container) error {
	if a.cfg.Cgroups == nil {
		return nil
	}
	path, err := CgroupPath(sb, c)
	if err != nil {
		return err
	}
	return a.cfg.Cgroups.Remove(path)
}

// Target validates new resources of c as CreateContainer would (a fixed
// VirtletVCPUCount above the new CPU limit is an InvalidArgument naming
// both) and says what the guest gets.
func (a *Assembler) Target(sb *podtypes.Sandbox, c *podtypes.Container, res podtypes.Resources) (podtypes.ResizeTarget, error) {
	cp := *c
	cp.Config.Resources = res
	vm, err := ParseVMConfig(sb, &cp)
	if err != nil {
		return podtypes.ResizeTarget{}, err
	}
	return podtypes.ResizeTarget{VCPUs: vm.VCPUCount, VCPUsFixed: vm.VCPUCountFixed, MemoryBytes: vm.MemoryBytes}, nil
}
