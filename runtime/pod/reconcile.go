package pod

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// Failpoints of the lifecycle (see runtime/failpoint): each names the step
// after (or before) which the call fails when armed.
const (
	FailRunBeforeNetwork    = "pod/run-sandbox/before-network"
	FailRunAfterNetwork     = "pod/run-sandbox/after-network"
	FailCreateAfterResolve  = "pod/create-container/after-resolve"
	FailCreateAfterAssemble = "pod/create-container/after-assemble"
	FailCreateAfterDefine   = "pod/create-container/after-define"
	FailStartBeforeStart    = "pod/start-container/before-start"
	FailStartAfterStart     = "pod/start-container/after-start"
)

// Failpoints lists every lifecycle failpoint.
var Failpoints = []string{
	FailRunBeforeNetwork, FailRunAfterNetwork,
	FailCreateAfterResolve, FailCreateAfterAssemble, FailCreateAfterDefine,
	FailStartBeforeStart, FailStartAfterStart,
}

// DomainPrefix starts the name of every domain podvisor defines; domains
// without it are not ours and are never touched.
const DomainPrefix = "pv-"

// NetworkCollector is implemented by networks that can find what they set
// up for sandboxes that no longer exist (after a crash between steps).
type NetworkCollector interface {
	// CollectOrphans removes network state of every sandbox ID not in
	// keep and returns what it removed.
	CollectOrphans(ctx context.Context, keep map[string]bool) ([]string, error)
}

// NetworkResumer is implemented by networks with per-pod services in the
// daemon (the guest's DHCP server): after a restart they are started again
// for every ready sandbox.
type NetworkResumer interface {
	Resume(ctx context.Context, sb *Sandbox) error
}

// collectOrphans removes what a crash between two steps can leave behind:
// our domains without a container record, VM directories without a
// container, network state without a sandbox. Nothing a record refers to
// is touched. It runs once at start-up, before serving.
func (m *Manager) collectOrphans(ctx context.Context) error {
	known := map[string]bool{}
	dirs := map[string]bool{}
	for _, c := range m.containers {
		known[c.DomainName] = true
		dirs[filepath.Base(c.Dir)] = true
	}
	doms, err := m.hv.List(ctx)
	if err != nil {
		return err
	}
	for _, d := range doms {
		if !strings.HasPrefix(d.Name, DomainPrefix) || known[d.Name] {
			continue
		}
		// Another podvisor (a test, a second instance) may share the
		// hypervisor: a domain is ours only if its disks live in our
		// state dir.
		if !m.ownsDomain(ctx, d.Name) {
			continue
		}
		if err := m.hv.Destroy(ctx, d.Name); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
			m.log.Error("collecting an orphan domain: destroy failed", "domain", d.Name, "err", err)
			continue
		}
		if err := m.hv.Undefine(ctx, d.Name); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
			m.log.Error("collecting an orphan domain: undefine failed", "domain", d.Name, "err", err)
			continue
		}
		m.log.Warn("collected an orphan domain (no container record refers to it)", "domain", d.Name, "state", d.State)
	}
	vmDir := filepath.Join(m.cfg.StateDir, "vms")
	entries, err := os.ReadDir(vmDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		if dirs[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(vmDir, e.Name())); err != nil {
			m.log.Error("collecting an orphan VM directory", "dir", e.Name(), "err", err)
			continue
		}
		m.log.Warn("collected an orphan VM directory (disks of no container)", "dir", e.Name())
	}
	if nc, ok := m.cfg.Network.(NetworkCollector); ok {
		keep := map[string]bool{}
		for id := range m.sandboxes {
			keep[id] = true
		}
		removed, err := nc.CollectOrphans(ctx, keep)
		if err != nil {
			m.log.Error("collecting orphan pod networks", "err", err)
		}
		for _, r := range removed {
			m.log.Warn("collected an orphan pod network", "what", r)
		}
	}
	return nil
}

// collectUnclaimed removes sandboxes and containers made for a kubelet
// call that timed out and was never retried.
func (m *Manager) collectUnclaimed(ctx context.Context) {
	now := m.clock.Now()
	for _, c := range m.ListContainers(ContainerFilter{}) {
		if !c.UnclaimedSince.IsZero() && now.Sub(c.UnclaimedSince) >= m.cfg.UnclaimedTTL {
			m.log.Warn("removing a container kubelet gave up on and never asked for again", "pod", c.SandboxID, "container", c.ID, "since", c.UnclaimedSince)
			if err := m.RemoveContainer(ctx, c.ID); err != nil {
				m.log.Error("removing an unclaimed container", "container", c.ID, "err", err)
			}
		}
	}
	for _, sb := range m.ListPodSandboxes(SandboxFilter{}) {
		if !sb.UnclaimedSince.IsZero() && now.Sub(sb.UnclaimedSince) >= m.cfg.UnclaimedTTL {
			m.log.Warn("removing a sandbox kubelet gave up on and never asked for again", "pod", sb.ID, "since", sb.UnclaimedSince)
			if err := m.RemovePodSandbox(ctx, sb.ID); err != nil {
				m.log.Error("removing an unclaimed sandbox", "pod", sb.ID, "err", err)
			}
		}
	}
}

// detach gives a lifecycle call its own context: when kubelet's deadline
// passes mid-way the work still finishes (and is kept for kubelet's retry)
// instead of being torn down half-made and redone.
func detach(ctx context.Context, limit time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), limit)
}

// ownsDomain reports whether a domain's disks live under this manager's
// VM directory.
func (m *Manager) ownsDomain(ctx context.Context, name string) bool {
	x, err := m.hv.XML(ctx, name)
	if err != nil {
		return false
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil || d.Devices == nil {
		return false
	}
	vmDir := filepath.Join(m.cfg.StateDir, "vms") + string(filepath.Separator)
	for _, disk := range d.Devices.Disks {
		if disk.Source != nil && disk.Source.File != nil && strings.HasPrefix(disk.Source.File.File, vmDir) {
			return true
		}
	}
	return false
}

// recover brings records in line with the hypervisor after a restart.
func (m *Manager) recover(ctx context.Context) error {
	for _, sb := range m.sandboxes {
		if sb.Creating {
			// RunPodSandbox was cut short: the sandbox never became
			// ready. Keep the record so kubelet can stop and remove
			// it (which tears the network down).
			cp := *sb
			cp.Creating = false
			cp.State = SandboxNotReady
			if err := m.putSandbox(&cp); err != nil {
				return err
			}
			m.log.Warn("sandbox was being created when podvisor stopped; marked not ready", "pod", sb.ID)
		}
	}
	if nr, ok := m.cfg.Network.(NetworkResumer); ok {
		for _, sb := range m.sandboxes {
			if sb.State != SandboxReady {
				continue
			}
			if err := nr.Resume(ctx, sb); err != nil {
				// The VM keeps its address until its lease ends; the
				// sandbox stays usable for Stop/Remove either way.
				m.log.Error("resuming the network services of a ready sandbox", "pod", sb.ID, "err", err)
			}
		}
	}
	for _, c := range m.containers {
		c, err := m.syncContainer(ctx, c)
		if err != nil {
			return err
		}
		if c.State == ContainerRunning {
			m.startConsole(c)
		}
		m.log.Info("recovered container", "pod", c.SandboxID, "container", c.ID, "state", c.State)
	}
	m.log.Info("recovered state", "sandboxes", len(m.sandboxes), "containers", len(m.containers))
	return nil
}
