package simhv

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/podvisor/podvisor/fakes/clock"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// record is what is persisted about a domain. It is a value: transitions
// build a new record and commit it whole.
type record struct {
	Name       string            `json:"name"`
	UUID       string            `json:"uuid"`
	XML        string            `json:"xml"`
	State      hypervisor.State  `json:"state"`
	Reason     hypervisor.Reason `json:"reason"`
	StartedAt  time.Time         `json:"startedAt"`
	FinishedAt time.Time         `json:"finishedAt"`
	ExitCode   int32             `json:"exitCode"`
	PID        int               `json:"pid"`
	// Run describes the current run; zero when the domain is stopped.
	Run runState `json:"run"`
	// Behavior is the guest's own behaviour (SetBehavior), if any. It is
	// persisted because it belongs to the "VM", which outlives the daemon.
	Behavior *storedBehavior `json:"behavior,omitempty"`
}

// runState is the configuration the domain was started with and the guest's
// clock. Guest time (uptime) runs only while the domain is not paused.
type runState struct {
	MemoryBytes uint64 `json:"memoryBytes,omitempty"`
	VCPUs       int    `json:"vcpus,omitempty"`
	// The most a resize may give (the definition's <memory> and <vcpu>).
	MaxMemoryBytes uint64        `json:"maxMemoryBytes,omitempty"`
	MaxVCPUs       int           `json:"maxVCPUs,omitempty"`
	Agent          bool          `json:"agent,omitempty"`
	Serial         bool          `json:"serial,omitempty"`
	Display        bool          `json:"display,omitempty"`
	BootTime       time.Duration `json:"bootTime,omitempty"`
	// UptimeBase is the guest time accumulated before ResumedAt.
	UptimeBase time.Duration `json:"uptimeBase,omitempty"`
	// ResumedAt is when the guest last started or resumed; zero while
	// paused.
	ResumedAt time.Time `json:"resumedAt"`
	// ShutdownPending says an ACPI shutdown completes at guest time
	// ShutdownAt.
	ShutdownPending bool          `json:"shutdownPending,omitempty"`
	ShutdownAt      time.Duration `json:"shutdownAt,omitempty"`
}

type storedBehavior struct {
	IgnoreACPI    bool          `json:"ignoreACPI,omitempty"`
	ShutdownDelay time.Duration `json:"shutdownDelay,omitempty"`
	CrashAfter    time.Duration `json:"crashAfter,omitempty"`
	FailStart     string        `json:"failStart,omitempty"`
	BootTime      time.Duration `json:"bootTime,omitempty"`
}

func storeBehavior(b GuestBehavior) *storedBehavior {
	s := &storedBehavior{IgnoreACPI: b.IgnoreACPI, ShutdownDelay: b.ShutdownDelay, CrashAfter: b.CrashAfter, BootTime: b.BootTime}
	if b.FailStart != nil {
		s.FailStart = b.FailStart.Error()
	}
	return s
}

func (s *storedBehavior) behavior() GuestBehavior {
	b := GuestBehavior{IgnoreACPI: s.IgnoreACPI, ShutdownDelay: s.ShutdownDelay, CrashAfter: s.CrashAfter, BootTime: s.BootTime}
	if s.FailStart != "" {
		b.FailStart = fmt.Errorf("%s", s.FailStart)
	}
	return b
}

// domain is one domain in memory. Every field is guarded by Hypervisor.mu.
type domain struct {
	rec record
	cfg config // of the newest definition; used by the next Start

	timer    clock.Timer
	timerGen uint64

	// runGen counts runs in this process; a console belongs to one run.
	runGen   uint64
	bootStep int // boot log lines already printed (or lost) in this run

	out     []byte // console output nobody has read yet, bounded
	outMax  int
	cond    *sync.Cond // signalled on output, state changes and Close
	console *console   // the open console session, if any
	// displays are the server ends of this run's display connections.
	displays []net.Conn

	line         []byte // console input typed since the last newline
	lastCR       bool
	pendingInput []byte // typed while paused

	execs       map[int]*execProc // guest-exec processes of this run
	nextExecPID int

	// What the agent was told in this run (GuestState).
	timeSet    []time.Time
	ipCommands [][]string
	frozen     bool
	freezes    int
}

func newDomain(rec record, cfg config, mu *sync.Mutex) *domain {
	return &domain{rec: rec, cfg: cfg, cond: sync.NewCond(mu)}
}

func (d *domain) status() hypervisor.DomainStatus {
	r := d.rec
	return hypervisor.DomainStatus{
		Name: r.Name, UUID: r.UUID, State: r.State, Reason: r.Reason,
		StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, ExitCode: r.ExitCode, PID: r.PID,
	}
}

// active reports whether the domain has an emulator: running, paused or
// shutting down. Shut off and crashed domains are not active.
func (d *domain) active() bool {
	switch d.rec.State {
	case hypervisor.StateRunning, hypervisor.StatePaused, hypervisor.StateShutdown:
		return true
	}
	return false
}

// uptime is the guest time at wall time now.
func (d *domain) uptime(now time.Time) time.Duration {
	r := d.rec.Run
	if r.ResumedAt.IsZero() {
		return r.UptimeBase
	}
	el := now.Sub(r.ResumedAt)
	if el < 0 {
		el = 0
	}
	return r.UptimeBase + el
}

// wallTime is the wall time at which the running guest reaches uptime u.
func (d *domain) wallTime(u time.Duration) time.Time {
	r := d.rec.Run
	return r.ResumedAt.Add(u - r.UptimeBase)
}

// newRun resets the per-run state after Start.
func (d *domain) newRun() {
	d.runGen++
	d.bootStep = 0
	d.out = nil
	d.line, d.lastCR, d.pendingInput = nil, false, nil
	d.console = nil
	d.closeDisplaysLocked()
	d.execs = nil
	d.timeSet, d.ipCommands, d.frozen, d.freezes = nil, nil, false, 0
	d.cond.Broadcast()
}

func (d *domain) stopTimer() {
	d.timerGen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

// print appends guest output to the console buffer, dropping the oldest bytes
// beyond the bound, as a serial ring buffer would.
func (d *domain) print(h *Hypervisor, s string) {
	if !d.rec.Run.Serial || s == "" || (h.opts.ConsoleDropsUnread && d.console == nil) {
		return
	}
	d.out = append(d.out, s...)
	if max := h.opts.ConsoleBufferSize; len(d.out) > max {
		n := copy(d.out, d.out[len(d.out)-max:])
		d.out = d.out[:n]
	}
	d.cond.Broadcast()
}

// replan re-evaluates the guest's pending events after a change.
func (h *Hypervisor) replan(d *domain, now time.Time) {
	d.stopTimer()
	h.progress(d, now)
}

type eventKind int

const (
	evNone eventKind = iota
	evBoot
	evCrash
	evShutdown
)

// progress applies every guest event due by now, in order, then arms one
// timer for the next event. An idle booted guest has no timer.
func (h *Hypervisor) progress(d *domain, now time.Time) {
	if h.closed {
		return
	}
	for d.active() && d.rec.State != hypervisor.StatePaused {
		up := d.uptime(now)
		kind, due := evNone, time.Duration(0)
		consider := func(k eventKind, at time.Duration) {
			if kind == evNone || at < due {
				kind, due = k, at
			}
		}
		if d.bootStep < bootLines {
			consider(evBoot, bootLineAt(d.rec.Run.BootTime, d.bootStep))
		}
		if b := h.behaviorLocked(d.rec.Name); b.CrashAfter > 0 {
			consider(evCrash, b.CrashAfter)
		}
		if d.rec.Run.ShutdownPending {
			consider(evShutdown, d.rec.Run.ShutdownAt)
		}
		if kind == evNone {
			return
		}
		if due > up {
			if d.timer == nil {
				d.timerGen++
				gen := d.timerGen
				d.timer = h.clock.AfterFunc(due-up, func() { h.onTimer(d, gen) })
			}
			return
		}
		at := d.wallTime(due)
		switch kind {
		case evBoot:
			d.print(h, bootLine(d, d.bootStep))
			d.bootStep++
		case evCrash:
			d.print(h, kernelLine(due, "Kernel panic - not syncing: Fatal exception"))
			_ = h.stopLocked(d, hypervisor.StateCrashed, hypervisor.ReasonCrashed, ExitCodeCrashed, at, false)
		case evShutdown:
			d.print(h, kernelLine(due, "reboot: Power down"))
			_ = h.stopLocked(d, hypervisor.StateShutoff, hypervisor.ReasonShutdown, ExitCodeShutdown, at, false)
		}
	}
}

func (h *Hypervisor) onTimer(d *domain, gen uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || d.timerGen != gen || h.domains[d.rec.Name] != d {
		return
	}
	d.timer = nil
	h.progress(d, h.clock.Now())
}

// The boot log: bootLines lines spread over the boot time, the last of which
// is the ready marker followed by the prompt.
const bootLines = 7

// Prompt is what the simulated shell prints when it waits for a command.
const Prompt = "# "

// ReadyMarker is the line the guest prints when it has booted (followed by
// "\r\n" and the prompt).
func ReadyMarker(name string) string { return "podvisor-sim: " + name + " ready" }

func bootLineAt(boot time.Duration, i int) time.Duration {
	return boot * time.Duration(i) / (bootLines - 1)
}

func bootLine(d *domain, i int) string {
	r := d.rec.Run
	at := bootLineAt(r.BootTime, i)
	switch i {
	case 0:
		return kernelLine(at, "Linux version 6.6.0-podvisor-sim (sim@podvisor) #1 SMP PREEMPT_DYNAMIC")
	case 1:
		return kernelLine(at, "Command line: console=ttyS0 root=/dev/vda1 ro")
	case 2:
		return kernelLine(at, fmt.Sprintf("Memory: %dK available", r.MemoryBytes>>10))
	case 3:
		return kernelLine(at, fmt.Sprintf("smp: Brought up 1 node, %d CPUs", r.VCPUs))
	case 4:
		return kernelLine(at, "Run /sbin/init as init process")
	case 5:
		return kernelLine(at, "cloud-init: modules:final finished")
	default:
		return ReadyMarker(d.rec.Name) + "\r\n" + Prompt
	}
}

// kernelLine formats a line the way the Linux kernel prints to a serial
// console, stamped with guest uptime.
func kernelLine(up time.Duration, msg string) string {
	us := up.Microseconds()
	return fmt.Sprintf("[%5d.%06d] %s\r\n", us/1e6, us%1e6, msg)
}
