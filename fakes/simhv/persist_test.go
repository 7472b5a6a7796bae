package simhv

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podvisor/podvisor/fakes/clock"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	first := newFixture(t, Options{StateDir: dir})
	hv, c := first.hv, first.clock
	ctx := first.ctx

	first.define("defined")
	first.start("running")
	first.start("destroyed")
	first.start("poweredoff")
	first.start("crashed")
	hv.SetBehavior("hung", GuestBehavior{IgnoreACPI: true})
	first.start("hung")
	hv.SetBehavior("crashlater", GuestBehavior{CrashAfter: time.Hour})
	first.start("crashlater")
	hv.SetBehavior("shutting", GuestBehavior{ShutdownDelay: 10 * time.Second})
	first.start("shutting")
	first.start("paused")
	c.Advance(time.Minute)
	for _, step := range []error{
		hv.Destroy(ctx, "destroyed"),
		hv.Crash("crashed"),
		hv.Shutdown(ctx, "poweredoff"),
		hv.Shutdown(ctx, "shutting"),
		hv.Pause("paused"),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	c.Advance(time.Second) // poweredoff is off, shutting still shutting down
	first.start("booting")
	c.Advance(testBoot / 2)
	before, err := hv.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pids := map[int]bool{}
	for _, st := range before {
		pids[st.PID] = true
	}
	// Read the running domain's console so that its buffer is empty.
	con := first.console("running")
	con.expect(ReadyMarker("running") + "\r\n" + Prompt)
	// The daemon "dies": the first simulator is simply abandoned (its
	// clock never moves again), as after kill -9.

	c2 := clock.NewFake(c.Now())
	second := newFixture(t, Options{StateDir: dir, Clock: c2})
	after, err := second.hv.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, after); diff != "" {
		t.Fatalf("statuses changed across the restart (-before +after):\n%s", diff)
	}
	wantStates := map[string]hypervisor.State{
		"defined": hypervisor.StateShutoff, "running": hypervisor.StateRunning, "destroyed": hypervisor.StateShutoff,
		"poweredoff": hypervisor.StateShutoff, "crashed": hypervisor.StateCrashed, "hung": hypervisor.StateRunning,
		"crashlater": hypervisor.StateRunning, "shutting": hypervisor.StateShutdown, "paused": hypervisor.StatePaused,
		"booting": hypervisor.StateRunning,
	}
	for _, st := range after {
		if wantStates[st.Name] != st.State {
			t.Errorf("%s is %v, want %v", st.Name, st.State, wantStates[st.Name])
		}
	}

	// No new boot: the console shows only what is typed now.
	con2 := second.console("running")
	con2.write("hostname\r")
	if got := con2.expect("hostname\r\nrunning\r\n" + Prompt); got != "" {
		t.Errorf("console after restart printed %q before the reply", got)
	}
	// A domain booting at the restart goes on where it was.
	boot := second.console("booting")
	c2.Advance(testBoot / 2)
	out := boot.expect(ReadyMarker("booting"))
	if strings.Contains(out, "Linux version") || !strings.Contains(out, "cloud-init") {
		t.Errorf("boot output after restart %q: want the rest of the boot, not a new one", out)
	}

	// The guests keep their behaviour and pending events.
	if err := second.hv.Shutdown(ctx, "hung"); err != nil {
		t.Fatal(err)
	}
	c2.Advance(10 * time.Second)
	second.wantState("hung", hypervisor.StateRunning, hypervisor.ReasonBooted)
	st := second.wantState("shutting", hypervisor.StateShutoff, hypervisor.ReasonShutdown)
	if want := epoch.Add(time.Minute + 10*time.Second); !st.FinishedAt.Equal(want) {
		t.Errorf("shutting finished at %v, want %v", st.FinishedAt, want)
	}
	if err := second.hv.Resume("paused"); err != nil {
		t.Fatal(err)
	}
	// New PIDs do not reuse old ones.
	second.start("new")
	if st := second.status("new"); pids[st.PID] || st.PID < FirstPID {
		t.Errorf("new domain got PID %d, already used before the restart (%v)", st.PID, pids)
	}
	if err := second.hv.Undefine(ctx, "defined"); err != nil {
		t.Fatal(err)
	}

	// A third start, long after: events due meanwhile happened on time.
	c3 := clock.NewFake(c2.Now().Add(2 * time.Hour))
	third := newFixture(t, Options{StateDir: dir, Clock: c3})
	st = third.wantState("crashlater", hypervisor.StateCrashed, hypervisor.ReasonCrashed)
	if want := epoch.Add(time.Hour); !st.FinishedAt.Equal(want) || st.ExitCode != ExitCodeCrashed {
		t.Errorf("crashlater finished at %v with %d, want %v with %d", st.FinishedAt, st.ExitCode, want, ExitCodeCrashed)
	}
	running := third.wantState("running", hypervisor.StateRunning, hypervisor.ReasonBooted)
	for _, b := range before {
		if b.Name == "running" && (b.PID != running.PID || !b.StartedAt.Equal(running.StartedAt)) {
			t.Errorf("running was restarted: %+v, before %+v", running, b)
		}
	}
	if _, err := third.hv.Status(ctx, "defined"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("undefined domain came back: %v", err)
	}
	third.wantState("new", hypervisor.StateRunning, hypervisor.ReasonBooted)
	stats, err := third.hv.Stats(ctx, "running")
	if err != nil {
		t.Fatal(err)
	}
	if up := c3.Now().Sub(epoch); stats.CPUTime != up*2/10 {
		t.Errorf("CPU time %v after %v on 2 vCPUs, want %v", stats.CPUTime, up, up*2/10)
	}
}

func TestPersistenceIsAtomicAndChecked(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, Options{StateDir: dir})
	f.start("vm")
	domains := filepath.Join(dir, "domains")
	entries, err := os.ReadDir(domains)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != uuidFor("vm")+".json" {
		t.Fatalf("state dir holds %v, want one record named by UUID", entries)
	}
	// A temporary file left by a write interrupted by a kill is ignored
	// and cleaned up.
	tmp := filepath.Join(domains, ".tmp-123")
	if err := os.WriteFile(tmp, []byte("{half"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := newFixture(t, Options{StateDir: dir})
	g.wantState("vm", hypervisor.StateRunning, hypervisor.ReasonBooted)
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("temporary file still there: %v", err)
	}
	// A corrupt record is an error naming the file.
	bad := filepath.Join(domains, "bad.json")
	if err := os.WriteFile(bad, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{StateDir: dir}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("New with a corrupt record: %v, want an error naming %s", err, bad)
	}
}

func TestSaveFailureHasNoEffect(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, Options{StateDir: dir})
	f.define("vm")
	// Replace the records directory by a file: every save fails.
	domains := filepath.Join(dir, "domains")
	if err := os.RemoveAll(domains); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(domains, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.hv.Define(f.ctx, domainXML(t, "other")); err == nil || !strings.Contains(err.Error(), "saving state of domain 'other'") {
		t.Errorf("Define with an unwritable state dir: %v", err)
	}
	if _, err := f.hv.Status(f.ctx, "other"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("a Define that could not be saved left a domain: %v", err)
	}
	if err := f.hv.Start(f.ctx, "vm"); err == nil {
		t.Error("Start with an unwritable state dir succeeded")
	}
	f.wantState("vm", hypervisor.StateShutoff, hypervisor.ReasonDefined)
}
