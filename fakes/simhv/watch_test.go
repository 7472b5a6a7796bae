package simhv

import (
	"context"
	"testing"
	"time"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// watcher reads a WatchStates channel for a test.
type watcher struct {
	t  *testing.T
	ch <-chan hypervisor.StateEvent
}

func (f *fixture) watch(ctx context.Context) *watcher {
	return &watcher{t: f.t.(*testing.T), ch: f.hv.WatchStates(ctx)}
}

// next returns the next notice, failing the test after the deadline.
func (w *watcher) next() hypervisor.StateEvent {
	w.t.Helper()
	select {
	case ev, ok := <-w.ch:
		if !ok {
			w.t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(deadline):
		w.t.Fatal("no state notice within the deadline")
	}
	panic("unreachable")
}

// expect waits for a notice naming name and returns the names noticed
// before it.
func (w *watcher) expect(name string) []string {
	w.t.Helper()
	var before []string
	for {
		ev := w.next()
		if ev.Name == name {
			return before
		}
		if ev.Resync {
			w.t.Fatalf("unexpected Resync while waiting for %s", name)
		}
		before = append(before, ev.Name)
	}
}

func TestWatchStatesReportsEveryTransition(t *testing.T) {
	f := newFixture(t, Options{})
	w := f.watch(f.ctx)
	const name = "vm"
	// Define changes no state: nothing is reported for "quiet".
	f.define("quiet")
	f.hv.SetBehavior("quiet", GuestBehavior{IgnoreACPI: true})
	f.define(name)

	steps := []struct {
		what       string
		do         func()
		wantState  hypervisor.State
		wantReason hypervisor.Reason
	}{
		{"start", func() { mustOK(t, f.hv.Start(f.ctx, name)) }, hypervisor.StateRunning, hypervisor.ReasonBooted},
		{"pause", func() { mustOK(t, f.hv.Pause(name)) }, hypervisor.StatePaused, hypervisor.ReasonUser},
		{"resume", func() { mustOK(t, f.hv.Resume(name)) }, hypervisor.StateRunning, ReasonUnpaused},
		{"ACPI shutdown begins", func() { mustOK(t, f.hv.Shutdown(f.ctx, name)) }, hypervisor.StateShutdown, hypervisor.ReasonUser},
		{"ACPI shutdown completes", func() { f.clock.Advance(DefaultShutdownDelay) }, hypervisor.StateShutoff, hypervisor.ReasonShutdown},
		{"start again", func() { mustOK(t, f.hv.Start(f.ctx, name)) }, hypervisor.StateRunning, hypervisor.ReasonBooted},
		{"destroy", func() { mustOK(t, f.hv.Destroy(f.ctx, name)) }, hypervisor.StateShutoff, hypervisor.ReasonDestroyed},
		{"start, then Crash", func() {
			mustOK(t, f.hv.Start(f.ctx, name))
			w.expect(name)
			mustOK(t, f.hv.Crash(name))
		}, hypervisor.StateCrashed, hypervisor.ReasonCrashed},
		{"start, then CrashAfter", func() {
			f.hv.SetBehavior(name, GuestBehavior{CrashAfter: time.Second})
			mustOK(t, f.hv.Start(f.ctx, name))
			w.expect(name)
			f.clock.Advance(time.Second)
		}, hypervisor.StateCrashed, hypervisor.ReasonCrashed},
		{"start, then poweroff typed on the console", func() {
			f.hv.ResetBehavior(name)
			mustOK(t, f.hv.Start(f.ctx, name))
			w.expect(name)
			c := f.console(name)
			f.clock.Advance(testBoot)
			c.expect(Prompt)
			c.write("poweroff\n")
		}, hypervisor.StateShutoff, hypervisor.ReasonShutdown},
		{"start, then crash typed on the console", func() {
			mustOK(t, f.hv.Start(f.ctx, name))
			w.expect(name)
			c := f.console(name)
			f.clock.Advance(testBoot)
			c.expect(Prompt)
			c.write("crash\n")
		}, hypervisor.StateCrashed, hypervisor.ReasonCrashed},
		{"failing start", func() {
			f.hv.SetBehavior(name, GuestBehavior{FailStart: errBoom})
			if err := f.hv.Start(f.ctx, name); err == nil {
				t.Fatal("Start with FailStart succeeded")
			}
		}, hypervisor.StateShutoff, hypervisor.ReasonFailed},
	}
	for _, s := range steps {
		s.do()
		for _, other := range w.expect(name) {
			if other == "quiet" {
				t.Errorf("%s: a notice for domain quiet, whose state never changed", s.what)
			}
		}
		// The notice comes once Status shows the change.
		st := f.status(name)
		if st.State != s.wantState || st.Reason != s.wantReason {
			t.Errorf("%s: after the notice, status %v/%s; want %v/%s", s.what, st.State, st.Reason, s.wantState, s.wantReason)
		}
	}
	mustOK(t, f.hv.Undefine(f.ctx, name))
	w.expect(name)
}

func TestWatchStatesOverflowSendsResync(t *testing.T) {
	const buffer = 2
	f := newFixture(t, Options{WatchBuffer: buffer})
	w := f.watch(f.ctx)
	// Nobody reads: the watch holds at most one batch in flight (up to
	// buffer names) and buffer more; 2*buffer+1 distinct changes must
	// overflow.
	names := []string{"a", "b", "c", "d", "e"}
	for _, n := range names {
		f.define(n)
		mustOK(t, f.hv.Start(f.ctx, n))
	}
	for {
		ev := w.next()
		if ev.Resync {
			break
		}
	}
	// The watch goes on after the resync. What was queued before it (more
	// names, or another Resync if the set overflowed again while the first
	// was in flight) is drained first: a change made while a Resync is
	// pending is covered by it, not named.
	for quiet := false; !quiet; {
		select {
		case <-w.ch:
		case <-time.After(200 * time.Millisecond):
			quiet = true
		}
	}
	mustOK(t, f.hv.Destroy(f.ctx, "a"))
	w.expect("a")
}

func TestWatchStatesEnds(t *testing.T) {
	f := newFixture(t, Options{})
	ctx, cancel := context.WithCancel(f.ctx)
	w1 := f.watch(ctx)
	w2 := f.watch(f.ctx)
	if n := f.hv.Watches(); n != 2 {
		t.Fatalf("Watches() = %d, want 2", n)
	}
	cancel()
	for range w1.ch {
	}
	if n := f.hv.Watches(); n != 1 {
		t.Errorf("after the context ended: Watches() = %d, want 1", n)
	}
	f.hv.Close()
	for range w2.ch {
	}
	if n := f.hv.Watches(); n != 0 {
		t.Errorf("after Close: Watches() = %d, want 0", n)
	}
	if _, ok := <-f.hv.WatchStates(context.Background()); ok {
		t.Error("WatchStates after Close: the channel is open")
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
