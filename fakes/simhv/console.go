package simhv

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// maxLine bounds a console input line; longer input is cut, like a tty's
// canonical-mode buffer.
const maxLine = 4096

// Console opens the serial console of an active domain that has a serial
// port or console device.
func (h *Hypervisor) Console(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	return openStream(ctx, h, OpConsole, name, func() (io.ReadWriteCloser, error) { return h.openConsole(name) })
}

// openStream opens a stream (console, display) between op's injected
// faults; a fault after the opening closes what was opened.
func openStream(ctx context.Context, h *Hypervisor, op Op, name string, open func() (io.ReadWriteCloser, error)) (io.ReadWriteCloser, error) {
	if err := h.before(ctx, op, name); err != nil {
		return nil, err
	}
	c, err := open()
	if err != nil {
		return nil, err
	}
	if err := h.after(ctx, op, name); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func (h *Hypervisor) openConsole(name string) (*console, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.runningLocked(name)
	if err != nil {
		return nil, err
	}
	if !d.rec.Run.Serial {
		return nil, fmt.Errorf("%w: cannot find character device for domain '%s': it has no <serial> or <console>",
			hypervisor.ErrUnimplemented, name)
	}
	if d.console != nil {
		return nil, fmt.Errorf("%w: active console session exists for domain '%s'", hypervisor.ErrInvalidState, name)
	}
	c := &console{h: h, d: d, run: d.runGen}
	d.console = c
	return c, nil
}

// console is one session on a domain's serial port, tied to one run.
type console struct {
	h      *Hypervisor
	d      *domain
	run    uint64
	closed bool
}

// Read returns guest output. It blocks until there is some; once the run
// ended it returns what was left unread, then io.EOF.
func (c *console) Read(p []byte) (int, error) {
	h, d := c.h, c.d
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		switch {
		case c.closed:
			return 0, io.ErrClosedPipe
		case h.closed:
			return 0, ErrClosed
		case len(p) == 0:
			return 0, nil
		}
		current := c.run == d.runGen && h.domains[d.rec.Name] == d
		if current && len(d.out) > 0 {
			n := copy(p, d.out)
			d.out = d.out[n:]
			if len(d.out) == 0 {
				d.out = nil
			}
			return n, nil
		}
		if !current || !d.active() {
			return 0, io.EOF
		}
		d.cond.Wait()
	}
}

// Write types into the console. Input to a paused guest is queued until it
// resumes.
func (c *console) Write(p []byte) (int, error) {
	h, d := c.h, c.d
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case c.closed:
		return 0, io.ErrClosedPipe
	case h.closed:
		return 0, ErrClosed
	case c.run != d.runGen || !d.active() || h.domains[d.rec.Name] != d:
		return 0, fmt.Errorf("writing to the console of domain '%s': %w: the domain is not running", d.rec.Name, hypervisor.ErrInvalidState)
	}
	if d.rec.State == hypervisor.StatePaused {
		d.pendingInput = append(d.pendingInput, p...)
		return len(p), nil
	}
	h.typeLocked(d, p)
	return len(p), nil
}

// Close ends the session; the domain is not affected.
func (c *console) Close() error {
	h, d := c.h, c.d
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if d.console == c {
		d.console = nil
	}
	d.cond.Broadcast()
	return nil
}

// typeLocked feeds input to the guest's tty: it echoes, handles backspace
// and ^C, and runs each completed line.
func (h *Hypervisor) typeLocked(d *domain, p []byte) {
	for _, b := range p {
		if !d.active() {
			return
		}
		switch b {
		case '\r', '\n':
			if b == '\n' && d.lastCR {
				d.lastCR = false
				continue
			}
			d.lastCR = b == '\r'
			d.print(h, "\r\n")
			line := string(d.line)
			d.line = nil
			h.runLocked(d, line)
			continue
		case 0x7f, '\b':
			if len(d.line) > 0 {
				d.line = d.line[:len(d.line)-1]
				d.print(h, "\b \b")
			}
		case 0x03: // ^C
			d.line = nil
			d.print(h, "^C\r\n"+Prompt)
		default:
			if len(d.line) < maxLine {
				d.line = append(d.line, b)
				d.print(h, string([]byte{b}))
			}
		}
		d.lastCR = false
	}
}

// runLocked interprets one line typed at the guest's shell.
func (h *Hypervisor) runLocked(d *domain, line string) {
	fields := strings.Fields(line)
	if len(fields) == 0 {
		d.print(h, Prompt)
		return
	}
	now := h.clock.Now()
	switch fields[0] {
	case "hostname":
		d.print(h, d.rec.Name+"\r\n"+Prompt)
	case "poweroff":
		d.print(h, kernelLine(d.uptime(now), "reboot: Power down"))
		_ = h.stopLocked(d, hypervisor.StateShutoff, hypervisor.ReasonShutdown, ExitCodeShutdown, now, false)
	case "crash":
		d.print(h, kernelLine(d.uptime(now), "Kernel panic - not syncing: sysrq triggered crash"))
		_ = h.stopLocked(d, hypervisor.StateCrashed, hypervisor.ReasonCrashed, ExitCodeCrashed, now, false)
	default:
		d.print(h, "sh: "+fields[0]+": not found\r\n"+Prompt)
	}
}
