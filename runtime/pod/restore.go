package pod

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
	"github.com/podvisor/podvisor/runtime/snapshot"
)

// RestoreAssembler is the VMAssembler's part for a VM made from a
// checkpoint (vmbuild.Assembler implements it).
type RestoreAssembler interface {
	// AssembleRestore returns the definition of c's VM in sb restored from
	// a checkpoint whose members are in c.Dir: savedXML is the
	// checkpointed domain's, paths maps each of its disk files to the
	// extracted copy. The root overlay is rebased onto imagePath, the
	// base image on this node.
	AssembleRestore(ctx context.Context, sb *Sandbox, c *Container, imagePath, savedXML string, paths map[string]string) (string, error)
}

// RestoreRequest is RestorePod's input.
type RestoreRequest struct {
	// Archive is the checkpoint archive (a file).
	Archive string
	// Sandbox is the new pod's configuration.
	Sandbox SandboxConfig
	// Containers are the restore-time configurations, matched to the
	// checkpoint's container by name; empty takes the checkpoint's.
	Containers []ContainerConfig
}

// RestoredContainer names a container RestorePod made.
type RestoredContainer struct {
	Name string
	ID   string
}

// IsCheckpointArchive says whether a container's image names a checkpoint
// archive (CRI-O's convention: a local archive as the image restores it):
// an absolute path of an existing regular file ending in .tar.
func IsCheckpointArchive(image string) bool {
	if !filepath.IsAbs(image) || !strings.HasSuffix(image, ".tar") {
		return false
	}
	fi, err := os.Stat(image)
	return err == nil && fi.Mode().IsRegular()
}

// archiveImage returns the checkpoint archive a container's image names:
// the image itself when it is a local archive's path, or the pulled image
// file when it is an archive (a translation whose URL serves one, e.g.
// file:///var/lib/kubelet/checkpoints/...); "" otherwise.
func (m *Manager) archiveImage(ctx context.Context, image string) string {
	if IsCheckpointArchive(image) {
		return image
	}
	if path, _, err := m.cfg.Images.Resolve(ctx, image); err == nil && snapshot.IsArchive(path) {
		return path
	}
	return ""
}

// RestorePod makes a new sandbox from req.Sandbox and in it the
// checkpoint's container, CREATED: StartContainer resumes the saved VM.
// The archive is verified before anything is made; on error nothing made
// is left.
func (m *Manager) RestorePod(ctx context.Context, req RestoreRequest) (string, []RestoredContainer, error) {
	man, err := snapshot.Verify(ctx, req.Archive)
	if err != nil {
		return "", nil, err
	}
	cfg, err := restoreConfig(man, req.Containers, false)
	if err != nil {
		return "", nil, err
	}
	if _, _, err := m.restoreImage(ctx, man); err != nil {
		return "", nil, err
	}
	existed := len(m.sandboxesOf(req.Sandbox.UID, req.Sandbox.Attempt)) > 0
	sbID, err := m.RunPodSandbox(ctx, req.Sandbox)
	if err != nil {
		return "", nil, err
	}
	id, err := m.createContainer(ctx, sbID, cfg, req.Archive)
	if err != nil {
		if !existed {
			cctx := context.WithoutCancel(ctx)
			if rerr := m.StopPodSandbox(cctx, sbID); rerr == nil {
				rerr = m.RemovePodSandbox(cctx, sbID)
			} else {
				m.log.Error("removing the sandbox of a failed restore", "pod", sbID, "err", rerr)
			}
		}
		return "", nil, err
	}
	return sbID, []RestoredContainer{{Name: cfg.Name, ID: id}}, nil
}

func (m *Manager) sandboxesOf(uid string, attempt uint32) []string {
	var out []string
	for _, sb := range m.ListPodSandboxes(SandboxFilter{}) {
		if sb.Config.UID == uid && sb.Config.Attempt == attempt {
			out = append(out, sb.ID)
		}
	}
	return out
}

// restoreConfig picks the container configuration: the checkpoint's, or
// the one restore-time configuration, which must name the checkpoint's
// container and its image.
// fromImage says the configuration's image is the checkpoint itself.
func restoreConfig(man *snapshot.Manifest, given []ContainerConfig, fromImage bool) (ContainerConfig, error) {
	var saved ContainerConfig
	if err := json.Unmarshal(man.Container.Config, &saved); err != nil || saved.Name == "" {
		return ContainerConfig{}, errdefs.InvalidArgumentf("checkpoint of %s/%s: the container's recorded configuration is unreadable (%v)", man.Pod.Namespace, man.Pod.Name, err)
	}
	if len(given) == 0 {
		return saved, nil
	}
	if len(given) != 1 || given[0].Name != man.Container.Name {
		var names []string
		for _, g := range given {
			names = append(names, g.Name)
		}
		sort.Strings(names)
		return ContainerConfig{}, errdefs.InvalidArgumentf("restore: container configs name %v: the checkpoint holds exactly one container, %q", names, man.Container.Name)
	}
	cfg := given[0]
	if cfg.Image != "" && cfg.Image != man.Container.Image && cfg.Image != man.BaseImage.Ref && !IsCheckpointArchive(cfg.Image) && !fromImage {
		return ContainerConfig{}, errdefs.InvalidArgumentf("restore: container %q asks for image %q, the checkpoint's is %q (%s)", cfg.Name, cfg.Image, man.Container.Image, man.BaseImage.Ref)
	}
	cfg.Image = man.Container.Image
	return cfg, nil
}

// restoreImage finds the checkpoint's base image on this node: it must be
// pulled (the archive holds the overlay, not the image).
func (m *Manager) restoreImage(ctx context.Context, man *snapshot.Manifest) (path, ref string, err error) {
	path, ref, err = m.cfg.Images.Resolve(ctx, man.BaseImage.Ref)
	if errors.Is(err, errdefs.ErrNotFound) {
		return "", "", errdefs.FailedPreconditionf("restore of %s/%s: its base image %s (%s) is not on this node: pull it first (the checkpoint holds the VM's overlay, not the image)",
			man.Pod.Namespace, man.Pod.Name, man.BaseImage.Name, man.BaseImage.Ref)
	}
	if err != nil {
		return "", "", fmt.Errorf("restore of %s/%s: resolving its base image %s: %w", man.Pod.Namespace, man.Pod.Name, man.BaseImage.Ref, err)
	}
	if ref != man.BaseImage.Ref {
		return "", "", errdefs.FailedPreconditionf("restore of %s/%s: base image %s resolves to %s here, not the checkpoint's %s", man.Pod.Namespace, man.Pod.Name, man.BaseImage.Name, ref, man.BaseImage.Ref)
	}
	return path, ref, nil
}

// restoreVM makes the container of sb from the checkpoint archive: the
// archive's files extracted into a new container directory, the domain
// retargeted and defined. Like createVM, it takes back every step on
// failure; the caller holds the sandbox lock.
func (m *Manager) restoreVM(callerCtx context.Context, sb *Sandbox, cfg ContainerConfig, archive string) (_ string, err error) {
	ctx, cancel := detach(callerCtx, m.cfg.OpTimeout)
	defer cancel()
	ra, ok := m.cfg.Assembler.(RestoreAssembler)
	if !ok {
		return "", errdefs.Unimplementedf("restore: the VM assembler %T cannot restore checkpoints", m.cfg.Assembler)
	}
	man, err := snapshot.Verify(ctx, archive)
	if err != nil {
		return "", err
	}
	if cfg, err = restoreConfig(man, []ContainerConfig{cfg}, cfg.Image != man.Container.Image); err != nil {
		return "", err
	}
	imagePath, imageRef, err := m.restoreImage(ctx, man)
	if err != nil {
		return "", err
	}
	id := newID()
	unlock := m.locks.lock(id)
	defer unlock()
	name := DomainName(id)
	c := &Container{ID: id, SandboxID: sb.ID, Config: cfg, ImageRef: imageRef, DomainName: name,
		State: ContainerCreated, CreatedAt: m.clock.Now(), Dir: containerDir(m.cfg.StateDir, name),
		Restore: &Restore{Archive: archive}}
	if cfg.LogPath != "" && sb.Config.LogDirectory != "" {
		c.LogPath = filepath.Join(sb.Config.LogDirectory, cfg.LogPath)
	}
	var rollback undo
	defer rollback.runIfFailed(ctx, &err)
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return "", fmt.Errorf("restore: creating VM directory %s: %w", c.Dir, err)
	}
	rollback.push(func(context.Context) { _ = removeDir(c.Dir) })
	xml, err := m.unpackCheckpoint(ctx, ra, sb, c, man, archive, imagePath)
	if err != nil {
		return "", err
	}
	if err := m.timed("define", func() error { _, err := m.hv.Define(ctx, xml); return err }); err != nil {
		return "", fmt.Errorf("restore: defining the VM of container %q: %w", cfg.Name, err)
	}
	rollback.push(func(ctx context.Context) { _ = m.hv.Undefine(ctx, name) })
	if callerCtx.Err() != nil {
		c.UnclaimedSince = m.clock.Now()
	}
	if err := m.putContainer(c); err != nil {
		return "", err
	}
	rollback.commit()
	if err := callerCtx.Err(); err != nil {
		return "", fmt.Errorf("restore of container %q finished after the caller gave up; a retry returns container %s: %w", cfg.Name, id, err)
	}
	m.log.Info("container restored from a checkpoint", "pod", sb.ID, "container", id, "archive", archive, "kind", man.Kind,
		"from", man.Pod.Namespace+"/"+man.Pod.Name, "checkpointedAt", man.CreatedAt)
	return id, nil
}

// unpackCheckpoint extracts the archive into c.Dir and returns the
// retargeted definition.
func (m *Manager) unpackCheckpoint(ctx context.Context, ra RestoreAssembler, sb *Sandbox, c *Container, man *snapshot.Manifest, archive, imagePath string) (string, error) {
	if _, err := snapshot.Extract(ctx, archive, c.Dir); err != nil {
		return "", err
	}
	saved, err := os.ReadFile(filepath.Join(c.Dir, snapshot.MemberDomain))
	if err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	paths := map[string]string{}
	for _, mem := range man.Members {
		if mem.Source != "" {
			paths[mem.Source] = filepath.Join(c.Dir, filepath.FromSlash(mem.Name))
		}
	}
	if man.Kind == snapshot.KindMemory {
		c.Restore.MemoryFile = filepath.Join(c.Dir, snapshot.MemberMemory)
	}
	xml, err := ra.AssembleRestore(ctx, sb, c, imagePath, string(saved), paths)
	if err != nil {
		return "", fmt.Errorf("restore: preparing the VM of container %q: %w", c.Config.Name, err)
	}
	return xml, nil
}

// restoredGuestTimeout bounds the guest's reconfiguration after a restore
// from memory (its agent runs already); a booting guest (disk-only) gets
// the op timeout.
const restoredGuestTimeout = time.Minute

// startRestored starts a container made from a checkpoint: the saved VM
// resumed (or, disk-only, booted), then its clock and the new pod's
// network set through the guest agent.
func (m *Manager) startRestored(ctx context.Context, c *Container) error {
	if c.Restore.MemoryFile == "" {
		if err := m.startDomain(ctx, c, m.log); err != nil {
			return err
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			gctx, cancel := context.WithTimeout(m.bgctx, m.cfg.OpTimeout)
			defer cancel()
			if err := m.waitAgent(gctx, c.DomainName); err != nil {
				m.log.Error("restored VM: its guest agent did not answer after boot; it keeps the checkpointed pod's address", "container", c.ID, "err", err)
				return
			}
			m.configureRestored(gctx, c)
		}()
		return nil
	}
	saver, ok := m.hv.(hypervisor.Saver)
	if !ok {
		return errdefs.Unimplementedf("the %T hypervisor cannot restore a VM's state", m.hv)
	}
	xml, err := m.hv.XML(ctx, c.DomainName)
	if err != nil {
		return err
	}
	release, err := m.prepareCgroup(ctx, c, m.log.With("container", c.ID))
	if err != nil {
		return err
	}
	if err := saver.Restore(ctx, c.Restore.MemoryFile, xml); err != nil {
		release()
		return fmt.Errorf("resuming the checkpointed VM: %w", err)
	}
	if err := os.Remove(c.Restore.MemoryFile); err != nil {
		m.log.Warn("removing the restored memory state", "container", c.ID, "err", err)
	}
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), restoredGuestTimeout)
	defer cancel()
	m.configureRestored(gctx, c)
	return nil
}

// waitAgent waits for a booting guest's agent to answer guest-ping.
func (m *Manager) waitAgent(ctx context.Context, domain string) error {
	for {
		_, err := m.agentCall(ctx, domain, map[string]any{"execute": "guest-ping"})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-m.clock.After(time.Second):
		}
	}
}
