// Package pod is podvisor's lifecycle logic: sandboxes and their one VM
// container, persisted so that a restart of the daemon loses nothing and
// restarts no VM.
package pod

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/podvisor/podvisor/runtime/hypervisor"
	"github.com/podvisor/podvisor/runtime/store"
	"github.com/podvisor/podvisor/runtime/stream"
)

const (
	bucketSandboxes  = "sandboxes"
	bucketContainers = "containers"
)

// Store persists records; runtime/store.DB implements it.
type Store interface {
	Batch(ops []store.Op) error
	ForEach(bucket string, fn func(key string, value []byte) error) error
}

// Config wires a Manager.
type Config struct {
	Hypervisor hypervisor.Hypervisor
	Store      Store
	Network    Network
	Images     Images
	Assembler  VMAssembler
	// StateDir holds per-container directories (disks, drives, sockets).
	StateDir string
	Clock    Clock
	Logger   *slog.Logger
	// ShutdownRetry is how often StopContainer repeats the ACPI request
	// (guests miss it while booting). Default 2 s.
	ShutdownRetry time.Duration
	// PollInterval is how often running VMs are checked for having stopped
	// on their own when the hypervisor does not report state changes (it
	// is not a hypervisor.StateWatcher). With one that does, a reported
	// change is checked at once, and PollInterval is how often a check
	// that could not be made then (the container was busy in another
	// operation, or reading the hypervisor failed) is tried again.
	// Unclaimed results are collected at this interval too. Default 1 s.
	PollInterval time.Duration
	// ResyncInterval is, with a hypervisor that reports state changes,
	// how often every running VM is checked anyway: the safety net for a
	// report that was lost. Default 10 s.
	ResyncInterval time.Duration
	// OpTimeout bounds RunPodSandbox and CreateContainer once they run on
	// after their caller gave up. Default 10 min.
	OpTimeout time.Duration
	// UnclaimedTTL is how long a sandbox or container finished after its
	// caller gave up waits for kubelet's retry before it is removed.
	// Default 5 min.
	UnclaimedTTL time.Duration
}

// Manager runs sandboxes and containers.
type Manager struct {
	cfg    Config
	hv     hypervisor.Hypervisor
	db     Store
	log    *slog.Logger
	clock  Clock
	locks  keyedLocker
	bgctx  context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// events are the hypervisor's state change notices (nil when it
	// reports none); the monitor reads them.
	events <-chan hypervisor.StateEvent

	mu         sync.RWMutex
	sandboxes  map[string]*Sandbox
	containers map[string]*Container
	// byDomain maps a domain name to the ID of its container.
	byDomain map[string]string
	// sandboxOrder and containerOrder hold the same records as the maps,
	// oldest first.
	sandboxOrder   creationOrder[Sandbox]
	containerOrder creationOrder[Container]
	consoles       map[string]*console
}

type console struct {
	hub    *stream.ConsoleHub
	log    *stream.LogWriter
	cancel context.CancelFunc
	done   chan struct{}
}

// New loads the store, reconciles it with the hypervisor and starts the
// background monitor. Running VMs are left running.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Hypervisor == nil || cfg.Store == nil || cfg.Network == nil || cfg.Images == nil || cfg.Assembler == nil {
		return nil, errors.New("pod manager: hypervisor, store, network, images and assembler are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ShutdownRetry <= 0 {
		cfg.ShutdownRetry = 2 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = 10 * time.Second
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 10 * time.Minute
	}
	if cfg.UnclaimedTTL <= 0 {
		cfg.UnclaimedTTL = 5 * time.Minute
	}
	if cfg.StateDir == "" {
		return nil, errors.New("pod manager: a state dir is required")
	}
	bg, cancel := context.WithCancel(context.Background())
	m := &Manager{
		cfg: cfg, hv: cfg.Hypervisor, db: cfg.Store, log: cfg.Logger, clock: cfg.Clock,
		bgctx: bg, cancel: cancel,
		sandboxes: map[string]*Sandbox{}, containers: map[string]*Container{}, consoles: map[string]*console{},
		byDomain:       map[string]string{},
		sandboxOrder:   creationOrder[Sandbox]{key: sandboxKey},
		containerOrder: creationOrder[Container]{key: containerKey},
	}
	if w, ok := cfg.Hypervisor.(hypervisor.StateWatcher); ok {
		// Watch before recovery reads the states, so that a change
		// made after it read them is reported.
		m.events = w.WatchStates(bg)
	}
	fail := func(err error) (*Manager, error) {
		cancel()
		m.endWatch()
		return nil, err
	}
	if err := m.load(); err != nil {
		return fail(err)
	}
	if err := m.recover(ctx); err != nil {
		return fail(err)
	}
	if err := m.collectOrphans(ctx); err != nil {
		return fail(fmt.Errorf("collecting orphans: %w", err))
	}
	m.wg.Add(1)
	go m.monitor()
	return m, nil
}

// endWatch waits, once bgctx has ended, for the hypervisor to close the
// watch, so that its goroutine is gone when Close returns.
func (m *Manager) endWatch() {
	if m.events == nil {
		return
	}
	for range m.events {
	}
}

// Close stops background work. VMs keep running.
func (m *Manager) Close() {
	m.cancel()
	m.mu.Lock()
	cons := m.consoles
	m.consoles = map[string]*console{}
	m.mu.Unlock()
	for _, c := range cons {
		c.stop()
	}
	m.wg.Wait()
}

func (m *Manager) load() error {
	err := m.db.ForEach(bucketSandboxes, func(k string, v []byte) error {
		var sb Sandbox
		if err := json.Unmarshal(v, &sb); err != nil {
			return fmt.Errorf("decoding sandbox %s: %w", k, err)
		}
		m.sandboxes[sb.ID] = &sb
		m.sandboxOrder.put(&sb)
		return nil
	})
	if err != nil {
		return fmt.Errorf("loading sandboxes: %w", err)
	}
	err = m.db.ForEach(bucketContainers, func(k string, v []byte) error {
		var c Container
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("decoding container %s: %w", k, err)
		}
		m.containers[c.ID] = &c
		m.containerOrder.put(&c)
		m.byDomain[c.DomainName] = c.ID
		return nil
	})
	if err != nil {
		return fmt.Errorf("loading containers: %w", err)
	}
	return nil
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

// monitor notices VMs that stopped on their own (guest poweroff, crash,
// emulator killed) and marks their containers exited. Without state change
// notices from the hypervisor it checks every running VM each PollInterval.
// With them it checks a VM when its domain is reported changed, retries
// each PollInterval a check that could not be made, and checks every
// running VM each ResyncInterval and whenever notices were lost.
func (m *Manager) monitor() {
	defer m.wg.Done()
	tick := time.NewTicker(m.cfg.PollInterval)
	defer tick.Stop()
	events := m.events
	var resync *time.Ticker
	var resyncC <-chan time.Time
	if events != nil {
		resync = time.NewTicker(m.cfg.ResyncInterval)
		defer resync.Stop()
		resyncC = resync.C
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
				resync.Reset(m.cfg.ResyncInterval)
			default:
				if id := m.containerOfDomain(ev.Name); id != "" && !m.checkReported(id) {
					retry[id] = true
				}
			}
		case <-resyncC:
			m.checkRunning()
		case <-tick.C:
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
		m.refreshLocked(m.bgctx, id)
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
	c := m.getContainer(id)
	if c == nil || c.State != ContainerRunning {
		return true
	}
	_, err := m.refreshChecked(m.bgctx, c)
	return err == nil
}

func (m *Manager) containerOfDomain(name string) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.byDomain[name]
}

// refresh re-reads the state of container id from the hypervisor and
// returns the current record (nil when the container does not exist).
func (m *Manager) refresh(ctx context.Context, id string) *Container {
	unlock := m.locks.lock(id)
	defer unlock()
	return m.refreshLocked(ctx, id)
}

func (m *Manager) refreshLocked(ctx context.Context, id string) *Container {
	c := m.getContainer(id)
	if c == nil {
		return nil
	}
	nc, _ := m.refreshChecked(ctx, c)
	return nc
}

// refreshChecked is refreshLocked of a container read under its lock; a
// failure is logged and returned with the record unchanged.
func (m *Manager) refreshChecked(ctx context.Context, c *Container) (*Container, error) {
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

func exitOf(st hypervisor.DomainStatus) (int32, string, string) {
	switch {
	case st.State == hypervisor.StateCrashed || st.Reason == hypervisor.ReasonCrashed:
		code := st.ExitCode
		if code == 0 {
			code = 139
		}
		return code, "Error", "the VM crashed (the guest, or its emulator process was killed)"
	case st.Reason == hypervisor.ReasonShutdown:
		if st.ExitCode != 0 {
			return st.ExitCode, "Error", "the guest powered off"
		}
		return 0, "Completed", "the guest powered off"
	case st.Reason == hypervisor.ReasonDestroyed:
		code := st.ExitCode
		if code == 0 {
			code = 137
		}
		return code, "Error", "the VM was destroyed"
	case st.Reason == hypervisor.ReasonFailed:
		return 128, "Error", "the emulator failed"
	default:
		code := st.ExitCode
		if code == 0 {
			code = 255
		}
		return code, "Error", fmt.Sprintf("the VM stopped (%s)", st.Reason)
	}
}

// markExited sets the exit fields of c (a private copy) and stops its
// console pump.
func (m *Manager) markExited(c *Container, at time.Time, code int32, reason, msg string) {
	if c.State == ContainerExited {
		return
	}
	c.State = ContainerExited
	c.FinishedAt = at
	c.ExitCode = code
	c.Reason = reason
	c.Message = msg
	m.log.Info("container exited", "pod", c.SandboxID, "container", c.ID, "exitCode", code, "reason", reason, "message", msg)
	m.stopConsole(c.ID)
}

func nonZero(t, fallback time.Time) time.Time {
	if t.IsZero() {
		return fallback
	}
	return t
}

// --- records ---
//
// Records in the maps are never modified once published: a change is made
// on a copy, persisted, then swapped in, so readers need only the map lock.

func (m *Manager) getSandbox(id string) *Sandbox {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.sandboxes[id]
}

func (m *Manager) getContainer(id string) *Container {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.containers[id]
}

func (m *Manager) putSandbox(sb *Sandbox) error {
	data, err := json.Marshal(sb)
	if err != nil {
		return fmt.Errorf("encoding sandbox %s: %w", sb.ID, err)
	}
	if err := m.db.Batch([]store.Op{{Bucket: bucketSandboxes, Key: sb.ID, Value: data}}); err != nil {
		return fmt.Errorf("saving sandbox %s: %w", sb.ID, err)
	}
	m.mu.Lock()
	m.sandboxes[sb.ID] = sb
	m.sandboxOrder.put(sb)
	m.mu.Unlock()
	return nil
}

func (m *Manager) deleteSandbox(id string) error {
	if err := m.db.Batch([]store.Op{{Bucket: bucketSandboxes, Key: id, Delete: true}}); err != nil {
		return fmt.Errorf("deleting sandbox %s: %w", id, err)
	}
	m.mu.Lock()
	if sb := m.sandboxes[id]; sb != nil {
		m.sandboxOrder.remove(sb)
	}
	delete(m.sandboxes, id)
	m.mu.Unlock()
	return nil
}

func (m *Manager) putContainer(c *Container) error {
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encoding container %s: %w", c.ID, err)
	}
	if err := m.db.Batch([]store.Op{{Bucket: bucketContainers, Key: c.ID, Value: data}}); err != nil {
		return fmt.Errorf("saving container %s: %w", c.ID, err)
	}
	m.mu.Lock()
	m.containers[c.ID] = c
	m.containerOrder.put(c)
	m.byDomain[c.DomainName] = c.ID
	m.mu.Unlock()
	return nil
}

func (m *Manager) deleteContainer(id string) error {
	if err := m.db.Batch([]store.Op{{Bucket: bucketContainers, Key: id, Delete: true}}); err != nil {
		return fmt.Errorf("deleting container %s: %w", id, err)
	}
	m.mu.Lock()
	if c := m.containers[id]; c != nil {
		m.containerOrder.remove(c)
		if m.byDomain[c.DomainName] == id {
			delete(m.byDomain, c.DomainName)
		}
	}
	delete(m.containers, id)
	m.mu.Unlock()
	return nil
}

func newID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("reading random bytes: %v", err)) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// --- consoles ---

func (m *Manager) startConsole(c *Container) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.consoles[c.ID]; ok {
		return
	}
	var lw *stream.LogWriter
	var logTo io.Writer
	if c.LogPath != "" {
		w, err := stream.OpenLog(c.LogPath, m.clock.Now)
		if err != nil {
			m.log.Warn("opening container log; console output will not be logged", "pod", c.SandboxID, "container", c.ID, "err", err)
		} else {
			lw, logTo = w, w
		}
	}
	name := c.DomainName
	hub := stream.NewConsoleHub(func(ctx context.Context) (io.ReadWriteCloser, error) {
		return m.hv.Console(ctx, name)
	}, logTo, m.log.With("pod", c.SandboxID, "container", c.ID))
	ctx, cancel := context.WithCancel(m.bgctx)
	cons := &console{hub: hub, log: lw, cancel: cancel, done: make(chan struct{})}
	m.consoles[c.ID] = cons
	go func() {
		defer close(cons.done)
		hub.Run(ctx)
	}()
}

func (c *console) stop() {
	c.cancel()
	<-c.done
	if c.log != nil {
		c.log.Close()
	}
}

func (m *Manager) stopConsole(id string) {
	m.mu.Lock()
	c := m.consoles[id]
	delete(m.consoles, id)
	m.mu.Unlock()
	if c != nil {
		// Stopping waits for the pump, which may be in a hypervisor
		// call; do it without holding the manager lock.
		go c.stop()
	}
}

// --- helpers ---

func containerDir(stateDir, domainName string) string {
	return filepath.Join(stateDir, "vms", domainName)
}

func removeDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	return nil
}
