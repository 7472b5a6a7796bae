package pod_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podvisor/podvisor/fakes/simhv"
	"github.com/podvisor/podvisor/runtime/hypervisor"
	"github.com/podvisor/podvisor/runtime/pod"
)

// intervals sets the monitor's intervals; time.Hour means "never" within a
// test.
func intervals(poll, resync time.Duration) envOpt {
	return envOpt{cfg: func(c *pod.Config) {
		c.PollInterval, c.ResyncInterval = poll, resync
	}}
}

// withoutWatcher hides simhv's WatchStates: the manager sees a hypervisor
// that reports no state changes.
var withoutWatcher = envOpt{wrap: func(h *simhv.Hypervisor) hypervisor.Hypervisor {
	return struct{ hypervisor.Hypervisor }{h}
}}

// manualWatcher is simhv with a watch whose notices the test sends: simhv's
// own notices never reach the manager.
type manualWatcher struct {
	hypervisor.Hypervisor
	notices chan hypervisor.StateEvent
	// lag delays closing the channel after ctx ended; ended is set
	// just before it is closed.
	lag   time.Duration
	ended atomic.Bool
}

func (w *manualWatcher) WatchStates(ctx context.Context) <-chan hypervisor.StateEvent {
	out := make(chan hypervisor.StateEvent)
	go func() {
		defer close(out)
		defer w.ended.Store(true)
		for {
			select {
			case <-ctx.Done():
				time.Sleep(w.lag)
				return
			case ev := <-w.notices:
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func withManualWatcher(w *manualWatcher) envOpt {
	return envOpt{wrap: func(h *simhv.Hypervisor) hypervisor.Hypervisor {
		w.Hypervisor = h
		return w
	}}
}

// startVM runs a sandbox with a running container and returns the
// container's ID.
func (e *env) startVM(name string) string {
	e.t.Helper()
	cid := e.create(e.run(name), "vm")
	if err := e.m.StartContainer(context.Background(), cid); err != nil {
		e.t.Fatal(err)
	}
	return cid
}

// listed reads a container's record without asking the hypervisor (as
// kubelet's relist does): only the monitor changes what it shows.
func (e *env) listed(cid string) pod.Container {
	e.t.Helper()
	cs := e.m.ListContainers(pod.ContainerFilter{ID: cid})
	if len(cs) != 1 {
		e.t.Fatalf("ListContainers(%s): %d containers", cid, len(cs))
	}
	return *cs[0]
}

func waitExited(t *testing.T, e *env, cid, what string) pod.Container {
	t.Helper()
	var c pod.Container
	waitFor(t, what, func() bool {
		c = e.listed(cid)
		return c.State == pod.ContainerExited
	})
	return c
}

// TestStopNoticedByStateEvents: with the resync out of the picture (an
// hour), a VM stopping on its own is seen EXITED because its domain's state
// change is reported. (With a watcher, PollInterval only retries checks of
// reported domains; it is short here so that a crash reported while
// StartContainer still holds the container is not left for an hour.)
func TestStopNoticedByStateEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intervals(20*time.Millisecond, time.Hour))
	ctx := context.Background()
	tests := []struct {
		name     string
		behavior *simhv.GuestBehavior
		stop     func(t *testing.T, cid string)
		code     int32
		reason   string
		msg      string
	}{
		{"guest powers off (ACPI from outside)", nil, func(t *testing.T, cid string) {
			if err := e.hv.Shutdown(ctx, pod.DomainName(cid)); err != nil {
				t.Fatal(err)
			}
		}, 0, "Completed", "powered off"},
		{"poweroff typed in the guest", nil, func(t *testing.T, cid string) {
			// The console pump connects in the background: until it
			// has, attaching or typing fails.
			waitFor(t, "poweroff to be typed on the console", func() bool {
				out, w, err := e.m.AttachConsole(ctx, cid)
				if err != nil {
					return false
				}
				defer out.Close()
				_, err = io.WriteString(w, "poweroff\r")
				return err == nil
			})
		}, 0, "Completed", "powered off"},
		{"guest crashes", nil, func(t *testing.T, cid string) {
			if err := e.hv.Crash(pod.DomainName(cid)); err != nil {
				t.Fatal(err)
			}
		}, simhv.ExitCodeCrashed, "Error", "crashed"},
		{"guest crashes by its behaviour", &simhv.GuestBehavior{CrashAfter: 50 * time.Millisecond}, func(*testing.T, string) {}, simhv.ExitCodeCrashed, "Error", "crashed"},
		{"VM destroyed from outside", nil, func(t *testing.T, cid string) {
			if err := e.hv.Destroy(ctx, pod.DomainName(cid)); err != nil {
				t.Fatal(err)
			}
		}, simhv.ExitCodeDestroyed, "Error", "destroyed"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cid := e.create(e.run(fmt.Sprintf("ev%d", i)), "vm")
			if tc.behavior != nil {
				e.hv.SetBehavior(pod.DomainName(cid), *tc.behavior)
			}
			if err := e.m.StartContainer(ctx, cid); err != nil {
				t.Fatal(err)
			}
			tc.stop(t, cid)
			c := waitExited(t, e, cid, "the reported stop to mark the container exited")
			if c.ExitCode != tc.code || c.Reason != tc.reason || !strings.Contains(c.Message, tc.msg) {
				t.Errorf("exited container: code %d, reason %q, message %q; want %d, %q, mentioning %q", c.ExitCode, c.Reason, c.Message, tc.code, tc.reason, tc.msg)
			}
		})
	}
}

// TestCrashDuringStartIsNoticed: a VM that crashes while StartContainer
// still holds the container (so the monitor cannot check it when the crash
// is reported) is checked again on the next PollInterval, not only at the
// next resync.
func TestCrashDuringStartIsNoticed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intervals(20*time.Millisecond, time.Hour))
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		cid := e.create(e.run(fmt.Sprintf("early%d", i)), "vm")
		e.hv.SetBehavior(pod.DomainName(cid), simhv.GuestBehavior{CrashAfter: time.Nanosecond})
		if err := e.m.StartContainer(ctx, cid); err != nil {
			t.Fatal(err)
		}
		waitExited(t, e, cid, "the crash right after the start to be noticed")
	}
}

// TestResyncCatchesLostNotices: when notices are lost (here: none is ever
// delivered), the resync every ResyncInterval still sees the VM stop.
func TestResyncCatchesLostNotices(t *testing.T) {
	t.Parallel()
	deaf := &manualWatcher{notices: make(chan hypervisor.StateEvent)}
	e := newEnv(t, intervals(20*time.Millisecond, 100*time.Millisecond), withManualWatcher(deaf))
	cid := e.startVM("deaf")
	if err := e.hv.Crash(pod.DomainName(cid)); err != nil {
		t.Fatal(err)
	}
	c := waitExited(t, e, cid, "the resync to notice the crash")
	if c.ExitCode != simhv.ExitCodeCrashed {
		t.Errorf("exit code %d, want %d", c.ExitCode, simhv.ExitCodeCrashed)
	}
}

// TestResyncNoticeChecksEveryVM is the overflow path: a Resync notice (sent
// when notices were dropped) makes the monitor check every running VM at
// once, although no notice named them and no poll is due.
func TestResyncNoticeChecksEveryVM(t *testing.T) {
	t.Parallel()
	w := &manualWatcher{notices: make(chan hypervisor.StateEvent)}
	e := newEnv(t, intervals(time.Hour, time.Hour), withManualWatcher(w))
	a, b, c, d := e.startVM("a"), e.startVM("b"), e.startVM("c"), e.startVM("d")
	for _, cid := range []string{a, b, d} {
		if err := e.hv.Crash(pod.DomainName(cid)); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing can have noticed yet: no notice, no poll.
	for _, cid := range []string{a, b, c, d} {
		if st := e.listed(cid).State; st != pod.ContainerRunning {
			t.Fatalf("container %s is %s before any notice or poll", cid[:8], st)
		}
	}
	// A notice naming another domain changes nothing for a and b. The
	// monitor handles notices in order: once the notice about d (crashed)
	// has shown, the two before it have been processed.
	w.notices <- hypervisor.StateEvent{Name: pod.DomainName(c)}
	w.notices <- hypervisor.StateEvent{Name: "not-ours"}
	w.notices <- hypervisor.StateEvent{Name: pod.DomainName(d)}
	waitExited(t, e, d, "the notice about d to show its crash")
	for _, cid := range []string{a, b} {
		if st := e.listed(cid).State; st != pod.ContainerRunning {
			t.Fatalf("container %s is %s after a notice about another domain", cid[:8], st)
		}
	}
	w.notices <- hypervisor.StateEvent{Resync: true}
	waitExited(t, e, a, "the resync to notice the crash of a")
	waitExited(t, e, b, "the resync to notice the crash of b")
	if st := e.listed(c).State; st != pod.ContainerRunning {
		t.Errorf("container c is %s, want still running", st)
	}
}

// TestWatchOverflowLosesNoStop: many VMs stop at once while the watch may
// hold only one pending domain, so notices overflow into a Resync; every
// stop is still noticed without any poll.
func TestWatchOverflowLosesNoStop(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intervals(time.Hour, time.Hour), envOpt{sim: func(o *simhv.Options) { o.WatchBuffer = 1 }})
	var cids []string
	for i := 0; i < 20; i++ {
		cids = append(cids, e.startVM(fmt.Sprintf("burst%02d", i)))
	}
	for _, cid := range cids {
		if err := e.hv.Crash(pod.DomainName(cid)); err != nil {
			t.Fatal(err)
		}
	}
	for _, cid := range cids {
		waitExited(t, e, cid, "every crash of the burst to be noticed")
	}
}

// TestPollWithoutStateEvents: a hypervisor that reports no state changes
// is polled every PollInterval, as before events existed.
func TestPollWithoutStateEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intervals(20*time.Millisecond, time.Hour), withoutWatcher)
	cid := e.startVM("polled")
	if err := e.hv.Crash(pod.DomainName(cid)); err != nil {
		t.Fatal(err)
	}
	waitExited(t, e, cid, "the poll to notice the crash")
	if n := e.hv.Watches(); n != 0 {
		t.Errorf("%d watches open on a hypervisor the manager sees without a watcher", n)
	}
}

// TestCloseEndsTheWatch: the manager watches once, and Close (also across
// a restart) leaves no watch, and so no goroutine of it, behind.
func TestCloseEndsTheWatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startVM("w")
	if n := e.hv.Watches(); n != 1 {
		t.Fatalf("Watches() = %d with a manager open, want 1", n)
	}
	e.restart()
	if n := e.hv.Watches(); n != 1 {
		t.Fatalf("Watches() = %d after a restart, want 1", n)
	}
	e.m.Close()
	if n := e.hv.Watches(); n != 0 {
		t.Errorf("Watches() = %d after Close, want 0", n)
	}
}

// TestCloseWaitsForTheWatchToEnd: Close returns only once the hypervisor
// has closed the watch, however slowly it does.
func TestCloseWaitsForTheWatchToEnd(t *testing.T) {
	t.Parallel()
	w := &manualWatcher{notices: make(chan hypervisor.StateEvent), lag: 200 * time.Millisecond}
	e := newEnv(t, withManualWatcher(w))
	e.startVM("slow")
	e.m.Close()
	if !w.ended.Load() {
		t.Error("Close returned before the watch's channel was closed")
	}
}

// TestHypervisorClosedUnderTheMonitor: when the hypervisor ends the watch
// while the manager runs, the monitor falls back to polling and Close
// still returns.
func TestHypervisorClosedUnderTheMonitor(t *testing.T) {
	t.Parallel()
	w := &manualWatcher{notices: make(chan hypervisor.StateEvent)}
	ctx, cancel := context.WithCancel(context.Background())
	closing := &closingWatcher{manualWatcher: w, ctx: ctx}
	e := newEnv(t, intervals(20*time.Millisecond, time.Hour), envOpt{wrap: func(h *simhv.Hypervisor) hypervisor.Hypervisor {
		w.Hypervisor = h
		return closing
	}})
	cid := e.startVM("fallback")
	cancel() // the watch closes
	if err := e.hv.Crash(pod.DomainName(cid)); err != nil {
		t.Fatal(err)
	}
	waitExited(t, e, cid, "the fallback poll to notice the crash")
}

// closingWatcher's watch also ends when its own ctx does.
type closingWatcher struct {
	*manualWatcher
	ctx context.Context
}

func (c *closingWatcher) WatchStates(ctx context.Context) <-chan hypervisor.StateEvent {
	both, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-c.ctx.Done():
		case <-both.Done():
		}
		cancel()
	}()
	return c.manualWatcher.WatchStates(both)
}
