// Package pod is podvisor's lifecycle logic: sandboxes and their one VM
// container, persisted so that a restart of the daemon loses nothing and
// restarts no VM.
package pod

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/podvisor/podvisor/runtime/failpoint"
	"github.com/podvisor/podvisor/runtime/hypervisor"
	"github.com/podvisor/podvisor/runtime/store"
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
	// Resources gives VMs their cgroups and checks resizes (nil: none).
	Resources VMResources
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
	// ExecStdinLimit is the most stdin, in bytes, Exec reads and passes to
	// a command (0: DefaultExecStdinLimit; at most MaxExecStdinLimit);
	// more fails the exec.
	ExecStdinLimit int64
	// Failpoints makes named steps fail (tests; PODVISOR_FAILPOINTS in the
	// daemon). Nil: none.
	Failpoints *failpoint.Points
	// Version is podvisor's version, recorded in checkpoints.
	Version string
	// ObserveStep is told how long each step of making a VM pod took
	// ("network", "assemble", "define", "start"; the daemon's metrics).
	// Nil: nobody.
	ObserveStep func(step string, d time.Duration)
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

// New loads the store, reconciles it with the hypervisor and starts the
// background monitor. Running VMs are left running.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Hypervisor == nil || cfg.Store == nil || cfg.Network == nil || cfg.Images == nil || cfg.Assembler == nil {
		return nil, errors.New("pod manager: hypervisor, store, network, images and assembler are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.ObserveStep == nil {
		cfg.ObserveStep = func(string, time.Duration) {}
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
	if cfg.ExecStdinLimit == 0 {
		cfg.ExecStdinLimit = DefaultExecStdinLimit
	}
	if cfg.ExecStdinLimit < 0 || cfg.ExecStdinLimit > MaxExecStdinLimit {
		return nil, fmt.Errorf("exec stdin limit: %d bytes is not accepted: use 1 to %d (what one guest agent command carries)", cfg.ExecStdinLimit, MaxExecStdinLimit)
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

// timed runs one step of making a VM pod and tells ObserveStep its
// duration, whether or not it failed.
func (m *Manager) timed(step string, f func() error) error {
	start := m.clock.Now()
	err := f()
	m.cfg.ObserveStep(step, m.clock.Now().Sub(start))
	return err
}
