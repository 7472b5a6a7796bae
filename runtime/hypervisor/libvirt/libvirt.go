// Package libvirt implements hypervisor.Hypervisor on a real libvirt daemon
// (QEMU driver) through libvirt's C library. It is the only cgo package in
// podvisor; it needs libvirt-dev to build and a running libvirtd to work.
//
// The connection survives libvirtd restarts: a call that finds it dead
// reconnects and retries once, and a close callback reconnects in the
// background so that lifecycle events keep flowing. libvirt does not keep
// start and stop times, so they are recorded from lifecycle events in
// memory (best effort; the pod layer persists its own). The same events are
// passed on to WatchStates readers (hypervisor.StateWatcher); a reconnect
// sends them a Resync, as events were missed while disconnected.
package libvirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
	lv "libvirt.org/go/libvirt"
)

// KVM modes accepted in Options.KVM.
const (
	KVMAuto = "auto" // use KVM when a trial domain proves it works
	KVMOn   = "on"   // always KVM (domain type kvm), no trial
	KVMOff  = "off"  // always TCG (domain type qemu)
)

// Options configure New.
type Options struct {
	// URI of the libvirt daemon; default "qemu:///system".
	URI string
	// KVM is "auto" (default), "on" or "off".
	KVM string
	// Logger; default slog.Default().
	Logger *slog.Logger
	// QEMUStateDir is where libvirt's QEMU driver writes <name>.pid;
	// default /run/libvirt/qemu.
	QEMUStateDir string
	// KVMProbeTimeout bounds the KVM trial domain; default 20s.
	KVMProbeTimeout time.Duration
	// ProbeDir is where the trial domains' boot sector and serial log are
	// written. libvirtd and QEMU open them, so it must be a path they see
	// too: in the DaemonSet podvisor and libvirtd are separate containers
	// that share the state dir, not /tmp (podvisor passes
	// <state-dir>/kvm-probe). Default os.TempDir(), right only where
	// libvirtd shares podvisor's filesystem.
	ProbeDir string
}

// Hypervisor is a libvirt-backed hypervisor.Hypervisor. Make it with New.
type Hypervisor struct {
	uri      string
	log      *slog.Logger
	stateDir string

	// bg lives until Close; background reconnects use it.
	bg       context.Context
	bgCancel context.CancelFunc

	// dial serialises connecting (a 1-slot semaphore so waiters honour ctx).
	dial chan struct{}

	mu          sync.Mutex
	conn        *lv.Connect
	gen         uint64 // incremented on every new connection
	lifecycleID int
	closed      bool
	consoles    map[string]bool // domains with an open console

	domainType  string // "kvm" or "qemu"
	accelerator string // "kvm" or "tcg"
	accelWhy    string

	probeDir string  // Options.ProbeDir
	kvmHost  kvmHost // where chooseAccelerator looks; tests change it

	rec *recorder

	// watchers hears of lifecycle events (see WatchStates).
	watchers hypervisor.Notifier
}

// The lifecycle finds these by type assertion; a signature that drifts
// must fail the build, not switch the feature off.
var (
	_ hypervisor.Hypervisor   = (*Hypervisor)(nil)
	_ hypervisor.StateWatcher = (*Hypervisor)(nil)
	_ hypervisor.Displayer    = (*Hypervisor)(nil)
)

var (
	eventLoopOnce sync.Once
	eventLoopErr  error
)

// startEventLoop registers libvirt's default event loop implementation
// (needed for keepalive, close callbacks and domain events) and runs it for
// the life of the process. libvirt allows one per process.
func startEventLoop(log *slog.Logger) error {
	eventLoopOnce.Do(func() {
		if err := lv.EventRegisterDefaultImpl(); err != nil {
			eventLoopErr = fmt.Errorf("registering libvirt's event loop: %w", err)
			return
		}
		go func() {
			for {
				if err := lv.EventRunDefaultImpl(); err != nil {
					log.Error("libvirt event loop iteration failed", "err", err)
					time.Sleep(time.Second)
				}
			}
		}()
	})
	return eventLoopErr
}

// New connects to libvirt, decides between KVM and TCG (see Options.KVM)
// and logs the outcome. It waits for libvirtd (with backoff) until ctx ends.
func New(ctx context.Context, opts Options) (*Hypervisor, error) {
	if opts.URI == "" {
		opts.URI = "qemu:///system"
	}
	if opts.KVM == "" {
		opts.KVM = KVMAuto
	}
	switch opts.KVM {
	case KVMAuto, KVMOn, KVMOff:
	default:
		return nil, fmt.Errorf("%w: KVM mode %q: accepted values are %q, %q and %q",
			errdefs.ErrInvalidArgument, opts.KVM, KVMAuto, KVMOn, KVMOff)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.QEMUStateDir == "" {
		opts.QEMUStateDir = "/run/libvirt/qemu"
	}
	if opts.KVMProbeTimeout <= 0 {
		opts.KVMProbeTimeout = 20 * time.Second
	}
	if opts.ProbeDir == "" {
		opts.ProbeDir = os.TempDir()
	}
	log := opts.Logger.With("component", "libvirt", "uri", opts.URI)
	if err := startEventLoop(log); err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	h := &Hypervisor{
		uri:      opts.URI,
		log:      log,
		stateDir: opts.QEMUStateDir,
		bg:       bg,
		bgCancel: cancel,
		dial:     make(chan struct{}, 1),
		consoles: map[string]bool{},
		rec:      newRecorder(),
		probeDir: opts.ProbeDir,
		kvmHost:  defaultKVMHost,
	}
	c, _, err := h.connection(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	release(c)
	if err := h.chooseAccelerator(ctx, opts.KVM, opts.KVMProbeTimeout); err != nil {
		_ = h.Close()
		return nil, err
	}
	info, err := h.Info(ctx)
	if err != nil {
		_ = h.Close()
		return nil, err
	}
	log.Info("libvirt hypervisor ready", "version", info.Version,
		"accelerator", h.accelerator, "domainType", h.domainType, "why", h.accelWhy)
	return h, nil
}

// DomainType is the libvirt domain type the domain builder must use:
// "kvm" when KVM works, "qemu" (TCG) otherwise.
func (h *Hypervisor) DomainType() string { return h.domainType }

// Accelerator is "kvm" or "tcg"; AcceleratorReason says why it was chosen.
func (h *Hypervisor) Accelerator() string { return h.accelerator }

// AcceleratorReason is a sentence saying why the accelerator was chosen.
func (h *Hypervisor) AcceleratorReason() string { return h.accelWhy }

// connection returns the live connection, connecting (with backoff until ctx
// ends) when there is none. The caller owns one reference and releases it
// with release, so a concurrent drop cannot free the connection under it.
func (h *Hypervisor) connection(ctx context.Context) (*lv.Connect, uint64, error) {
	select {
	case h.dial <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("waiting to connect to libvirt at %s: %w: %w", h.uri, errdefs.ErrUnavailable, ctx.Err())
	}
	defer func() { <-h.dial }()

	if c, gen, ok, err := h.current(); ok || err != nil {
		return c, gen, err
	}
	conn, err := h.connect(ctx)
	if err != nil {
		return nil, 0, err
	}
	return h.install(conn)
}

// current returns a new reference to the live connection, if there is one.
func (h *Hypervisor) current() (*lv.Connect, uint64, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, 0, false, fmt.Errorf("libvirt connection to %s: %w: closed", h.uri, errdefs.ErrUnavailable)
	}
	if h.conn == nil {
		return nil, 0, false, nil
	}
	if err := h.conn.Ref(); err != nil {
		return nil, 0, false, fmt.Errorf("referencing the libvirt connection: %w", err)
	}
	return h.conn, h.gen, true, nil
}

// connect opens a connection, retrying with backoff until ctx ends.
func (h *Hypervisor) connect(ctx context.Context) (*lv.Connect, error) {
	var conn *lv.Connect
	attempt := 0
	op := func() error {
		attempt++
		c, err := lv.NewConnect(h.uri)
		if err != nil {
			if attempt == 1 || attempt%10 == 0 {
				h.log.Warn("cannot connect to libvirt; retrying", "attempt", attempt, "err", err)
			}
			return err
		}
		conn = c
		return nil
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 3 * time.Second
	b.MaxElapsedTime = 0 // ctx bounds the wait
	if err := backoff.Retry(op, backoff.WithContext(b, ctx)); err != nil {
		return nil, fmt.Errorf("connecting to libvirt at %s: %w: %w", h.uri, errdefs.ErrUnavailable, err)
	}
	return conn, nil
}

// install makes conn the live connection: keepalive, the close callback
// that reconnects, lifecycle events; watchers resync after a reconnect.
// It returns a reference for the caller.
func (h *Hypervisor) install(conn *lv.Connect) (*lv.Connect, uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		_, _ = conn.Close()
		return nil, 0, fmt.Errorf("libvirt connection to %s: %w: closed", h.uri, errdefs.ErrUnavailable)
	}
	h.gen++
	gen := h.gen
	// Keepalive notices a dead daemon even when podvisor is idle.
	if err := conn.SetKeepAlive(5, 3); err != nil {
		h.log.Warn("setting libvirt keepalive failed", "err", err)
	}
	if err := conn.RegisterCloseCallback(func(_ *lv.Connect, reason lv.ConnectCloseReason) {
		h.log.Warn("libvirt connection closed; reconnecting", "reason", int(reason))
		// Not from the event loop's goroutine: closing and reconnecting
		// there would wait on itself.
		go h.reconnect(gen)
	}); err != nil {
		h.log.Warn("registering libvirt close callback failed", "err", err)
	}
	id, err := conn.DomainEventLifecycleRegister(nil, h.onLifecycle)
	if err != nil {
		h.log.Warn("registering for domain lifecycle events failed; start and stop times will be partial", "err", err)
		id = -1
	}
	h.conn, h.lifecycleID = conn, id
	if gen > 1 {
		h.log.Info("reconnected to libvirt", "generation", gen)
		// Events that happened while there was no connection are lost;
		// watchers re-read what they care about.
		h.watchers.Resync()
	}
	if err := conn.Ref(); err != nil {
		return nil, 0, fmt.Errorf("referencing the libvirt connection: %w", err)
	}
	return conn, gen, nil
}

// release drops a reference obtained from connection.
func release(c *lv.Connect) { _, _ = c.Close() }

// dropConnection forgets connection generation gen if it is still current.
func (h *Hypervisor) dropConnection(gen uint64) {
	h.mu.Lock()
	if h.conn == nil || h.gen != gen {
		h.mu.Unlock()
		return
	}
	c := h.conn
	h.conn = nil
	h.mu.Unlock()
	_ = c.UnregisterCloseCallback()
	_, _ = c.Close()
}

// reconnect replaces a connection that libvirt reported closed.
func (h *Hypervisor) reconnect(gen uint64) {
	h.dropConnection(gen)
	c, _, err := h.connection(h.bg)
	if err != nil {
		if h.bg.Err() == nil {
			h.log.Error("reconnecting to libvirt failed", "err", err)
		}
		return
	}
	release(c)
}

// isDead reports whether err means the connection is gone.
func isDead(c *lv.Connect, err error) bool {
	if definitelyAlive(err) {
		return false
	}
	alive, aerr := c.IsAlive()
	return aerr != nil || !alive
}

// do runs fn on a live connection. When fn fails because the connection
// died (libvirtd restarted), it reconnects and runs fn once more.
func (h *Hypervisor) do(ctx context.Context, fn func(c *lv.Connect) error) error {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, gen, err := h.connection(ctx)
		if err != nil {
			return err
		}
		err = fn(c)
		dead := err != nil && isDead(c, err)
		release(c)
		if err == nil || attempt > 0 || !dead {
			return err
		}
		h.log.Warn("libvirt connection lost during a call; reconnecting and retrying once", "err", err)
		h.dropConnection(gen)
	}
}

// withDomain looks the domain up and runs fn on it (retried as do is).
func (h *Hypervisor) withDomain(ctx context.Context, what, name string, fn func(d *lv.Domain) error) error {
	err := h.do(ctx, func(c *lv.Connect) error {
		d, err := c.LookupDomainByName(name)
		if err != nil {
			return err
		}
		defer d.Free()
		return fn(d)
	})
	return wrapErr(fmt.Sprintf("%s %q", what, name), err)
}

// Info describes libvirt and the chosen accelerator.
func (h *Hypervisor) Info(ctx context.Context) (hypervisor.Info, error) {
	var lib, hv uint32
	err := h.do(ctx, func(c *lv.Connect) error {
		var err error
		if lib, err = c.GetLibVersion(); err != nil {
			return err
		}
		hv, err = c.GetVersion()
		return err
	})
	if err != nil {
		return hypervisor.Info{}, wrapErr("reading libvirt's version", err)
	}
	return hypervisor.Info{
		Name:              "libvirt",
		Version:           fmt.Sprintf("libvirt %s, QEMU %s", versionString(lib), versionString(hv)),
		Accelerator:       h.accelerator,
		AcceleratorReason: h.accelWhy,
	}, nil
}

// versionString formats libvirt's major*1e6+minor*1e3+release encoding.
func versionString(v uint32) string {
	return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000)
}

// WatchStates implements hypervisor.StateWatcher from libvirt's domain
// lifecycle events: every event but "defined" (started, suspended, resumed,
// stopped, shutdown, crashed, undefined, ...) names its domain, and a
// reconnect to libvirtd sends Resync. The channel closes when ctx ends or
// at Close. Events are delivered on libvirt's event loop, which needs the
// connection: while libvirtd is away nothing arrives, hence the Resync.
func (h *Hypervisor) WatchStates(ctx context.Context) <-chan hypervisor.StateEvent {
	return h.watchers.WatchStates(ctx)
}

// Close deregisters events and closes the connection. Domains keep running.
func (h *Hypervisor) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	c, id := h.conn, h.lifecycleID
	h.conn = nil
	h.mu.Unlock()
	h.bgCancel()
	h.watchers.Close()
	if c == nil {
		return nil
	}
	var errs []error
	if id >= 0 {
		if err := c.DomainEventDeregister(id); err != nil {
			errs = append(errs, fmt.Errorf("deregistering lifecycle events: %w", err))
		}
	}
	_ = c.UnregisterCloseCallback()
	if _, err := c.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing the libvirt connection: %w", err))
	}
	return errors.Join(errs...)
}
