package simhv

import (
	"context"
	"fmt"
	"time"
)

// Op names a Hypervisor method for fault and latency injection.
type Op string

// The operations, one per method of hypervisor.Hypervisor.
const (
	OpInfo         Op = "Info"
	OpDefine       Op = "Define"
	OpStart        Op = "Start" // Start and StartPaused
	OpUnpause      Op = "Unpause"
	OpShutdown     Op = "Shutdown"
	OpDestroy      Op = "Destroy"
	OpUndefine     Op = "Undefine"
	OpStatus       Op = "Status"
	OpList         Op = "List"
	OpXML          Op = "XML"
	OpConsole      Op = "Console"
	OpDisplay      Op = "Display"
	OpStats        Op = "Stats"
	OpResize       Op = "Resize" // Sizing, SetVCPUs and SetMemory
	OpAgentCommand Op = "AgentCommand"
	OpClose        Op = "Close"
	// The hypervisor.Saver methods.
	OpSave     Op = "Save"
	OpRestore  Op = "Restore"
	OpSavedXML Op = "SavedXML"
)

// Ops lists every Op.
var Ops = []Op{OpInfo, OpDefine, OpStart, OpUnpause, OpShutdown, OpDestroy, OpUndefine, OpStatus, OpList, OpXML, OpConsole, OpDisplay, OpStats, OpResize, OpAgentCommand, OpClose, OpSave, OpRestore, OpSavedXML}

// Forever as the times of a fault makes it permanent.
const Forever = -1

type fault struct {
	op          Op
	name        string
	err         error
	left        int // < 0: forever
	afterEffect bool
}

type latency struct {
	before, after time.Duration
}

type callKey struct {
	op   Op
	name string
}

// InjectFault makes the next times calls of op on the named domain (name ""
// matches any domain, and is the only match for Info, List and Close) fail
// with an error wrapping err, before they have any effect. times Forever (-1)
// keeps the fault until ClearFaults. When several faults match, the oldest
// is used.
func (h *Hypervisor) InjectFault(op Op, name string, err error, times int) {
	h.addFault(&fault{op: op, name: name, err: err, left: times})
}

// InjectFaultAfterEffect is InjectFault for a call that takes effect and then
// reports err anyway, as when a reply is lost: callers must be idempotent.
func (h *Hypervisor) InjectFaultAfterEffect(op Op, name string, err error, times int) {
	h.addFault(&fault{op: op, name: name, err: err, left: times, afterEffect: true})
}

func (h *Hypervisor) addFault(f *fault) {
	if f.left == 0 || f.err == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults = append(h.faults, f)
}

// ClearFaults removes every injected fault and latency.
func (h *Hypervisor) ClearFaults() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults = nil
	h.latency = map[Op]latency{}
}

// SetLatency delays every call of op by d (on the Clock) before it takes
// effect; a call whose context ends meanwhile returns the context's error and
// has no effect. Zero removes the latency.
func (h *Hypervisor) SetLatency(op Op, d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.latency[op]
	l.before = d
	h.latency[op] = l
}

// SetLatencyAfterEffect delays the reply of every call of op by d after it
// took effect; a call whose context ends meanwhile returns the context's
// error although the operation happened (a kubelet timeout).
func (h *Hypervisor) SetLatencyAfterEffect(op Op, d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.latency[op]
	l.after = d
	h.latency[op] = l
}

// CallCount reports how many calls of op were made on the named domain, or
// on any domain when name is "". Calls that failed count too.
func (h *Hypervisor) CallCount(op Op, name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if name != "" {
		return h.calls[callKey{op, name}]
	}
	n := 0
	for k, c := range h.calls {
		if k.op == op {
			n += c
		}
	}
	return n
}

// before runs at the start of every call: it counts the call, waits for the
// injected latency and returns an injected fault.
func (h *Hypervisor) before(ctx context.Context, op Op, name string) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	h.calls[callKey{op, name}]++
	d := h.latency[op].before
	h.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	if err := h.wait(ctx, d); err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.takeFaultLocked(op, name, false)
}

// call runs effect between before and after: the shape of every call that
// acts on one domain.
func (h *Hypervisor) call(ctx context.Context, op Op, name string, effect func() error) error {
	if err := h.before(ctx, op, name); err != nil {
		return err
	}
	if err := effect(); err != nil {
		return err
	}
	return h.after(ctx, op, name)
}

// after runs once a call took effect.
func (h *Hypervisor) after(ctx context.Context, op Op, name string) error {
	h.mu.Lock()
	d := h.latency[op].after
	h.mu.Unlock()
	if err := h.wait(ctx, d); err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.takeFaultLocked(op, name, true)
}

func (h *Hypervisor) takeFaultLocked(op Op, name string, afterEffect bool) error {
	for i, f := range h.faults {
		if f.op != op || f.afterEffect != afterEffect || (f.name != "" && f.name != name) {
			continue
		}
		if f.left > 0 {
			f.left--
			if f.left == 0 {
				h.faults = append(h.faults[:i:i], h.faults[i+1:]...)
			}
		}
		if name == "" {
			return fmt.Errorf("%s: injected fault: %w", op, f.err)
		}
		return fmt.Errorf("%s %s: injected fault: %w", op, name, f.err)
	}
	return nil
}

// wait sleeps d on the clock, or until ctx ends.
func (h *Hypervisor) wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	done := make(chan struct{})
	t := h.clock.AfterFunc(d, func() { close(done) })
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
}
