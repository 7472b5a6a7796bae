package simhv

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

func TestConsoleBootLog(t *testing.T) {
	f := newFixture(t, Options{})
	f.start("vm")
	c := f.console("vm")
	// The first kernel line is printed at start; the ready marker only at
	// the end of the boot time.
	c.expect("Linux version")
	f.clock.Advance(testBoot - time.Millisecond)
	c.expect("cloud-init")
	if out := c.pending(); strings.Contains(out, "ready") {
		t.Fatalf("ready marker before the boot time: %q", out)
	}
	f.clock.Advance(time.Millisecond)
	c.expect(ReadyMarker("vm") + "\r\n" + Prompt)
}

func TestConsoleBuffersOutputWhileClosed(t *testing.T) {
	f := newFixture(t, Options{})
	f.start("vm")
	f.clock.Advance(testBoot)
	c := f.console("vm")
	// Nobody read during boot: the whole log is there, in order.
	before := c.expect(ReadyMarker("vm"))
	for _, want := range []string{"Linux version", "Command line", "Memory: 524288K available", "2 CPUs", "Run /sbin/init", "cloud-init"} {
		i := strings.Index(before, want)
		if i < 0 {
			t.Fatalf("boot log %q lacks %q", before, want)
		}
		before = before[i:]
	}
}

func TestConsoleShell(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{"hostname", "hostname\r", "hostname\r\nvm\r\n" + Prompt},
		{"newline ends a line too", "hostname\n", "hostname\r\nvm\r\n" + Prompt},
		{"crlf is one line", "hostname\r\n", "hostname\r\nvm\r\n" + Prompt},
		{"unknown command", "ls -l /\r", "ls -l /\r\nsh: ls: not found\r\n" + Prompt},
		{"empty line", "\r", "\r\n" + Prompt},
		{"backspace", "hostx\x7fname\r", "hostx\b \bname\r\nvm\r\n" + Prompt},
		{"ctrl-c", "hostn\x03", "hostn^C\r\n" + Prompt},
		{"input split across writes", "host|name\r", "hostname\r\nvm\r\n" + Prompt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			f.start("vm")
			f.clock.Advance(testBoot)
			c := f.console("vm")
			c.expect(ReadyMarker("vm") + "\r\n" + Prompt)
			for _, part := range strings.Split(tt.input, "|") {
				c.write(part)
			}
			if got := c.expect(tt.want); got != "" {
				t.Errorf("unexpected output before the reply: %q", got)
			}
			f.wantState("vm", hypervisor.StateRunning, hypervisor.ReasonBooted)
		})
	}
}

func TestConsoleStopsGuest(t *testing.T) {
	tests := []struct {
		cmd        string
		wantOut    string
		wantState  hypervisor.State
		wantReason hypervisor.Reason
		wantExit   int32
	}{
		{"poweroff", "reboot: Power down\r\n", hypervisor.StateShutoff, hypervisor.ReasonShutdown, 0},
		{"crash", "Kernel panic", hypervisor.StateCrashed, hypervisor.ReasonCrashed, ExitCodeCrashed},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			f := newFixture(t, Options{})
			f.start("vm")
			f.clock.Advance(testBoot)
			c := f.console("vm")
			c.expect(Prompt)
			c.write(tt.cmd + "\r")
			c.expect(tt.wantOut)
			c.expectEnd(io.EOF)
			st := f.wantState("vm", tt.wantState, tt.wantReason)
			if st.ExitCode != tt.wantExit || !st.FinishedAt.Equal(f.clock.Now()) {
				t.Errorf("exit %d at %v, want %d at %v", st.ExitCode, st.FinishedAt, tt.wantExit, f.clock.Now())
			}
			if _, err := c.rwc.Write([]byte("x")); !errors.Is(err, hypervisor.ErrInvalidState) {
				t.Errorf("Write after the guest stopped: %v, want ErrInvalidState", err)
			}
		})
	}
}

func TestConsoleSingleSession(t *testing.T) {
	f := newFixture(t, Options{})
	f.start("vm")
	first, err := f.hv.Console(f.ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.hv.Console(f.ctx, "vm"); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("second Console: %v, want ErrInvalidState", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Read(make([]byte, 8)); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Read after Close: %v, want io.ErrClosedPipe", err)
	}
	f.wantState("vm", hypervisor.StateRunning, hypervisor.ReasonBooted)
	second := f.console("vm")
	// The first session consumed nothing, so the second sees the boot.
	second.expect("Linux version")
}

func TestConsoleCloseUnblocksRead(t *testing.T) {
	f := newFixture(t, Options{})
	f.start("vm")
	f.clock.Advance(testBoot)
	c := f.console("vm")
	c.expect(Prompt)
	c.rwc.Close()
	c.expectEnd(io.ErrClosedPipe)
	f.wantState("vm", hypervisor.StateRunning, hypervisor.ReasonBooted)
}

func TestConsoleEndsWithTheRun(t *testing.T) {
	f := newFixture(t, Options{})
	f.start("vm")
	c, err := f.hv.Console(f.ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(testBoot)
	if err := f.hv.Destroy(f.ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	// Output printed before the stop is still delivered, then EOF.
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), ReadyMarker("vm")) {
		t.Errorf("output after destroy %q lacks the boot log", out)
	}
	if _, err := f.hv.Console(f.ctx, "vm"); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Errorf("Console of a stopped domain: %v, want ErrInvalidState", err)
	}
	// A new run has a new console session even if the old one is open.
	if err := f.hv.Start(f.ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	f.console("vm").expect("Linux version")
	if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Errorf("old session Read = %d, %v; want EOF", n, err)
	}
}

func TestConsoleBufferIsBounded(t *testing.T) {
	f := newFixture(t, Options{ConsoleBufferSize: 64})
	f.start("vm")
	f.clock.Advance(testBoot)
	c, err := f.hv.Console(f.ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("hostname\r")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Nothing was read: the boot log was cut to the newest 64 bytes.
	c2, err := f.hv.Console(f.ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	buf := make([]byte, 1024)
	n, err := c2.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if want := "hostname\r\nvm\r\n" + Prompt; n != 64 || !strings.HasSuffix(string(buf[:n]), want) {
		t.Errorf("buffered output %q (%d bytes), want the newest 64 bytes ending in %q", buf[:n], n, want)
	}
}

func TestConsolePausedGuestQueuesInput(t *testing.T) {
	f := newFixture(t, Options{})
	f.start("vm")
	f.clock.Advance(testBoot)
	c := f.console("vm")
	c.expect(Prompt)
	if err := f.hv.Pause("vm"); err != nil {
		t.Fatal(err)
	}
	c.write("hostname\r")
	if err := f.hv.Resume("vm"); err != nil {
		t.Fatal(err)
	}
	if got := c.expect("hostname\r\nvm\r\n" + Prompt); got != "" {
		t.Errorf("unexpected output %q", got)
	}
}

func TestConsoleRefusals(t *testing.T) {
	f := newFixture(t, Options{})
	f.define("vm")
	if _, err := f.hv.Console(f.ctx, "vm"); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Errorf("Console of a defined domain: %v, want ErrInvalidState", err)
	}
	f.start("noserial", withoutSerial)
	if _, err := f.hv.Console(f.ctx, "noserial"); !errors.Is(err, hypervisor.ErrUnimplemented) {
		t.Errorf("Console of a domain without serial port: %v, want ErrUnimplemented", err)
	}
}

// With ConsoleDropsUnread, as with QEMU's serial socket, a console opened
// after start misses the first kernel line; one opened on a domain started
// paused gets it once the guest runs.
func TestConsoleDropsUnreadAndStartPaused(t *testing.T) {
	f := newFixture(t, Options{ConsoleDropsUnread: true})
	f.start("late")
	late := f.console("late")
	f.clock.Advance(testBoot)
	if out := late.expect(ReadyMarker("late")); strings.Contains(out, "Linux version") {
		t.Fatalf("a console opened after start got the first kernel line: %q", out)
	}

	f.define("early")
	if err := f.hv.StartPaused(f.ctx, "early"); err != nil {
		t.Fatalf("StartPaused: %v", err)
	}
	f.wantState("early", hypervisor.StatePaused, hypervisor.ReasonUser)
	early := f.console("early")
	f.clock.Advance(testBoot)
	if out := early.pending(); out != "" {
		t.Fatalf("a paused guest printed %q", out)
	}
	if err := f.hv.Unpause(f.ctx, "early"); err != nil {
		t.Fatalf("Unpause: %v", err)
	}
	f.wantState("early", hypervisor.StateRunning, ReasonUnpaused)
	early.expect("Linux version")
	f.clock.Advance(testBoot)
	early.expect(ReadyMarker("early"))
	if err := f.hv.Unpause(f.ctx, "early"); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("Unpause of a running domain: %v, want ErrInvalidState", err)
	}
}
