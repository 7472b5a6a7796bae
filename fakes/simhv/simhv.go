package simhv

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/podvisor/podvisor/fakes/clock"
	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// Version is the version Info reports.
const Version = "1.0.0"

// SimAcceleratorReason is Info's AcceleratorReason: nothing is emulated.
const SimAcceleratorReason = "simulated hypervisor (--hypervisor sim): no guest code runs"

// Defaults applied by New and by GuestBehavior.
const (
	DefaultBootTime          = 200 * time.Millisecond
	DefaultShutdownDelay     = 100 * time.Millisecond
	DefaultConsoleBufferSize = 64 << 10
	// FirstPID is the PID of the first domain started on a fresh state.
	FirstPID = 10000
)

// Exit codes reported in DomainStatus.ExitCode.
const (
	// ExitCodeShutdown: the guest powered off (ACPI or poweroff).
	ExitCodeShutdown int32 = 0
	// ExitCodeDestroyed: 128+SIGKILL, what a killed process reports.
	ExitCodeDestroyed int32 = 137
	// ExitCodeCrashed: 128+SIGSEGV, chosen so that a crash is told apart
	// from a destroy.
	ExitCodeCrashed int32 = 139
)

// ReasonUnpaused is the reason of a domain running again after Resume, as
// libvirt names it.
const ReasonUnpaused hypervisor.Reason = "unpaused"

// ErrClosed is returned by every call after Close. It is of kind
// errdefs.ErrUnavailable.
var ErrClosed = fmt.Errorf("simulated hypervisor connection is closed: %w", errdefs.ErrUnavailable)

// Clock is the time source of the simulation; clock.Real and *clock.Fake
// satisfy it.
type Clock = clock.Clock

// GuestBehavior says how the simulated guest acts.
type GuestBehavior struct {
	// IgnoreACPI makes the guest hang as far as ACPI is concerned: it
	// ignores every Shutdown; only Destroy (or a crash) stops it.
	IgnoreACPI bool
	// ShutdownDelay is the guest time from an ACPI request to power off.
	// Zero means DefaultShutdownDelay.
	ShutdownDelay time.Duration
	// CrashAfter, when positive, crashes the guest once it has run that
	// long (guest time: paused time does not count).
	CrashAfter time.Duration
	// FailStart, when set, makes Start fail with this error; the domain
	// stays shut off with reason failed.
	FailStart error
	// BootTime overrides Options.BootTime for this guest when positive.
	BootTime time.Duration
}

// Options configure New.
type Options struct {
	// StateDir, when set, persists every domain there and reloads it on
	// New, so that "VMs" survive a restart of the process that drives
	// them.
	StateDir string
	// BootTime is the time from Start to the ready marker on the console.
	// Zero means DefaultBootTime.
	BootTime time.Duration
	// Clock is the time source; nil means the real clock.
	Clock Clock
	// DefaultBehavior applies to domains without a SetBehavior.
	DefaultBehavior GuestBehavior
	// ConsoleBufferSize bounds the console output kept while nobody
	// reads it; zero means DefaultConsoleBufferSize.
	ConsoleBufferSize int
	// ConsoleDropsUnread makes the console behave as QEMU's serial unix
	// socket does: what the guest prints while no console is open is
	// lost, not kept.
	ConsoleDropsUnread bool
	// WatchBuffer bounds the domains a WatchStates reader may fall behind
	// by before it gets a Resync notice instead; zero means
	// hypervisor.DefaultWatchBuffer.
	WatchBuffer int
}

// Hypervisor is the simulated hypervisor. It implements
// hypervisor.Hypervisor and is safe for concurrent use.
type Hypervisor struct {
	opts  Options
	clock Clock

	mu        sync.Mutex
	closed    bool
	domains   map[string]*domain // by name
	byUUID    map[string]*domain
	behaviors map[string]GuestBehavior
	history   map[string][]string
	nextPID   int
	faults    []*fault
	latency   map[Op]latency
	calls     map[callKey]int

	// watchers hears of every state change (see WatchStates).
	watchers hypervisor.Notifier
}

// The lifecycle finds these by type assertion; a signature that drifts
// must fail the build, not switch the feature off.
var (
	_ hypervisor.Hypervisor   = (*Hypervisor)(nil)
	_ hypervisor.StateWatcher = (*Hypervisor)(nil)
	_ hypervisor.Displayer    = (*Hypervisor)(nil)
)

// New returns a simulated hypervisor. With Options.StateDir it reloads the
// domains persisted there: running domains keep running with the same PID and
// StartedAt, and events that fell due while nobody was watching (a crash, the
// end of an ACPI shutdown) are applied at the time they were due.
func New(opts Options) (*Hypervisor, error) {
	if opts.BootTime < 0 {
		return nil, fmt.Errorf("simhv: BootTime %v is negative; want >= 0", opts.BootTime)
	}
	if opts.BootTime == 0 {
		opts.BootTime = DefaultBootTime
	}
	if opts.ConsoleBufferSize < 0 {
		return nil, fmt.Errorf("simhv: ConsoleBufferSize %d is negative; want >= 0", opts.ConsoleBufferSize)
	}
	if opts.ConsoleBufferSize == 0 {
		opts.ConsoleBufferSize = DefaultConsoleBufferSize
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.WatchBuffer < 0 {
		return nil, fmt.Errorf("simhv: WatchBuffer %d is negative; want >= 0", opts.WatchBuffer)
	}
	h := &Hypervisor{
		opts:      opts,
		clock:     opts.Clock,
		domains:   map[string]*domain{},
		byUUID:    map[string]*domain{},
		behaviors: map[string]GuestBehavior{},
		history:   map[string][]string{},
		nextPID:   FirstPID,
		latency:   map[Op]latency{},
		calls:     map[callKey]int{},
	}
	h.watchers.Buffer = opts.WatchBuffer
	if opts.StateDir != "" {
		if err := h.load(); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Info describes the simulated hypervisor.
func (h *Hypervisor) Info(ctx context.Context) (hypervisor.Info, error) {
	if err := h.before(ctx, OpInfo, ""); err != nil {
		return hypervisor.Info{}, err
	}
	info := hypervisor.Info{Name: "sim", Version: Version, Accelerator: "sim", AcceleratorReason: SimAcceleratorReason}
	return info, h.after(ctx, OpInfo, "")
}

// Define registers or updates a domain. See the package documentation for
// what it refuses.
func (h *Hypervisor) Define(ctx context.Context, domainXML string) (hypervisor.DomainStatus, error) {
	parsed, perr := parseDefinition(domainXML)
	name := ""
	if parsed != nil {
		name = parsed.name
	}
	if err := h.before(ctx, OpDefine, name); err != nil {
		return hypervisor.DomainStatus{}, err
	}
	if perr != nil {
		return hypervisor.DomainStatus{}, perr
	}
	st, err := h.define(parsed, domainXML)
	if err != nil {
		return hypervisor.DomainStatus{}, err
	}
	return st, h.after(ctx, OpDefine, name)
}

func (h *Hypervisor) define(p *definition, raw string) (hypervisor.DomainStatus, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return hypervisor.DomainStatus{}, ErrClosed
	}
	byName := h.domains[p.name]
	if p.uuid == "" {
		if byName != nil {
			// libvirt generates a UUID for a definition without one,
			// which then clashes with the existing domain.
			return hypervisor.DomainStatus{}, errdefs.AlreadyExistsf(
				"operation failed: domain '%s' already exists with uuid %s", p.name, byName.rec.UUID)
		}
		id, err := newUUID()
		if err != nil {
			return hypervisor.DomainStatus{}, fmt.Errorf("generating a UUID for domain '%s': %w", p.name, err)
		}
		if err := p.setUUID(id); err != nil {
			return hypervisor.DomainStatus{}, err
		}
	}
	if byName != nil && byName.rec.UUID != p.uuid {
		return hypervisor.DomainStatus{}, errdefs.AlreadyExistsf(
			"operation failed: domain '%s' already exists with uuid %s", p.name, byName.rec.UUID)
	}
	if other := h.byUUID[p.uuid]; other != nil && other.rec.Name != p.name {
		return hypervisor.DomainStatus{}, errdefs.AlreadyExistsf(
			"operation failed: domain '%s' is already defined with uuid %s", other.rec.Name, p.uuid)
	}
	if byName != nil {
		rec := byName.rec
		rec.XML = p.xml
		if err := h.apply(byName, rec); err != nil {
			return hypervisor.DomainStatus{}, err
		}
		byName.cfg = p.cfg
		h.history[p.name] = append(h.history[p.name], raw)
		return byName.status(), nil
	}
	d := newDomain(record{
		Name: p.name, UUID: p.uuid, XML: p.xml,
		State: hypervisor.StateShutoff, Reason: hypervisor.ReasonDefined,
	}, p.cfg, &h.mu)
	if b, ok := h.behaviors[p.name]; ok {
		d.rec.Behavior = storeBehavior(b)
	}
	if err := h.save(d.rec); err != nil {
		return hypervisor.DomainStatus{}, err
	}
	h.domains[p.name] = d
	h.byUUID[p.uuid] = d
	h.history[p.name] = append(h.history[p.name], raw)
	return d.status(), nil
}

// Start boots a shut off (or crashed) domain.
func (h *Hypervisor) Start(ctx context.Context, name string) error {
	return h.call(ctx, OpStart, name, func() error { return h.start(name, false) })
}

// StartPaused starts a domain as Start does with its guest paused before
// its first instruction, as libvirt's VIR_DOMAIN_START_PAUSED
// (hypervisor.PausedStarter). Its faults are Start's.
func (h *Hypervisor) StartPaused(ctx context.Context, name string) error {
	return h.call(ctx, OpStart, name, func() error { return h.start(name, true) })
}

// Unpause lets a paused guest run (hypervisor.PausedStarter): Resume
// behind the OpUnpause faults.
func (h *Hypervisor) Unpause(ctx context.Context, name string) error {
	return h.call(ctx, OpUnpause, name, func() error { return h.Resume(name) })
}

func (h *Hypervisor) start(name string, paused bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.lookupLocked(name)
	if err != nil {
		return err
	}
	if d.active() {
		return fmt.Errorf("%w: domain '%s' is already running", hypervisor.ErrInvalidState, name)
	}
	b := h.behaviorLocked(name)
	if b.FailStart != nil {
		rec := d.rec
		rec.State, rec.Reason = hypervisor.StateShutoff, hypervisor.ReasonFailed
		if err := h.apply(d, rec); err != nil {
			return err
		}
		return fmt.Errorf("starting domain '%s': %w", name, b.FailStart)
	}
	pid := h.nextPID
	if err := h.saveMeta(pid + 1); err != nil {
		return err
	}
	h.nextPID = pid + 1
	now := h.clock.Now()
	boot := b.BootTime
	if boot <= 0 {
		boot = h.opts.BootTime
	}
	rec := d.rec
	rec.State, rec.Reason = hypervisor.StateRunning, hypervisor.ReasonBooted
	rec.PID = pid
	rec.StartedAt, rec.FinishedAt, rec.ExitCode = now, time.Time{}, 0
	rec.Run = runState{
		MemoryBytes: d.cfg.curMemory, VCPUs: d.cfg.vcpus,
		MaxMemoryBytes: d.cfg.memoryBytes, MaxVCPUs: d.cfg.maxVCPUs,
		Agent: d.cfg.agent, Serial: d.cfg.serial, Display: d.cfg.display,
		BootTime: boot, ResumedAt: now,
	}
	if paused {
		rec.State, rec.Reason = hypervisor.StatePaused, hypervisor.ReasonUser
		rec.Run.ResumedAt = time.Time{}
	}
	if err := h.apply(d, rec); err != nil {
		return err
	}
	d.newRun()
	h.replan(d, now)
	return nil
}

// Shutdown delivers an ACPI power button press.
func (h *Hypervisor) Shutdown(ctx context.Context, name string) error {
	return h.call(ctx, OpShutdown, name, func() error { return h.shutdown(name) })
}

func (h *Hypervisor) shutdown(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.runningLocked(name)
	if err != nil {
		return err
	}
	b := h.behaviorLocked(name)
	if b.IgnoreACPI || d.rec.Run.ShutdownPending {
		return nil
	}
	delay := b.ShutdownDelay
	if delay <= 0 {
		delay = DefaultShutdownDelay
	}
	now := h.clock.Now()
	rec := d.rec
	rec.Run.ShutdownPending = true
	rec.Run.ShutdownAt = d.uptime(now) + delay
	if rec.State == hypervisor.StateRunning {
		rec.State, rec.Reason = hypervisor.StateShutdown, hypervisor.ReasonUser
	}
	if err := h.apply(d, rec); err != nil {
		return err
	}
	h.replan(d, now)
	return nil
}

// Destroy stops the domain at once; on a domain that is not running it does
// nothing and succeeds.
func (h *Hypervisor) Destroy(ctx context.Context, name string) error {
	return h.call(ctx, OpDestroy, name, func() error { return h.destroy(name) })
}

func (h *Hypervisor) destroy(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.lookupLocked(name)
	if err != nil {
		return err
	}
	if !d.active() {
		return nil
	}
	return h.stopLocked(d, hypervisor.StateShutoff, hypervisor.ReasonDestroyed, ExitCodeDestroyed, h.clock.Now(), true)
}

// Undefine removes a stopped domain.
func (h *Hypervisor) Undefine(ctx context.Context, name string) error {
	return h.call(ctx, OpUndefine, name, func() error { return h.undefine(name) })
}

func (h *Hypervisor) undefine(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.lookupLocked(name)
	if err != nil {
		return err
	}
	if d.active() {
		return fmt.Errorf("%w: cannot undefine running domain '%s'", hypervisor.ErrInvalidState, name)
	}
	if err := h.remove(d.rec); err != nil {
		return err
	}
	d.stopTimer()
	delete(h.domains, name)
	delete(h.byUUID, d.rec.UUID)
	d.cond.Broadcast()
	h.watchers.Changed(name)
	return nil
}

// Status reports a domain's state.
func (h *Hypervisor) Status(ctx context.Context, name string) (hypervisor.DomainStatus, error) {
	if err := h.before(ctx, OpStatus, name); err != nil {
		return hypervisor.DomainStatus{}, err
	}
	h.mu.Lock()
	d, err := h.lookupLocked(name)
	var st hypervisor.DomainStatus
	if err == nil {
		st = d.status()
	}
	h.mu.Unlock()
	if err != nil {
		return hypervisor.DomainStatus{}, err
	}
	return st, h.after(ctx, OpStatus, name)
}

// List reports every domain, sorted by name.
func (h *Hypervisor) List(ctx context.Context) ([]hypervisor.DomainStatus, error) {
	if err := h.before(ctx, OpList, ""); err != nil {
		return nil, err
	}
	h.mu.Lock()
	out := make([]hypervisor.DomainStatus, 0, len(h.domains))
	for _, d := range h.domains {
		out = append(out, d.status())
	}
	h.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, h.after(ctx, OpList, "")
}

// XML returns the domain's newest definition, normalised (with its UUID).
func (h *Hypervisor) XML(ctx context.Context, name string) (string, error) {
	if err := h.before(ctx, OpXML, name); err != nil {
		return "", err
	}
	h.mu.Lock()
	d, err := h.lookupLocked(name)
	var x string
	if err == nil {
		x = d.rec.XML
	}
	h.mu.Unlock()
	if err != nil {
		return "", err
	}
	return x, h.after(ctx, OpXML, name)
}

// Stats reports CPU, memory, disks and a NIC of an active domain, as
// functions of guest time (doc.go, Stats).
func (h *Hypervisor) Stats(ctx context.Context, name string) (hypervisor.Stats, error) {
	if err := h.before(ctx, OpStats, name); err != nil {
		return hypervisor.Stats{}, err
	}
	h.mu.Lock()
	d, err := h.runningLocked(name)
	var st hypervisor.Stats
	var disks []simDisk
	if err == nil {
		now := h.clock.Now()
		st = simStats(now, d.uptime(now), d.rec.Run)
		disks = d.cfg.disks
	}
	h.mu.Unlock()
	if err != nil {
		return hypervisor.Stats{}, err
	}
	for _, dk := range disks {
		st.Disks = append(st.Disks, simDiskStats(dk, st.CPUTime))
	}
	return st, h.after(ctx, OpStats, name)
}

// simStats: the guest uses 10% of each vCPU while it runs; a quarter of
// its RAM is its working set, half is in use (the rest of it page cache),
// and the emulator's RSS is half the RAM and 20 MiB; eth0 receives 1500
// and sends 1000 bytes per guest second in 100-byte packets.
func simStats(now time.Time, up time.Duration, r runState) hypervisor.Stats {
	ms := uint64(up.Milliseconds())
	return hypervisor.Stats{
		Timestamp:        now,
		CPUTime:          up * time.Duration(r.VCPUs) / 10,
		MemoryBytes:      r.MemoryBytes / 4,
		MemoryLimitBytes: max(r.MaxMemoryBytes, r.MemoryBytes),
		Memory: hypervisor.MemoryStats{FromGuest: true, WorkingSetBytes: r.MemoryBytes / 4, UsageBytes: r.MemoryBytes / 2,
			CacheBytes: r.MemoryBytes / 4, RSSBytes: r.MemoryBytes/2 + 20<<20},
		Interfaces: []hypervisor.InterfaceStats{{Name: "eth0",
			RxBytes: ms * 3 / 2, RxPackets: ms * 3 / 200, TxBytes: ms, TxPackets: ms / 100}},
	}
}

// simDiskStats: each disk reads 4 KiB and writes 1 KiB per millisecond of
// CPU time, in 4 KiB operations; its allocation is what its file holds.
func simDiskStats(dk simDisk, cpu time.Duration) hypervisor.DiskStats {
	ms := uint64(cpu.Milliseconds())
	ds := hypervisor.DiskStats{Target: dk.target, Path: dk.path,
		ReadBytes: ms << 12, ReadOps: ms, WriteBytes: ms << 10, WriteOps: ms / 4}
	if fi, err := os.Stat(dk.path); err == nil {
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
			ds.AllocatedBytes = uint64(sys.Blocks) * 512
		}
	}
	return ds
}

// Close stops the simulation: timers stop, nothing more is persisted, open
// consoles end, and every later call fails with ErrClosed. Domain states are
// left as they are, so New on the same StateDir finds them; this is also how
// a test models the daemon being killed.
func (h *Hypervisor) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.calls[callKey{OpClose, ""}]++
	if err := h.takeFaultLocked(OpClose, "", false); err != nil {
		return err
	}
	h.closed = true
	for _, d := range h.domains {
		d.stopTimer()
		d.cond.Broadcast()
	}
	h.watchers.Close()
	return nil
}

// WatchStates implements hypervisor.StateWatcher: every change of a
// domain's state or reason (Start, a failed Start, the ACPI shutdown
// beginning and completing, Destroy, a crash by Crash, CrashAfter or the
// console's "crash", the console's "poweroff", Pause, Resume) and every
// Undefine is reported by the domain's name, after Status shows it. The
// channel closes when ctx ends or at Close.
func (h *Hypervisor) WatchStates(ctx context.Context) <-chan hypervisor.StateEvent {
	return h.watchers.WatchStates(ctx)
}

// Watches reports how many WatchStates channels are open: tests use it to
// prove that a watcher went away.
func (h *Hypervisor) Watches() int { return h.watchers.Watches() }

// SetBehavior sets the behaviour of the guest of the named domain, replacing
// the default; it may be called before the domain is defined. Changing
// CrashAfter of a running guest takes effect at once; IgnoreACPI applies to
// later Shutdown requests.
func (h *Hypervisor) SetBehavior(name string, b GuestBehavior) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.behaviors[name] = b
	h.behaviorChangedLocked(name)
}

// ResetBehavior makes the named domain use Options.DefaultBehavior again.
func (h *Hypervisor) ResetBehavior(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.behaviors, name)
	h.behaviorChangedLocked(name)
}

func (h *Hypervisor) behaviorChangedLocked(name string) {
	d := h.domains[name]
	if d == nil || h.closed {
		return
	}
	rec := d.rec
	if b, ok := h.behaviors[name]; ok {
		rec.Behavior = storeBehavior(b)
	} else {
		rec.Behavior = nil
	}
	h.happen(d, rec)
	if d.active() {
		h.replan(d, h.clock.Now())
	}
}

func (h *Hypervisor) behaviorLocked(name string) GuestBehavior {
	if b, ok := h.behaviors[name]; ok {
		return b
	}
	return h.opts.DefaultBehavior
}

// Pause suspends a running guest: its clock stops, so boot output, pending
// ACPI shutdowns and CrashAfter wait, and console input is queued.
func (h *Hypervisor) Pause(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.lookupLocked(name)
	if err != nil {
		return err
	}
	if !d.active() || d.rec.State == hypervisor.StatePaused {
		return fmt.Errorf("%w: domain '%s' is not running", hypervisor.ErrInvalidState, name)
	}
	now := h.clock.Now()
	rec := d.rec
	rec.Run.UptimeBase = d.uptime(now)
	rec.Run.ResumedAt = time.Time{}
	rec.State, rec.Reason = hypervisor.StatePaused, hypervisor.ReasonUser
	if err := h.apply(d, rec); err != nil {
		return err
	}
	d.stopTimer()
	return nil
}

// Resume continues a paused guest.
func (h *Hypervisor) Resume(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.lookupLocked(name)
	if err != nil {
		return err
	}
	if d.rec.State != hypervisor.StatePaused {
		return fmt.Errorf("%w: domain '%s' is not paused", hypervisor.ErrInvalidState, name)
	}
	now := h.clock.Now()
	rec := d.rec
	rec.Run.ResumedAt = now
	rec.State, rec.Reason = hypervisor.StateRunning, ReasonUnpaused
	if rec.Run.ShutdownPending {
		rec.State, rec.Reason = hypervisor.StateShutdown, hypervisor.ReasonUser
	}
	if err := h.apply(d, rec); err != nil {
		return err
	}
	h.replan(d, now)
	if len(d.pendingInput) > 0 {
		in := d.pendingInput
		d.pendingInput = nil
		h.typeLocked(d, in)
	}
	return nil
}

// Crash crashes a running guest now.
func (h *Hypervisor) Crash(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.lookupLocked(name)
	if err != nil {
		return err
	}
	if !d.active() || d.rec.State == hypervisor.StatePaused {
		return fmt.Errorf("%w: domain '%s' is not running", hypervisor.ErrInvalidState, name)
	}
	now := h.clock.Now()
	d.print(h, kernelLine(d.uptime(now), "Kernel panic - not syncing: sysrq triggered crash"))
	return h.stopLocked(d, hypervisor.StateCrashed, hypervisor.ReasonCrashed, ExitCodeCrashed, now, true)
}

// DefinedXML returns every XML document successfully defined under name, in
// order, as given (not normalised). It is kept in memory only.
func (h *Hypervisor) DefinedXML(name string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.history[name]...)
}

// lookupLocked finds a domain by name.
func (h *Hypervisor) lookupLocked(name string) (*domain, error) {
	if h.closed {
		return nil, ErrClosed
	}
	d := h.domains[name]
	if d == nil {
		return nil, fmt.Errorf("%w: no domain with matching name '%s'", hypervisor.ErrNotFound, name)
	}
	return d, nil
}

// runningLocked is lookupLocked of a domain that must be running: the
// operations on a live guest (console, agent, save, ...) refuse others.
func (h *Hypervisor) runningLocked(name string) (*domain, error) {
	d, err := h.lookupLocked(name)
	if err != nil {
		return nil, err
	}
	if !d.active() {
		return nil, fmt.Errorf("%w: domain '%s' is not running", hypervisor.ErrInvalidState, name)
	}
	return d, nil
}

// stopLocked ends the domain's run. fromAPI says whether a caller waits for
// the result (then a failure to persist is returned and nothing changes).
func (h *Hypervisor) stopLocked(d *domain, st hypervisor.State, reason hypervisor.Reason, code int32, at time.Time, fromAPI bool) error {
	rec := d.rec
	rec.State, rec.Reason, rec.ExitCode = st, reason, code
	rec.FinishedAt, rec.PID, rec.Run = at, 0, runState{}
	if fromAPI {
		if err := h.apply(d, rec); err != nil {
			return err
		}
	} else {
		h.happen(d, rec)
	}
	d.stopTimer()
	d.console = nil // the session ends with the run; readers drain, then EOF
	d.closeDisplaysLocked()
	d.line, d.pendingInput = nil, nil
	d.cond.Broadcast()
	return nil
}

// apply persists rec, then makes it the domain's state.
func (h *Hypervisor) apply(d *domain, rec record) error {
	if err := h.save(rec); err != nil {
		return err
	}
	h.set(d, rec)
	return nil
}

// happen records something the guest did: it happened whether or not it can
// be persisted, and the next successful save of the domain catches up.
func (h *Hypervisor) happen(d *domain, rec record) {
	h.set(d, rec)
	_ = h.save(rec)
}

// set makes rec the domain's state and tells watchers when the state or
// its reason changed. Every transition goes through here.
func (h *Hypervisor) set(d *domain, rec record) {
	changed := rec.State != d.rec.State || rec.Reason != d.rec.Reason
	d.rec = rec
	if changed {
		h.watchers.Changed(rec.Name)
	}
}
