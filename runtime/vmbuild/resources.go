package vmbuild

import (
	"context"
	"fmt"

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
// to the pod. PLACEHOLDER until docs/bench/overhead.md measures it; keep
// both equal (deploy's consistency test checks).
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
	set := a.cfg.Cgroups.Set
	if create {
		set = a.cfg.Cgroups.Create
	}
	if err := set(path, l); err != nil {
		return fmt.Errorf("limits of the VM's cgroup %s: %w", path, err)
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
