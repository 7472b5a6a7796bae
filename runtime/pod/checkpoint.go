package pod

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
	"github.com/podvisor/podvisor/runtime/snapshot"
)

// ArchiveName is the archive's name in CheckpointPod's directory.
const ArchiveName = "checkpoint.tar"

// CheckpointOptions say how a VM is checkpointed.
type CheckpointOptions struct {
	// DiskOnly takes the disks alone, with the guest's file systems
	// frozen through its agent, instead of the memory state: for a VM
	// that cannot be saved (a 9p share mounted). A restore boots it.
	DiskOnly bool
	// LeaveStopped leaves the VM stopped after a checkpoint that
	// succeeded: the container exits with reason Checkpointed.
	LeaveStopped bool
}

// ReasonCheckpointed is the exit reason of a container whose VM was left
// stopped by its checkpoint.
const ReasonCheckpointed = "Checkpointed"

// resumeTimeout bounds resuming a VM after its checkpoint; it runs even
// when the caller has given up, or the VM would stay down.
const resumeTimeout = 5 * time.Minute

// CheckpointContainer writes a checkpoint archive of the running
// container's VM to target, a file path (kubelet gives one under
// /var/lib/kubelet/checkpoints). The VM runs on afterwards unless
// opts.LeaveStopped.
func (m *Manager) CheckpointContainer(ctx context.Context, id, target string, opts CheckpointOptions) error {
	if err := checkTarget(target); err != nil {
		return err
	}
	rid, err := m.resolveContainer(id)
	if err != nil {
		return err
	}
	unlock := m.locks.lock(rid)
	defer unlock()
	c := m.getContainer(rid)
	if c == nil {
		return errdefs.NotFoundf("container %q not found", id)
	}
	c, err = m.syncContainer(ctx, c)
	if err != nil {
		return err
	}
	if c.State != ContainerRunning {
		return errdefs.FailedPreconditionf("container %s is %s: only a running VM is checkpointed", c.ID, c.State)
	}
	sb := m.getSandbox(c.SandboxID)
	if sb == nil {
		return errdefs.NotFoundf("sandbox %s of container %s not found", c.SandboxID, c.ID)
	}
	return m.checkpointLocked(ctx, sb, c, target, opts)
}

// CheckpointPod writes the checkpoint of a sandbox's VM into dir (an
// existing, empty directory) as ArchiveName. containerIDs must be exactly
// the running containers the caller selects: podvisor runs one VM per pod,
// so one ID.
func (m *Manager) CheckpointPod(ctx context.Context, sandboxID, dir string, containerIDs []string, opts CheckpointOptions) error {
	if !filepath.IsAbs(dir) {
		return errdefs.InvalidArgumentf("checkpoint output path %q: want an absolute path of an existing, empty directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return errdefs.InvalidArgumentf("checkpoint output path %q: want an existing, empty directory: %w", dir, err)
	}
	if len(entries) > 0 {
		return errdefs.InvalidArgumentf("checkpoint output path %q is not empty (%s, ...): want an empty directory", dir, entries[0].Name())
	}
	sb, err := m.PodSandbox(sandboxID)
	if err != nil {
		return err
	}
	if len(containerIDs) != 1 {
		return errdefs.InvalidArgumentf("checkpoint of pod %s: container_ids has %d entries: podvisor runs one VM per pod, so give its one running container", sb.ID, len(containerIDs))
	}
	c, err := m.ContainerStatus(ctx, containerIDs[0])
	if err != nil {
		return err
	}
	if c.SandboxID != sb.ID {
		return errdefs.InvalidArgumentf("container %s belongs to pod %s, not %s", c.ID, c.SandboxID, sb.ID)
	}
	return m.CheckpointContainer(ctx, c.ID, filepath.Join(dir, ArchiveName), opts)
}

func checkTarget(target string) error {
	if target == "" || !filepath.IsAbs(target) {
		return errdefs.InvalidArgumentf("checkpoint location %q: want an absolute file path", target)
	}
	if fi, err := os.Stat(target); err == nil && fi.IsDir() {
		return errdefs.InvalidArgumentf("checkpoint location %s is a directory: want a file path", target)
	}
	if fi, err := os.Stat(filepath.Dir(target)); err != nil || !fi.IsDir() {
		return errdefs.InvalidArgumentf("checkpoint location %s: its directory does not exist (%v)", target, err)
	}
	return nil
}

// checkpointLocked checkpoints c, whose lock the caller holds: the monitor
// leaves a busy container alone, so the VM's stop for the save is not
// taken for an exit.
func (m *Manager) checkpointLocked(ctx context.Context, sb *Sandbox, c *Container, target string, opts CheckpointOptions) error {
	log := m.log.With("pod", sb.ID, "container", c.ID, "domain", c.DomainName, "target", target)
	staging, err := os.MkdirTemp(filepath.Dir(target), "."+filepath.Base(target)+".staging-*")
	if err != nil {
		return fmt.Errorf("checkpoint of container %s: creating a staging directory beside %s: %w", c.ID, target, err)
	}
	defer os.RemoveAll(staging)
	liveXML, err := m.hv.XML(ctx, c.DomainName)
	if err != nil {
		return fmt.Errorf("checkpoint of container %s: reading its VM's definition: %w", c.ID, err)
	}
	disks, notCaptured, err := checkpointDisks(c.Dir, liveXML)
	if err != nil {
		return fmt.Errorf("checkpoint of container %s: %w", c.ID, err)
	}
	man, err := m.manifestFor(ctx, sb, c, notCaptured)
	if err != nil {
		return err
	}
	start := m.clock.Now()
	if opts.DiskOnly {
		err = m.checkpointFrozen(ctx, c, target, staging, liveXML, man, disks, opts, log)
	} else {
		err = m.checkpointMemory(ctx, c, target, staging, man, disks, opts, log)
	}
	if err != nil {
		return err
	}
	log.Info("container checkpointed", "kind", man.Kind, "took", m.clock.Now().Sub(start), "leftStopped", opts.LeaveStopped)
	return nil
}

func (m *Manager) manifestFor(ctx context.Context, sb *Sandbox, c *Container, notCaptured []string) (*snapshot.Manifest, error) {
	info, err := m.hv.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("checkpoint of container %s: %w", c.ID, err)
	}
	cfg, err := json.Marshal(c.Config)
	if err != nil {
		return nil, fmt.Errorf("checkpoint of container %s: encoding its config: %w", c.ID, err)
	}
	return &snapshot.Manifest{
		CreatedAt:   m.clock.Now().UTC(),
		Podvisor:    m.cfg.Version,
		Hypervisor:  info.Name + " " + info.Version,
		Accelerator: info.Accelerator,
		Pod: snapshot.Pod{Name: sb.Config.Name, Namespace: sb.Config.Namespace, UID: sb.Config.UID, Attempt: sb.Config.Attempt,
			Labels: sb.Config.Labels, Annotations: sb.Config.Annotations, IPs: sb.Network.IPs()},
		Container:   snapshot.Container{ID: c.ID, Name: c.Config.Name, Image: c.Config.Image, Dir: c.Dir, Config: cfg},
		BaseImage:   snapshot.BaseImage{Ref: c.ImageRef, Name: c.Config.Image},
		NotCaptured: notCaptured,
	}, nil
}

// checkpointDisks lists the disk files podvisor owns (in the container's
// directory) as archive members, and what the VM uses that the archive
// does not hold. The root disk is the domain's first, the cloud-init
// drive its read-only disk in the directory (runtime/domain's layout).
func checkpointDisks(dir, domainXML string) ([]snapshot.File, []string, error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(domainXML); err != nil {
		return nil, nil, fmt.Errorf("reading the VM's definition: %w", err)
	}
	if d.Devices == nil || len(d.Devices.Disks) == 0 {
		return nil, nil, errors.New("the VM has no disks")
	}
	// A persistent root (a block PV at devicePath "/") holds what the
	// guest wrote where podvisor cannot copy it consistently with the
	// memory state; a restore would boot from, or share, the source's
	// volume. Refused, naming the volume.
	if root := d.Devices.Disks[0]; filepath.Dir(diskFile(root)) != filepath.Clean(dir) {
		return nil, nil, errdefs.FailedPreconditionf("the VM's root disk %s is %s, a persistent root volume, not an overlay in its directory %s: podvisor captures only the disks it owns, and a checkpoint without the root would not restore (docs/snapshots.md)",
			diskTarget(root), orBlock(diskFile(root), root), dir)
	}
	var files []snapshot.File
	var not []string
	for i, disk := range d.Devices.Disks {
		src := diskFile(disk)
		if src == "" || filepath.Dir(src) != filepath.Clean(dir) {
			not = append(not, fmt.Sprintf("disk %s (%s): not podvisor's, not captured (a block volume keeps its data where it is)", diskTarget(disk), orBlock(src, disk)))
			continue
		}
		name := snapshot.DiskPrefix + filepath.Base(src)
		switch {
		case i == 0:
			name = snapshot.MemberRoot
		case disk.ReadOnly != nil:
			name = snapshot.MemberCloudInit
		}
		files = append(files, snapshot.File{Name: name, Path: src, Source: src})
	}
	for _, fs := range d.Devices.Filesystems {
		if fs.Source != nil && fs.Source.Mount != nil && fs.Target != nil {
			not = append(not, fmt.Sprintf("9p share %s (tag %s): not captured; the restored VM sees the restoring pod's volume", fs.Source.Mount.Dir, fs.Target.Dir))
		}
	}
	return files, not, nil
}

func diskFile(d libvirtxml.DomainDisk) string {
	if d.Source != nil && d.Source.File != nil {
		return d.Source.File.File
	}
	return ""
}

func diskTarget(d libvirtxml.DomainDisk) string {
	if d.Target != nil {
		return d.Target.Dev
	}
	return "?"
}

func orBlock(src string, d libvirtxml.DomainDisk) string {
	if src != "" {
		return src
	}
	if d.Source != nil && d.Source.Block != nil {
		return d.Source.Block.Dev
	}
	return "no file"
}

// checkpointMemory saves the VM's state (which stops it), archives it with
// the disks while the VM is off, and resumes the VM from the saved state
// unless it is to be left stopped.
func (m *Manager) checkpointMemory(ctx context.Context, c *Container, target, staging string, man *snapshot.Manifest, disks []snapshot.File, opts CheckpointOptions, log *slog.Logger) error {
	saver, ok := m.hv.(hypervisor.Saver)
	if !ok {
		return errdefs.Unimplementedf("checkpoint of container %s: the %T hypervisor cannot save a VM's state; a disk-only checkpoint works without", c.ID, m.hv)
	}
	man.Kind = snapshot.KindMemory
	mem := filepath.Join(staging, snapshot.MemberMemory)
	if err := saver.Save(ctx, c.DomainName, mem); err != nil {
		if errors.Is(err, hypervisor.ErrNotSavable) {
			return errdefs.FailedPreconditionf("checkpoint of container %s: %w (ask for a disk-only checkpoint: option or annotation %s=%s)", c.ID, err, OptionMode, ModeDiskOnly)
		}
		if hint := m.spaceHint(ctx, c.DomainName, staging, err); hint != "" {
			return fmt.Errorf("checkpoint of container %s: saving its VM beside %s: %w (%s: %v); the VM runs on", c.ID, target, snapshot.ErrNoSpace, hint, err)
		}
		return fmt.Errorf("checkpoint of container %s: saving its VM: %w", c.ID, err)
	}
	werr := m.archiveSaved(ctx, saver, target, staging, mem, man, disks)
	if werr == nil && opts.LeaveStopped {
		return m.leftStopped(c, target)
	}
	// Resume whatever happened: a failed archive must not cost the VM.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resumeTimeout)
	defer cancel()
	xml, xerr := saver.SavedXML(rctx, mem)
	if xerr == nil {
		xerr = saver.Restore(rctx, mem, xml)
	}
	if xerr != nil {
		log.Error("resuming the VM after its checkpoint failed; the container will be seen exited", "err", xerr)
		return errors.Join(werr, fmt.Errorf("checkpoint of container %s: resuming its VM: %w", c.ID, xerr))
	}
	if werr != nil {
		log.Warn("checkpoint failed; the VM was resumed", "err", werr)
	}
	return werr
}

// archiveSaved writes the archive of a saved VM: its state, its
// definition as saved and its disks.
func (m *Manager) archiveSaved(ctx context.Context, saver hypervisor.Saver, target, staging, mem string, man *snapshot.Manifest, disks []snapshot.File) error {
	xml, err := saver.SavedXML(ctx, mem)
	if err != nil {
		return fmt.Errorf("checkpoint %s: reading the saved definition: %w", target, err)
	}
	domFile := filepath.Join(staging, snapshot.MemberDomain)
	if err := os.WriteFile(domFile, []byte(xml), 0o600); err != nil {
		return fmt.Errorf("checkpoint %s: %w", target, err)
	}
	files := append([]snapshot.File{{Name: snapshot.MemberDomain, Path: domFile}, {Name: snapshot.MemberMemory, Path: mem}}, disks...)
	return snapshot.Write(ctx, target, man, files)
}

// checkpointFrozen archives the disks of the running VM with the guest's
// file systems frozen through its agent (so what is on them is
// consistent), then thaws them.
func (m *Manager) checkpointFrozen(ctx context.Context, c *Container, target, staging, liveXML string, man *snapshot.Manifest, disks []snapshot.File, opts CheckpointOptions, log *slog.Logger) error {
	man.Kind = snapshot.KindDiskOnly
	if _, err := m.agentCall(ctx, c.DomainName, map[string]any{"execute": "guest-fsfreeze-freeze"}); err != nil {
		return errdefs.FailedPreconditionf("disk-only checkpoint of container %s: freezing the guest's file systems through its agent: %w", c.ID, err)
	}
	thawed := false
	thaw := func() {
		if thawed {
			return
		}
		thawed = true
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if _, err := m.agentCall(tctx, c.DomainName, map[string]any{"execute": "guest-fsfreeze-thaw"}); err != nil {
			log.Error("thawing the guest's file systems after a checkpoint", "err", err)
		}
	}
	defer thaw()
	domFile := filepath.Join(staging, snapshot.MemberDomain)
	if err := os.WriteFile(domFile, []byte(liveXML), 0o600); err != nil {
		return fmt.Errorf("checkpoint %s: %w", target, err)
	}
	if err := snapshot.Write(ctx, target, man, append([]snapshot.File{{Name: snapshot.MemberDomain, Path: domFile}}, disks...)); err != nil {
		return err
	}
	thaw()
	if opts.LeaveStopped {
		if err := m.hv.Destroy(ctx, c.DomainName); err != nil {
			return fmt.Errorf("checkpoint of container %s was written to %s; stopping its VM: %w", c.ID, target, err)
		}
		return m.leftStopped(c, target)
	}
	return nil
}

// leftStopped records that the checkpoint left c's VM stopped.
func (m *Manager) leftStopped(c *Container, target string) error {
	cp := *c
	m.markExited(&cp, m.clock.Now(), 0, ReasonCheckpointed, "the VM was checkpointed to "+target+" and left stopped")
	m.stopConsole(c.ID)
	return m.putContainer(&cp)
}

// Checkpoint options: CheckpointPod's options map, or (for
// CheckpointContainer, which has none) the pod's annotations.
const (
	// OptionMode is "memory" (the default) or "disk-only".
	OptionMode = "podvisor.io/checkpoint-mode"
	// OptionAfter is "run" (the default) or "stop".
	OptionAfter  = "podvisor.io/checkpoint-after"
	ModeMemory   = "memory"
	ModeDiskOnly = "disk-only"
	AfterRun     = "run"
	AfterStop    = "stop"
)

// ParseCheckpointOptions reads the checkpoint options from kv; keys of
// podvisor.io/checkpoint-* other than the two known are refused, as are
// unknown values. Other keys are ignored when lenient (annotations carry
// everything), refused otherwise (CheckpointPod's options).
func ParseCheckpointOptions(kv map[string]string, lenient bool) (CheckpointOptions, error) {
	var o CheckpointOptions
	for k, v := range kv {
		switch k {
		case OptionMode:
			switch v {
			case ModeMemory:
			case ModeDiskOnly:
				o.DiskOnly = true
			default:
				return o, errdefs.InvalidArgumentf("checkpoint option %s=%q: want %q or %q", k, v, ModeMemory, ModeDiskOnly)
			}
		case OptionAfter:
			switch v {
			case AfterRun:
			case AfterStop:
				o.LeaveStopped = true
			default:
				return o, errdefs.InvalidArgumentf("checkpoint option %s=%q: want %q or %q", k, v, AfterRun, AfterStop)
			}
		default:
			if !lenient || strings.HasPrefix(k, "podvisor.io/checkpoint-") {
				return o, errdefs.InvalidArgumentf("checkpoint option %q is not known: podvisor accepts %s (%s|%s) and %s (%s|%s)", k, OptionMode, ModeMemory, ModeDiskOnly, OptionAfter, AfterRun, AfterStop)
			}
		}
	}
	return o, nil
}

// CheckpointOptionsOf reads the checkpoint options from the annotations of
// a container's pod (CheckpointContainer carries no options).
func (m *Manager) CheckpointOptionsOf(containerID string) (CheckpointOptions, error) {
	rid, err := m.resolveContainer(containerID)
	if err != nil {
		return CheckpointOptions{}, err
	}
	c := m.getContainer(rid)
	if c == nil {
		return CheckpointOptions{}, errdefs.NotFoundf("container %q not found", containerID)
	}
	sb := m.getSandbox(c.SandboxID)
	if sb == nil {
		return CheckpointOptions{}, nil
	}
	return ParseCheckpointOptions(sb.Config.Annotations, true)
}

// spaceHint says why a failed save was likely for want of space: the
// error says so, or the target's file system has less free than the VM's
// memory (libvirt does not always pass the ENOSPC on). "" otherwise.
func (m *Manager) spaceHint(ctx context.Context, domainName, dir string, err error) string {
	var st syscall.Statfs_t
	if serr := syscall.Statfs(dir, &st); serr != nil {
		return ""
	}
	free := st.Bavail * uint64(st.Bsize)
	if strings.Contains(strings.ToLower(err.Error()), "no space left") {
		return fmt.Sprintf("%d MiB free", free>>20)
	}
	x, xerr := m.hv.XML(ctx, domainName)
	var d libvirtxml.Domain
	if xerr != nil || d.Unmarshal(x) != nil || d.Memory == nil {
		return ""
	}
	need := uint64(d.Memory.Value) << 10 // KiB, as runtime/domain writes it
	if d.Memory.Unit != "" && d.Memory.Unit != "KiB" && d.Memory.Unit != "k" {
		return ""
	}
	if free < need {
		return fmt.Sprintf("%d MiB free, the VM's state takes up to its %d MiB of memory", free>>20, need>>20)
	}
	return ""
}
