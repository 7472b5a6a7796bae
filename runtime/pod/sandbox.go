package pod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/podvisor/podvisor/runtime/errdefs"
)

// RunPodSandbox creates a ready sandbox with its network. A ready sandbox
// of the same pod UID and attempt is returned as is (kubelet retries).
func (m *Manager) RunPodSandbox(ctx context.Context, cfg SandboxConfig) (string, error) {
	if err := validateSandboxConfig(cfg); err != nil {
		return "", err
	}
	unlock := m.locks.lock("pod-uid:" + cfg.UID)
	defer unlock()
	if id, err := m.existingSandbox(cfg); id != "" || err != nil {
		return id, err
	}
	return m.createSandbox(ctx, cfg)
}

// existingSandbox returns the ready sandbox of the same pod UID and attempt
// (claiming it for kubelet's retry if it was finished after the first call
// timed out); one that is not ready is an error.
func (m *Manager) existingSandbox(cfg SandboxConfig) (string, error) {
	for _, sb := range m.ListPodSandboxes(SandboxFilter{}) {
		if sb.Config.UID != cfg.UID || sb.Config.Attempt != cfg.Attempt {
			continue
		}
		if sb.State != SandboxReady {
			return "", errdefs.AlreadyExistsf("sandbox %s of pod %s/%s (uid %s) attempt %d exists and is not ready: remove it, or run the pod with a new attempt number",
				sb.ID, cfg.Namespace, cfg.Name, cfg.UID, cfg.Attempt)
		}
		if !sb.UnclaimedSince.IsZero() {
			cp := *sb
			cp.UnclaimedSince = time.Time{}
			if err := m.putSandbox(&cp); err != nil {
				return "", err
			}
			m.log.Info("RunPodSandbox: kubelet's retry claims the sandbox finished after its first call timed out", "pod", sb.ID)
			return sb.ID, nil
		}
		m.log.Info("RunPodSandbox: sandbox exists and is ready; returning it", "pod", sb.ID, "uid", cfg.UID)
		return sb.ID, nil
	}
	return "", nil
}

// createSandbox records a new sandbox, sets up its network and marks it
// ready. The work runs to its end even if kubelet's deadline passes: a
// half-made sandbox torn down and made again on every retry would never
// finish on a slow node. A failure is undone by abandonSandbox, once.
func (m *Manager) createSandbox(callerCtx context.Context, cfg SandboxConfig) (_ string, err error) {
	ctx, cancel := detach(callerCtx, m.cfg.OpTimeout)
	defer cancel()
	sb := &Sandbox{
		ID:        newID(),
		Config:    cfg,
		State:     SandboxNotReady,
		CreatedAt: m.clock.Now(),
		Creating:  true,
	}
	log := m.log.With("pod", sb.ID, "name", cfg.Namespace+"/"+cfg.Name)
	unlockSB := m.locks.lock(sb.ID)
	defer unlockSB()
	// The record goes to disk before the network exists, so a crash in
	// the middle leaves a record that recovery and RemovePodSandbox can
	// use to tear the network down.
	if err := m.putSandbox(sb); err != nil {
		return "", err
	}
	networkMade, recorded, last := false, false, sb
	defer func() {
		if err != nil && !recorded {
			m.abandonSandbox(ctx, last, networkMade)
		}
	}()
	if cfg.LogDirectory != "" {
		if err := os.MkdirAll(cfg.LogDirectory, 0o755); err != nil {
			return "", fmt.Errorf("creating pod log directory %s: %w", cfg.LogDirectory, err)
		}
	}
	if err := m.cfg.Failpoints.Eval(FailRunBeforeNetwork); err != nil {
		return "", err
	}
	// A failed Setup may have made part of the network: tear it down too.
	networkMade = true
	var netStatus *NetworkStatus
	err = m.timed("network", func() (err error) {
		netStatus, err = m.cfg.Network.Setup(ctx, sb)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("setting up the network of pod %s/%s: %w", cfg.Namespace, cfg.Name, err)
	}
	if err := m.cfg.Failpoints.Eval(FailRunAfterNetwork); err != nil {
		return "", err
	}
	ready := *sb
	ready.Network = netStatus
	ready.State = SandboxReady
	ready.Creating = false
	if callerCtx.Err() != nil {
		ready.UnclaimedSince = m.clock.Now()
	}
	last = &ready
	if err := m.putSandbox(&ready); err != nil {
		return "", err
	}
	recorded = true
	if err := callerCtx.Err(); err != nil {
		log.Warn("sandbox ready after the caller gave up; kept for its retry", "ips", netStatus.IPs())
		return "", fmt.Errorf("RunPodSandbox for pod %s/%s finished after the caller gave up; a retry returns sandbox %s: %w", cfg.Namespace, cfg.Name, sb.ID, err)
	}
	log.Info("sandbox ready", "ips", netStatus.IPs())
	return sb.ID, nil
}

// abandonSandbox undoes a RunPodSandbox that failed part way. Cleanup runs
// even if ctx is done: kubelet giving up must not leak a network.
func (m *Manager) abandonSandbox(ctx context.Context, sb *Sandbox, teardown bool) {
	cctx := context.WithoutCancel(ctx)
	if teardown {
		if err := m.cfg.Network.Teardown(cctx, sb); err != nil {
			m.log.Error("tearing down the network of a failed sandbox; the record is kept so RemovePodSandbox can retry", "pod", sb.ID, "err", err)
			cp := *sb
			cp.Creating = false
			cp.State = SandboxNotReady
			_ = m.putSandbox(&cp)
			return
		}
	}
	if err := m.deleteSandbox(sb.ID); err != nil {
		m.log.Error("deleting the record of a failed sandbox", "pod", sb.ID, "err", err)
	}
}

func validateSandboxConfig(cfg SandboxConfig) error {
	switch {
	case cfg.Name == "":
		return errdefs.InvalidArgumentf("sandbox config: metadata.name is required")
	case cfg.UID == "":
		return errdefs.InvalidArgumentf("sandbox config: metadata.uid is required")
	case cfg.Namespace == "":
		return errdefs.InvalidArgumentf("sandbox config: metadata.namespace is required")
	}
	return validateSysctls(cfg.Sysctls)
}

// Bounds of a sysctl: Kubernetes' name length, and a page for the value
// (what the kernel reads of a write to /proc/sys).
const (
	maxSysctlName  = 253
	maxSysctlValue = 4096
)

var sysctlName = regexp.MustCompile(`^[a-z0-9_-]+([./][a-z0-9_-]+)*$`)

// validateSysctls checks the names and values of the pod's sysctls, which
// reach the guest's cloud-init: a name is dot- or slash-separated segments
// of [a-z0-9_-], a value is printable text on one line. Names are checked
// in sorted order so the error is the same for the same config.
func validateSysctls(sysctls map[string]string) error {
	names := make([]string, 0, len(sysctls))
	for k := range sysctls {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		if len(name) > maxSysctlName || !sysctlName.MatchString(name) {
			return errdefs.InvalidArgumentf("sandbox config: linux.sysctls[%q]: bad name: accepted dot- or slash-separated segments of a-z, 0-9, _ and -, at most %d characters, e.g. kernel.shm_rmid_forced", name, maxSysctlName)
		}
		v := sysctls[name]
		if v == "" || len(v) > maxSysctlValue || !printableLine(v) {
			shown := strconv.Quote(v)
			if len(v) > 64 {
				shown = fmt.Sprintf("of %d bytes", len(v))
			}
			return errdefs.InvalidArgumentf("sandbox config: linux.sysctls[%q]: bad value %s: accepted printable text on one line (tabs allowed), 1 to %d bytes, e.g. \"1\" or \"1024 65000\"", name, shown, maxSysctlValue)
		}
	}
	return nil
}

func printableLine(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r != '\t' && !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// StopPodSandbox stops the sandbox's VM and tears its network down. A
// missing or already stopped sandbox is not an error.
func (m *Manager) StopPodSandbox(ctx context.Context, id string) error {
	rid, err := m.resolveSandbox(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		m.log.Info("StopPodSandbox: no such sandbox; nothing to do", "pod", id)
		return nil
	} else if err != nil {
		return err
	}
	id = rid
	unlock := m.locks.lock(id)
	defer unlock()
	sb := m.getSandbox(id)
	if sb == nil {
		m.log.Info("StopPodSandbox: no such sandbox; nothing to do", "pod", id)
		return nil
	}
	for _, c := range m.ListContainers(ContainerFilter{SandboxID: id}) {
		// kubelet stops containers first with their grace period; what
		// is still running now is stopped at once.
		if err := m.StopContainer(ctx, c.ID, 0); err != nil {
			return fmt.Errorf("stopping container %s of sandbox %s: %w", c.ID, id, err)
		}
	}
	if sb.State == SandboxNotReady && sb.Network == nil && !sb.Creating {
		return nil
	}
	if err := m.cfg.Network.Teardown(ctx, sb); err != nil {
		return fmt.Errorf("tearing down the network of sandbox %s: %w", id, err)
	}
	cp := *sb
	cp.State = SandboxNotReady
	cp.Network = nil
	cp.Creating = false
	if err := m.putSandbox(&cp); err != nil {
		return err
	}
	m.log.Info("sandbox stopped", "pod", id)
	return nil
}

// RemovePodSandbox stops the sandbox if needed and removes it with its
// containers. A missing sandbox is not an error.
func (m *Manager) RemovePodSandbox(ctx context.Context, id string) error {
	rid, err := m.resolveSandbox(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		m.log.Info("RemovePodSandbox: no such sandbox; nothing to do", "pod", id)
		return nil
	} else if err != nil {
		return err
	}
	id = rid
	if err := m.StopPodSandbox(ctx, id); err != nil {
		return err
	}
	unlock := m.locks.lock(id)
	defer unlock()
	for _, c := range m.ListContainers(ContainerFilter{SandboxID: id}) {
		if err := m.RemoveContainer(ctx, c.ID); err != nil {
			return fmt.Errorf("removing container %s of sandbox %s: %w", c.ID, id, err)
		}
	}
	if m.getSandbox(id) == nil {
		return nil
	}
	if err := m.deleteSandbox(id); err != nil {
		return err
	}
	m.log.Info("sandbox removed", "pod", id)
	return nil
}

// PodSandbox returns a sandbox by ID.
func (m *Manager) PodSandbox(id string) (Sandbox, error) {
	rid, err := m.resolveSandbox(id)
	if err != nil {
		return Sandbox{}, err
	}
	sb := m.getSandbox(rid)
	if sb == nil {
		return Sandbox{}, errdefs.NotFoundf("sandbox %q not found", id)
	}
	return *sb, nil
}

// ListPodSandboxes returns the sandboxes matching f, oldest first. The
// records are shared, not copied: callers must not modify them.
func (m *Manager) ListPodSandboxes(f SandboxFilter) []*Sandbox {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*Sandbox, 0, len(m.sandboxOrder.recs))
	for _, sb := range m.sandboxOrder.recs {
		if f.ID != "" && !hasPrefix(sb.ID, f.ID) {
			continue
		}
		if f.State != nil && sb.State != *f.State {
			continue
		}
		if !labelsMatch(sb.Config.Labels, f.LabelSelector) {
			continue
		}
		out = append(out, sb)
	}
	return out
}

// SandboxCounts counts sandboxes by state, for metrics.
func (m *Manager) SandboxCounts() map[string]int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := map[string]int{string(SandboxReady): 0, string(SandboxNotReady): 0}
	for _, sb := range m.sandboxes {
		out[string(sb.State)]++
	}
	return out
}

// ContainerCounts counts containers by state, for metrics.
func (m *Manager) ContainerCounts() map[string]int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := map[string]int{string(ContainerCreated): 0, string(ContainerRunning): 0, string(ContainerExited): 0}
	for _, c := range m.containers {
		out[string(c.State)]++
	}
	return out
}
