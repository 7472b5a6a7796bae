package pod

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/podvisor/podvisor/runtime/domain"
	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// DomainName is the hypervisor name of a container's VM: short (QEMU puts
// it in socket paths), unique, and derived from the ID so that it survives
// a restart of podvisor.
func DomainName(containerID string) string { return domain.NameFor(containerID) }

// CreateContainer defines the VM of a sandbox's container. podvisor runs one
// VM per pod: while a container of the sandbox is created or running, a
// second one is refused.
func (m *Manager) CreateContainer(ctx context.Context, sandboxID string, cfg ContainerConfig) (string, error) {
	return m.createContainer(ctx, sandboxID, cfg, "")
}

// createContainer is CreateContainer; with archive, or an image that names
// a checkpoint archive, the VM is restored from it (RestorePod, CRI-O's
// convention).
func (m *Manager) createContainer(ctx context.Context, sandboxID string, cfg ContainerConfig, archive string) (string, error) {
	if cfg.Name == "" {
		return "", errdefs.InvalidArgumentf("container config: metadata.name is required")
	}
	if cfg.Image == "" {
		return "", errdefs.InvalidArgumentf("container config: image.image is required")
	}
	sbID, err := m.resolveSandbox(sandboxID)
	if err != nil {
		return "", err
	}
	unlockSB := m.locks.lock(sbID)
	defer unlockSB()
	sb := m.getSandbox(sbID)
	if sb == nil {
		return "", errdefs.NotFoundf("sandbox %q not found", sandboxID)
	}
	if sb.State != SandboxReady {
		return "", errdefs.FailedPreconditionf("sandbox %s is not ready: containers can only be created in a ready sandbox", sbID)
	}
	claimed, exited, err := m.checkOnePerPod(sb, cfg)
	if err != nil || claimed != "" {
		return claimed, err
	}
	// kubelet keeps an exited container (for its logs) while it creates
	// the next attempt. Its domain is of no further use, and a fixed
	// VirtletSystemUUID would make libvirt refuse the new definition while
	// the old one exists: undefine it now. The record stays until kubelet
	// removes it.
	for _, old := range exited {
		if err := m.hv.Undefine(ctx, old.DomainName); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
			return "", fmt.Errorf("undefining the exited VM %s of container %s: %w", old.DomainName, old.ID, err)
		}
	}
	if archive == "" {
		archive = m.archiveImage(ctx, cfg.Image)
	}
	if archive != "" {
		return m.restoreVM(ctx, sb, cfg, archive)
	}
	return m.createVM(ctx, sb, cfg)
}

// checkOnePerPod applies the one-VM-per-pod rule to a new container of sb.
// It returns the ID of a container kubelet's retry claims (made after its
// first call timed out), or the exited containers of the sandbox.
func (m *Manager) checkOnePerPod(sb *Sandbox, cfg ContainerConfig) (claimed string, exited []*Container, err error) {
	for _, other := range m.ListContainers(ContainerFilter{SandboxID: sb.ID}) {
		if other.Config.Name == cfg.Name && other.Config.Attempt == cfg.Attempt {
			if !other.UnclaimedSince.IsZero() && other.State == ContainerCreated {
				cp := *other
				cp.UnclaimedSince = time.Time{}
				if err := m.putContainer(&cp); err != nil {
					return "", nil, err
				}
				m.log.Info("CreateContainer: kubelet's retry claims the container finished after its first call timed out", "pod", sb.ID, "container", other.ID)
				return other.ID, nil, nil
			}
			return "", nil, errdefs.AlreadyExistsf("container %q attempt %d already exists in sandbox %s as %s", cfg.Name, cfg.Attempt, sb.ID, other.ID)
		}
		if other.State != ContainerExited {
			return "", nil, errdefs.FailedPreconditionf("podvisor runs one VM per pod: sandbox %s already has container %s (%q, %s); a second container is refused until it has exited",
				sb.ID, other.ID, other.Config.Name, other.State)
		}
		exited = append(exited, other)
	}
	return "", exited, nil
}

// createVM resolves the image, assembles and defines the VM and records
// the container. The work runs to its end even if the caller gives up
// (the record then waits for kubelet's retry); a failure takes back every
// step made. The VM's directory is the assembler's until Assemble returns
// (it removes what it made on failure), the manager's from then on.
func (m *Manager) createVM(callerCtx context.Context, sb *Sandbox, cfg ContainerConfig) (_ string, err error) {
	ctx, cancel := detach(callerCtx, m.cfg.OpTimeout)
	defer cancel()
	imagePath, imageRef, err := m.cfg.Images.Resolve(ctx, cfg.Image)
	if err != nil {
		return "", fmt.Errorf("resolving image %q: %w", cfg.Image, err)
	}
	if err := m.cfg.Failpoints.Eval(FailCreateAfterResolve); err != nil {
		return "", err
	}
	id := newID()
	unlock := m.locks.lock(id)
	defer unlock()
	name := DomainName(id)
	c := &Container{
		ID:         id,
		SandboxID:  sb.ID,
		Config:     cfg,
		ImageRef:   imageRef,
		DomainName: name,
		State:      ContainerCreated,
		CreatedAt:  m.clock.Now(),
		Dir:        containerDir(m.cfg.StateDir, name),
	}
	if cfg.LogPath != "" && sb.Config.LogDirectory != "" {
		c.LogPath = filepath.Join(sb.Config.LogDirectory, cfg.LogPath)
	}
	log := m.log.With("pod", sb.ID, "container", id, "domain", name)

	var rollback undo
	defer rollback.runIfFailed(ctx, &err)
	var domainXML string
	err = m.timed("assemble", func() (err error) {
		domainXML, err = m.cfg.Assembler.Assemble(ctx, sb, c, imagePath)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("preparing the VM of container %q: %w", cfg.Name, err)
	}
	rollback.push(func(context.Context) { _ = removeDir(c.Dir) })
	if err := m.cfg.Failpoints.Eval(FailCreateAfterAssemble); err != nil {
		return "", err
	}
	if err := m.timed("define", func() error { _, err := m.hv.Define(ctx, domainXML); return err }); err != nil {
		return "", fmt.Errorf("defining the VM of container %q: %w", cfg.Name, err)
	}
	rollback.push(func(ctx context.Context) {
		if uerr := m.hv.Undefine(ctx, name); uerr != nil {
			log.Error("undefining the VM of a container that failed to be created", "err", uerr)
		}
	})
	if err := m.cfg.Failpoints.Eval(FailCreateAfterDefine); err != nil {
		return "", err
	}
	if callerCtx.Err() != nil {
		c.UnclaimedSince = m.clock.Now()
	}
	if err := m.putContainer(c); err != nil {
		return "", err
	}
	rollback.commit()
	if err := callerCtx.Err(); err != nil {
		log.Warn("container created after the caller gave up; kept for its retry")
		return "", fmt.Errorf("CreateContainer %q finished after the caller gave up; a retry returns container %s: %w", cfg.Name, id, err)
	}
	log.Info("container created", "image", cfg.Image, "imageRef", imageRef)
	return id, nil
}

// StartContainer boots the container's VM.
func (m *Manager) StartContainer(ctx context.Context, id string) error {
	id, err := m.resolveContainer(id)
	if err != nil {
		return err
	}
	unlock := m.locks.lock(id)
	defer unlock()
	c := m.getContainer(id)
	if c == nil {
		return errdefs.NotFoundf("container %q not found", id)
	}
	if c.State != ContainerCreated {
		return errdefs.FailedPreconditionf("container %s is %s: only a created container can be started", id, c.State)
	}
	log := m.log.With("pod", c.SandboxID, "container", id, "domain", c.DomainName)
	start := func() error { return m.startDomain(ctx, c, log) }
	if c.Restore != nil {
		start = func() error { return m.startRestored(ctx, c) }
	}
	if err := start(); err != nil {
		cp := *c
		m.markExited(&cp, m.clock.Now(), 128, "StartError", err.Error())
		if perr := m.putContainer(&cp); perr != nil {
			log.Error("saving a container that failed to start", "err", perr)
		}
		return fmt.Errorf("starting the VM of container %s: %w", id, err)
	}
	cp := *c
	cp.State = ContainerRunning
	cp.StartedAt = m.clock.Now()
	cp.Restore = nil
	if err := m.putContainer(&cp); err != nil {
		return err
	}
	m.startConsole(&cp)
	log.Info("container started")
	return nil
}

// startDomain makes the VM's cgroup and starts the VM; if the call then
// fails, the VM is destroyed and its cgroup removed so that the
// container's EXITED state is the truth.
func (m *Manager) startDomain(ctx context.Context, c *Container, log *slog.Logger) (err error) {
	name := c.DomainName
	if err := m.cfg.Failpoints.Eval(FailStartBeforeStart); err != nil {
		return err
	}
	release, err := m.prepareCgroup(ctx, c, log)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			m.stopConsole(c.ID)
			release()
		}
	}()
	if err := m.timed("start", func() error { return m.bootDomain(ctx, c, log) }); err != nil {
		return err
	}
	if err := m.cfg.Failpoints.Eval(FailStartAfterStart); err != nil {
		if derr := m.hv.Destroy(context.WithoutCancel(ctx), name); derr != nil {
			log.Error("destroying a VM whose start failed", "err", derr)
		}
		return err
	}
	return nil
}

// consoleConnectTimeout bounds how long a VM started paused waits for its
// console before it runs anyway (its first lines are then lost).
const consoleConnectTimeout = time.Minute

// bootDomain starts the VM. A hypervisor that can start it paused
// (hypervisor.PausedStarter) has it wait until its console is connected:
// QEMU drops what the guest prints while nobody reads the serial socket,
// and with 8 VMs starting at once on 2 cores libvirt's start has taken 30 s
// to return and opening the console 26 s more: longer than the test
// guest's boot, whose log was then empty (e2e, 2026-12-04).
func (m *Manager) bootDomain(ctx context.Context, c *Container, log *slog.Logger) error {
	ps, ok := m.hv.(hypervisor.PausedStarter)
	if !ok {
		return m.hv.Start(ctx, c.DomainName)
	}
	if err := ps.StartPaused(ctx, c.DomainName); err != nil {
		return err
	}
	wait := time.NewTimer(consoleConnectTimeout)
	defer wait.Stop()
	select {
	case <-m.startConsole(c):
	case <-wait.C:
		log.Warn("the console did not connect in time; the guest runs anyway and its first console lines may be lost", "waited", consoleConnectTimeout)
	case <-ctx.Done():
	}
	err := ctx.Err()
	if err == nil {
		err = ps.Unpause(ctx, c.DomainName)
	}
	if err != nil {
		if derr := m.hv.Destroy(context.WithoutCancel(ctx), c.DomainName); derr != nil {
			log.Error("destroying a VM started paused that could not run", "err", derr)
		}
		return fmt.Errorf("letting the VM started paused run: %w", err)
	}
	return nil
}

// prepareCgroup makes the VM's cgroup with its limits before its QEMU
// starts (booted or resumed from a saved state); release removes it again
// when that start fails.
func (m *Manager) prepareCgroup(ctx context.Context, c *Container, log *slog.Logger) (release func(), err error) {
	r := m.cfg.Resources
	if r == nil {
		return func() {}, nil
	}
	sb := m.getSandbox(c.SandboxID)
	if sb == nil {
		return nil, errdefs.NotFoundf("sandbox %s of container %s not found", c.SandboxID, c.ID)
	}
	if err := r.PrepareStart(ctx, sb, c); err != nil {
		return nil, fmt.Errorf("preparing the VM's cgroup: %w", err)
	}
	return func() {
		if rerr := r.Release(context.WithoutCancel(ctx), sb, c); rerr != nil {
			log.Error("removing the cgroup of a VM whose start failed", "err", rerr)
		}
	}, nil
}

// StopContainer asks the guest to power off (ACPI), repeating the request
// until timeout, then destroys the VM. A missing or stopped container is not
// an error.
func (m *Manager) StopContainer(ctx context.Context, id string, timeout time.Duration) error {
	rid, err := m.resolveContainer(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		m.log.Info("StopContainer: no such container; nothing to do", "container", id)
		return nil
	} else if err != nil {
		return err
	}
	id = rid
	unlock := m.locks.lock(id)
	defer unlock()
	c := m.getContainer(id)
	if c == nil {
		return nil
	}
	c, err = m.syncContainer(ctx, c)
	if err != nil {
		return err
	}
	if c.State != ContainerRunning {
		return nil
	}
	log := m.log.With("pod", c.SandboxID, "container", id, "domain", c.DomainName)
	deadline := m.clock.Now().Add(timeout)
	stopped := false
	if timeout > 0 {
		log.Info("stopping container: ACPI shutdown", "timeout", timeout)
		stopped, err = m.shutdownUntil(ctx, c.DomainName, deadline)
		if err != nil {
			return err
		}
	}
	forced := !stopped
	if forced {
		log.Info("stopping container: destroying the VM")
		if err := m.hv.Destroy(ctx, c.DomainName); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
			return fmt.Errorf("destroying the VM of container %s: %w", id, err)
		}
	}
	st, err := m.hv.Status(ctx, c.DomainName)
	cp := *c
	switch {
	case errors.Is(err, hypervisor.ErrNotFound):
		m.markExited(&cp, m.clock.Now(), 137, "Error", "the VM's domain disappeared while stopping")
	case err != nil:
		return fmt.Errorf("reading state of VM %s after stop: %w", c.DomainName, err)
	case st.State == hypervisor.StateShutoff || st.State == hypervisor.StateCrashed:
		code, reason, msg := exitOf(st)
		if forced && st.Reason == hypervisor.ReasonDestroyed {
			msg = fmt.Sprintf("the VM was destroyed: it did not power off within the %s grace period", timeout)
		}
		m.markExited(&cp, nonZero(st.FinishedAt, m.clock.Now()), code, reason, msg)
	default:
		return fmt.Errorf("VM %s is still %s after destroy", c.DomainName, st.State)
	}
	if err := m.putContainer(&cp); err != nil {
		return err
	}
	log.Info("container stopped", "exitCode", cp.ExitCode, "reason", cp.Reason)
	return nil
}

// shutdownUntil repeats ACPI shutdown until the domain is off or the
// deadline passes; it reports whether the domain went off.
func (m *Manager) shutdownUntil(ctx context.Context, name string, deadline time.Time) (bool, error) {
	const poll = 100 * time.Millisecond
	var lastACPI time.Time
	for {
		st, err := m.hv.Status(ctx, name)
		if errors.Is(err, hypervisor.ErrNotFound) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("reading state of VM %s: %w", name, err)
		}
		if st.State == hypervisor.StateShutoff || st.State == hypervisor.StateCrashed {
			return true, nil
		}
		now := m.clock.Now()
		if !now.Before(deadline) {
			return false, nil
		}
		if lastACPI.IsZero() || now.Sub(lastACPI) >= m.cfg.ShutdownRetry {
			if err := m.hv.Shutdown(ctx, name); err != nil && !errors.Is(err, hypervisor.ErrInvalidState) {
				m.log.Warn("ACPI shutdown request failed; will retry or destroy", "domain", name, "err", err)
			}
			lastACPI = now
		}
		wait := poll
		if left := deadline.Sub(now); left < wait {
			wait = left
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-m.clock.After(wait):
		}
	}
}

// RemoveContainer destroys and undefines the container's VM and deletes its
// disks. A missing container is not an error.
func (m *Manager) RemoveContainer(ctx context.Context, id string) error {
	rid, err := m.resolveContainer(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		m.log.Info("RemoveContainer: no such container; nothing to do", "container", id)
		return nil
	} else if err != nil {
		return err
	}
	id = rid
	if err := m.StopContainer(ctx, id, 0); err != nil {
		return err
	}
	unlock := m.locks.lock(id)
	defer unlock()
	c := m.getContainer(id)
	if c == nil {
		return nil
	}
	m.stopConsole(id)
	if err := m.hv.Destroy(ctx, c.DomainName); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		return fmt.Errorf("destroying the VM of container %s: %w", id, err)
	}
	if err := m.hv.Undefine(ctx, c.DomainName); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		return fmt.Errorf("undefining the VM of container %s: %w", id, err)
	}
	if r := m.cfg.Resources; r != nil {
		if sb := m.getSandbox(c.SandboxID); sb != nil {
			if err := r.Release(ctx, sb, c); err != nil {
				return fmt.Errorf("removing the cgroup of container %s: %w", id, err)
			}
		}
	}
	if err := removeDir(c.Dir); err != nil {
		return fmt.Errorf("removing the disks of container %s: %w", id, err)
	}
	if err := m.deleteContainer(id); err != nil {
		return err
	}
	m.log.Info("container removed", "pod", c.SandboxID, "container", id)
	return nil
}

// ContainerStatus returns a container with its state freshly read from the
// hypervisor.
func (m *Manager) ContainerStatus(ctx context.Context, id string) (Container, error) {
	rid, err := m.resolveContainer(id)
	if err != nil {
		return Container{}, err
	}
	unlock := m.locks.lock(rid)
	c, _ := m.refreshLocked(ctx, rid) // a failed read reports the last state known
	unlock()
	if c == nil {
		return Container{}, errdefs.NotFoundf("container %q not found", id)
	}
	return *c, nil
}

// ListContainers returns the containers matching f, oldest first. States
// come from the monitor's last look, not from the hypervisor, so listing
// stays cheap with many VMs. The records are shared, not copied: callers
// must not modify them (published records never change; see putContainer).
func (m *Manager) ListContainers(f ContainerFilter) []*Container {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*Container, 0, len(m.containerOrder.recs))
	for _, c := range m.containerOrder.recs {
		if f.ID != "" && !hasPrefix(c.ID, f.ID) {
			continue
		}
		if f.SandboxID != "" && !hasPrefix(c.SandboxID, f.SandboxID) {
			continue
		}
		if f.State != nil && c.State != *f.State {
			continue
		}
		if !labelsMatch(c.Config.Labels, f.LabelSelector) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// Stats returns resource usage of a running container's VM.
func (m *Manager) Stats(ctx context.Context, id string) (Container, hypervisor.Stats, error) {
	c, err := m.ContainerStatus(ctx, id)
	if err != nil {
		return Container{}, hypervisor.Stats{}, err
	}
	if c.State != ContainerRunning {
		return c, hypervisor.Stats{Timestamp: m.clock.Now()}, nil
	}
	st, err := m.hv.Stats(ctx, c.DomainName)
	if err != nil {
		if errors.Is(err, hypervisor.ErrInvalidState) || errors.Is(err, hypervisor.ErrNotFound) {
			return c, hypervisor.Stats{Timestamp: m.clock.Now()}, nil
		}
		return c, hypervisor.Stats{}, fmt.Errorf("reading stats of VM %s: %w", c.DomainName, err)
	}
	return c, st, nil
}

// ReopenContainerLog reopens the console log file after kubelet rotated it.
func (m *Manager) ReopenContainerLog(ctx context.Context, id string) error {
	c, err := m.ContainerStatus(ctx, id)
	if err != nil {
		return err
	}
	if c.State != ContainerRunning {
		return errdefs.FailedPreconditionf("container %s is %s: only a running container's log can be reopened", c.ID, c.State)
	}
	m.mu.RLock()
	cons := m.consoles[c.ID]
	m.mu.RUnlock()
	if cons == nil || cons.log == nil {
		return errdefs.FailedPreconditionf("container %s has no console log (no log path was given)", c.ID)
	}
	if err := cons.log.Reopen(); err != nil {
		return fmt.Errorf("reopening the log of container %s: %w", c.ID, err)
	}
	return nil
}

// resolveSandbox maps an ID or unique ID prefix to a sandbox ID.
func (m *Manager) resolveSandbox(id string) (string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return resolveIn(m.sandboxes, "sandbox", id)
}

// resolveContainer maps an ID or unique ID prefix to a container ID.
func (m *Manager) resolveContainer(id string) (string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return resolveIn(m.containers, "container", id)
}

// resolveIn finds id, or the one key id is a prefix of, in records; the
// caller holds the map lock. crictl and users give short IDs.
func resolveIn[T any](records map[string]*T, kind, id string) (string, error) {
	if _, ok := records[id]; ok {
		return id, nil
	}
	keys := make([]string, 0, len(records))
	for k := range records {
		keys = append(keys, k)
	}
	return resolvePrefix(kind, id, keys)
}

func resolvePrefix(kind, id string, keys []string) (string, error) {
	if id == "" {
		return "", errdefs.InvalidArgumentf("%s ID is required", kind)
	}
	var match string
	for _, k := range keys {
		if hasPrefix(k, id) {
			if match != "" {
				return "", errdefs.InvalidArgumentf("%s ID prefix %q is ambiguous: give more characters", kind, id)
			}
			match = k
		}
	}
	if match == "" {
		return "", errdefs.NotFoundf("%s %q not found", kind, id)
	}
	return match, nil
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

// AttachConsole joins the serial console of a running container: the
// output from now on, and a writer typing into the guest.
func (m *Manager) AttachConsole(ctx context.Context, id string) (io.ReadCloser, io.Writer, error) {
	c, err := m.ContainerStatus(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if c.State != ContainerRunning {
		return nil, nil, errdefs.FailedPreconditionf("container %s is %s: only a running VM's console can be attached", c.ID, c.State)
	}
	m.mu.RLock()
	cons := m.consoles[c.ID]
	m.mu.RUnlock()
	if cons == nil {
		return nil, nil, errdefs.Unavailablef("the console of container %s is not connected yet; retry", c.ID)
	}
	out, in := cons.hub.Attach()
	return out, in, nil
}

// PodIP returns the primary IP of a ready sandbox.
func (m *Manager) PodIP(_ context.Context, sandboxID string) (string, error) {
	sb, err := m.PodSandbox(sandboxID)
	if err != nil {
		return "", err
	}
	ips := sb.Network.IPs()
	if sb.State != SandboxReady || len(ips) == 0 {
		return "", errdefs.FailedPreconditionf("sandbox %s has no pod IP (state %s)", sb.ID, sb.State)
	}
	return ips[0], nil
}

// OpenDisplay connects to the display (RFB) of the running VM of a
// sandbox, for CRI port-forward to hypervisor.DisplayPort.
func (m *Manager) OpenDisplay(ctx context.Context, sandboxID string) (io.ReadWriteCloser, error) {
	sb, err := m.PodSandbox(sandboxID)
	if err != nil {
		return nil, err
	}
	d, ok := m.hv.(hypervisor.Displayer)
	if !ok {
		return nil, errdefs.Unimplementedf("the %T hypervisor has no VM displays", m.hv)
	}
	running := ContainerRunning
	cs := m.ListContainers(ContainerFilter{SandboxID: sb.ID, State: &running})
	if len(cs) == 0 {
		return nil, errdefs.FailedPreconditionf("sandbox %s has no running VM, so no display", sb.ID)
	}
	conn, err := d.Display(ctx, cs[0].DomainName)
	if err != nil {
		return nil, fmt.Errorf("display of container %s: %w", cs[0].ID, err)
	}
	return conn, nil
}
