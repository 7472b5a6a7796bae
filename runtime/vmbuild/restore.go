package vmbuild

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/podvisor/podvisor/runtime/domain"
	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/image"
	"github.com/podvisor/podvisor/runtime/podtypes"
)

// AssembleRestore implements pod.RestoreAssembler: the checkpoint's files
// are in c.Dir under the names Assemble gives them (the archive's member
// names are the same: root.qcow2, cloudinit.iso); the root overlay is
// rebased onto this node's copy of its image, and the checkpointed
// definition gets c's name, the UUID Assemble would give it, c's sockets
// and the new pod's network, and its own cgroup (PrepareStart makes it as
// for a booted VM). The cloud-init drive is the checkpoint's:
// the guest read it when it first booted, and reads the same again.
func (a *Assembler) AssembleRestore(ctx context.Context, sb *podtypes.Sandbox, c *podtypes.Container, imagePath, savedXML string, paths map[string]string) (string, error) {
	vm, err := ParseVMConfig(sb, c)
	if err != nil {
		return "", err
	}
	rebase := a.cfg.Rebase
	if rebase == nil {
		rebase = image.RebaseOverlay
	}
	if err := rebase(ctx, filepath.Join(c.Dir, RootDiskFile), imagePath); err != nil {
		return "", fmt.Errorf("restoring the root disk: %w", err)
	}
	id := domain.UUIDFor(sb.Config.UID, c.Config.Attempt)
	if len(a.cfg.UUIDKey) > 0 {
		id = domain.KeyedUUIDFor(a.cfg.UUIDKey, sb.Config.UID, c.Config.Attempt)
	}
	if vm.SystemUUID != "" {
		id = vm.SystemUUID
	}
	var env map[string]string
	if a.cfg.NICs != nil {
		nics, e, err := a.cfg.NICs.NICs(ctx, sb, c)
		if err != nil {
			return "", fmt.Errorf("preparing the VM's network devices: %w", err)
		}
		if len(nics) > 0 {
			return "", errdefs.Unimplementedf("restoring into a network whose NICs are libvirt interfaces (%d): the checkpoint's devices cannot be swapped", len(nics))
		}
		env = e
	}
	var cgroup string
	if a.cfg.Cgroups != nil {
		if cgroup, err = CgroupPath(sb, c); err != nil {
			return "", err
		}
	}
	x, err := domain.RetargetXML(savedXML, domain.Retarget{
		Name: c.DomainName, UUID: id,
		PodUID: sb.Config.UID, PodName: sb.Config.Name, PodNamespace: sb.Config.Namespace,
		ContainerName: c.Config.Name, Attempt: c.Config.Attempt,
		Paths:         paths,
		ConsoleSocket: filepath.Join(c.Dir, ConsoleSocketFile),
		DisplaySocket: filepath.Join(c.Dir, DisplaySocketFile),
		Emulator:      a.cfg.Emulator,
		QEMUEnv:       env,
		Cgroup:        cgroup,
	})
	if err != nil {
		return "", errdefs.InvalidArgumentf("restoring the domain of pod %s/%s: %w", sb.Config.Namespace, sb.Config.Name, err)
	}
	return x, nil
}
