package pod

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// monitor notices VMs that stopped on their own (guest poweroff, crash,
// emulator killed) and marks their containers exited. Without state change
// notices from the hypervisor it checks every running VM each PollInterval.
// With them it checks a VM when its domain is reported changed, retries
// each PollInterval a check that could not be made, and checks every
// running VM each ResyncInterval and whenever notices were lost.
func (m *Manager) monitor() {
	defer m.wg.Done()
	// The intervals are re-armed when they fire (time.After on the
	// injected clock rather than tickers, so tests can drive them).
	tickC := m.clock.After(m.cfg.PollInterval)
	events := m.events
	var resyncC <-chan time.Time
	if events != nil {
		resyncC = m.clock.After(m.cfg.ResyncInterval)
	}
	// retry holds containers whose reported change is still to be
	// checked.
	retry := map[string]bool{}
	for {
		select {
		case <-m.bgctx.Done():
			m.endWatch()
			return
		case ev, ok := <-events:
			switch {
			case !ok:
				events, resyncC = nil, nil
				if m.bgctx.Err() == nil {
					// The hypervisor was closed under us: poll,
					// as without notices.
					m.log.Warn("the hypervisor stopped reporting state changes; polling every VM instead", "interval", m.cfg.PollInterval)
				}
			case ev.Resync:
				m.log.Debug("state change notices were lost; checking every running VM")
				m.checkRunning()
				resyncC = m.clock.After(m.cfg.ResyncInterval)
			default:
				if id := m.containerOfDomain(ev.Name); id != "" && !m.checkReported(id) {
					retry[id] = true
				}
			}
		case <-resyncC:
			m.checkRunning()
			resyncC = m.clock.After(m.cfg.ResyncInterval)
		case <-tickC:
			tickC = m.clock.After(m.cfg.PollInterval)
			m.collectUnclaimed(m.bgctx)
			if events == nil {
				m.checkRunning()
				continue
			}
			for id := range retry {
				if m.checkReported(id) {
					delete(retry, id)
				}
			}
		}
	}
}

// checkRunning checks every running container that is not busy.
func (m *Manager) checkRunning() {
	m.mu.RLock()
	var running []string
	for id, c := range m.containers {
		if c.State == ContainerRunning {
			running = append(running, id)
		}
	}
	m.mu.RUnlock()
	for _, id := range running {
		// A container busy in another operation (a stop waiting
		// out its grace period) is checked by that operation.
		unlock := m.locks.tryLock(id)
		if unlock == nil {
			continue
		}
		_, _ = m.refreshLocked(m.bgctx, id) // logged
		unlock()
	}
}

// checkReported checks container id, whose domain was reported changed, if
// it is running. It reports false when the check is to be tried again: the
// container is busy in another operation (which may have started it and
// not yet recorded so), or the hypervisor could not be read.
func (m *Manager) checkReported(id string) bool {
	unlock := m.locks.tryLock(id)
	if unlock == nil {
		return false
	}
	defer unlock()
	if c := m.getContainer(id); c == nil || c.State != ContainerRunning {
		return true
	}
	_, err := m.refreshLocked(m.bgctx, id)
	return err == nil
}

func (m *Manager) containerOfDomain(name string) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.byDomain[name]
}

// refreshLocked re-reads the state of container id from the hypervisor and
// returns the current record (nil when the container does not exist). The
// caller holds id's lock. A failure is logged and returned with the record
// unchanged.
func (m *Manager) refreshLocked(ctx context.Context, id string) (*Container, error) {
	c := m.getContainer(id)
	if c == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nc, err := m.syncContainer(ctx, c)
	if err != nil {
		m.log.Warn("checking VM state", "pod", c.SandboxID, "container", c.ID, "err", err)
		return c, err
	}
	return nc, nil
}

// syncContainer updates c from its domain's state, persists and publishes a
// changed copy and returns the current record. The caller holds c's lock
// (or is recovering, single-threaded).
func (m *Manager) syncContainer(ctx context.Context, c *Container) (*Container, error) {
	if c.State == ContainerExited {
		return c, nil
	}
	cp := *c
	st, err := m.hv.Status(ctx, c.DomainName)
	switch {
	case errors.Is(err, hypervisor.ErrNotFound):
		// The domain is gone (removed behind our back). The VM cannot
		// come back: the container has exited.
		m.markExited(&cp, m.clock.Now(), 255, "DomainLost", "the VM's domain no longer exists on the hypervisor")
	case err != nil:
		return c, fmt.Errorf("reading state of VM %s: %w", c.DomainName, err)
	default:
		m.applyStatus(&cp, st)
	}
	if cp.State == c.State && cp.StartedAt.Equal(c.StartedAt) {
		return c, nil
	}
	if err := m.putContainer(&cp); err != nil {
		return c, err
	}
	return &cp, nil
}

func (m *Manager) applyStatus(c *Container, st hypervisor.DomainStatus) {
	switch st.State {
	case hypervisor.StateRunning, hypervisor.StatePaused, hypervisor.StateShutdown:
		if c.State != ContainerRunning {
			c.State = ContainerRunning
			if c.StartedAt.IsZero() {
				c.StartedAt = nonZero(st.StartedAt, m.clock.Now())
			}
		}
	case hypervisor.StateShutoff, hypervisor.StateCrashed:
		if c.State == ContainerCreated && (st.Reason == hypervisor.ReasonDefined || st.StartedAt.IsZero()) {
			// Defined and never started: still created.
			return
		}
		code, reason, msg := exitOf(st)
		m.markExited(c, nonZero(st.FinishedAt, m.clock.Now()), code, reason, msg)
	}
}
