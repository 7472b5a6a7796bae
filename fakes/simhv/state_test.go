package simhv

import (
	"errors"
	"github.com/google/go-cmp/cmp"
	"testing"
	"time"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// step is one action on domain "vm" and the status expected after it.
type step struct {
	do         string // define start shutdown destroy undefine pause resume crash advance
	advance    time.Duration
	wantErr    error // nil: success
	wantState  hypervisor.State
	wantReason hypervisor.Reason
	wantExit   int32
}

func TestStateMachine(t *testing.T) {
	const delay = 300 * time.Millisecond
	tests := []struct {
		name     string
		behavior *GuestBehavior
		steps    []step
	}{
		{"start then destroy", nil, []step{
			{do: "define", wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonDefined},
			{do: "start", wantState: hypervisor.StateRunning, wantReason: hypervisor.ReasonBooted},
			{do: "start", wantErr: hypervisor.ErrInvalidState, wantState: hypervisor.StateRunning, wantReason: hypervisor.ReasonBooted},
			{do: "undefine", wantErr: hypervisor.ErrInvalidState, wantState: hypervisor.StateRunning, wantReason: hypervisor.ReasonBooted},
			{do: "destroy", wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonDestroyed, wantExit: ExitCodeDestroyed},
			{do: "destroy", wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonDestroyed, wantExit: ExitCodeDestroyed},
			{do: "shutdown", wantErr: hypervisor.ErrInvalidState, wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonDestroyed, wantExit: ExitCodeDestroyed},
			{do: "start", wantState: hypervisor.StateRunning, wantReason: hypervisor.ReasonBooted},
		}},
		{"cooperating guest shuts down after the delay", &GuestBehavior{ShutdownDelay: delay}, []step{
			{do: "define", wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonDefined},
			{do: "start", wantState: hypervisor.StateRunning, wantReason: hypervisor.ReasonBooted},
			{do: "shutdown", wantState: hypervisor.StateShutdown, wantReason: hypervisor.ReasonUser},
			{do: "advance", advance: delay - 1, wantState: hypervisor.StateShutdown, wantReason: hypervisor.ReasonUser},
			// A second request does not postpone the first.
			{do: "shutdown", wantState: hypervisor.StateShutdown, wantReason: hypervisor.ReasonUser},
			{do: "advance", advance: 1, wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonShutdown, wantExit: 0},
			{do: "undefine"},
		}},
		{"hung guest ignores ACPI until destroyed", &GuestBehavior{IgnoreACPI: true}, []step{
			{do: "define", wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonDefined},
			{do: "start", wantState: hypervisor.StateRunning, wantReason: hypervisor.ReasonBooted},
			{do: "shutdown", wantState: hypervisor.StateRunning, wantReason: hypervisor.ReasonBooted},
			{do: "advance", advance: time.Hour, wantState: hypervisor.StateRunning, wantReason: hypervisor.ReasonBooted},
			{do: "shutdown", wantState: hypervisor.StateRunning, wantReason: hypervisor.ReasonBooted},
			{do: "advance", advance: time.Hour, wantState: hypervisor.StateRunning, wantReason: hypervisor.ReasonBooted},
			{do: "destroy", wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonDestroyed, wantExit: ExitCodeDestroyed},
		}},
		{"crash after", &GuestBehavior{CrashAfter: time.Second}, []step{
			{do: "define", wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonDefined},
			{do: "start", wantState: hypervisor.StateRunning, wantReason: hypervisor.ReasonBooted},
			{do: "advance", advance: time.Second - 1, wantState: hypervisor.StateRunning, wantReason: hypervisor.ReasonBooted},
			{do: "advance", advance: 1, wantState: hypervisor.StateCrashed, wantReason: hypervisor.ReasonCrashed, wantExit: ExitCodeCrashed},
			// A crashed domain is stopped: destroy is a no-op, start boots it again.
			{do: "destroy", wantState: hypervisor.StateCrashed, wantReason: hypervisor.ReasonCrashed, wantExit: ExitCodeCrashed},
			{do: "start", wantState: hypervisor.StateRunning, wantReason: hypervisor.ReasonBooted},
		}},
		{"crash now", nil, []step{
			{do: "define", wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonDefined},
			{do: "crash", wantErr: hypervisor.ErrInvalidState, wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonDefined},
			{do: "start", wantState: hypervisor.StateRunning, wantReason: hypervisor.ReasonBooted},
			{do: "crash", wantState: hypervisor.StateCrashed, wantReason: hypervisor.ReasonCrashed, wantExit: ExitCodeCrashed},
			{do: "undefine"},
		}},
		{"failing start", &GuestBehavior{FailStart: errBoom}, []step{
			{do: "define", wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonDefined},
			{do: "start", wantErr: errBoom, wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonFailed},
		}},
		{"paused guest time stands still", &GuestBehavior{ShutdownDelay: delay, CrashAfter: time.Hour}, []step{
			{do: "define", wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonDefined},
			{do: "pause", wantErr: hypervisor.ErrInvalidState, wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonDefined},
			{do: "start", wantState: hypervisor.StateRunning, wantReason: hypervisor.ReasonBooted},
			{do: "resume", wantErr: hypervisor.ErrInvalidState, wantState: hypervisor.StateRunning, wantReason: hypervisor.ReasonBooted},
			{do: "pause", wantState: hypervisor.StatePaused, wantReason: hypervisor.ReasonUser},
			{do: "pause", wantErr: hypervisor.ErrInvalidState, wantState: hypervisor.StatePaused, wantReason: hypervisor.ReasonUser},
			{do: "crash", wantErr: hypervisor.ErrInvalidState, wantState: hypervisor.StatePaused, wantReason: hypervisor.ReasonUser},
			{do: "shutdown", wantState: hypervisor.StatePaused, wantReason: hypervisor.ReasonUser},
			{do: "advance", advance: 2 * time.Hour, wantState: hypervisor.StatePaused, wantReason: hypervisor.ReasonUser},
			{do: "resume", wantState: hypervisor.StateShutdown, wantReason: hypervisor.ReasonUser},
			{do: "advance", advance: delay, wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonShutdown},
		}},
		{"destroy a paused domain", nil, []step{
			{do: "define", wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonDefined},
			{do: "start", wantState: hypervisor.StateRunning, wantReason: hypervisor.ReasonBooted},
			{do: "pause", wantState: hypervisor.StatePaused, wantReason: hypervisor.ReasonUser},
			{do: "undefine", wantErr: hypervisor.ErrInvalidState, wantState: hypervisor.StatePaused, wantReason: hypervisor.ReasonUser},
			{do: "resume", wantState: hypervisor.StateRunning, wantReason: ReasonUnpaused},
			{do: "pause", wantState: hypervisor.StatePaused, wantReason: hypervisor.ReasonUser},
			{do: "destroy", wantState: hypervisor.StateShutoff, wantReason: hypervisor.ReasonDestroyed, wantExit: ExitCodeDestroyed},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			if tt.behavior != nil {
				f.hv.SetBehavior("vm", *tt.behavior)
			}
			var lastPID int
			for i, s := range tt.steps {
				before := f.clock.Now()
				var err error
				switch s.do {
				case "define":
					_, err = f.hv.Define(f.ctx, domainXML(t, "vm"))
				case "start":
					err = f.hv.Start(f.ctx, "vm")
				case "shutdown":
					err = f.hv.Shutdown(f.ctx, "vm")
				case "destroy":
					err = f.hv.Destroy(f.ctx, "vm")
				case "undefine":
					err = f.hv.Undefine(f.ctx, "vm")
				case "pause":
					err = f.hv.Pause("vm")
				case "resume":
					err = f.hv.Resume("vm")
				case "crash":
					err = f.hv.Crash("vm")
				case "advance":
					f.clock.Advance(s.advance)
				default:
					t.Fatalf("bad step %q", s.do)
				}
				if s.wantErr == nil && err != nil {
					t.Fatalf("step %d %s: %v", i, s.do, err)
				}
				if s.wantErr != nil && !errors.Is(err, s.wantErr) {
					t.Fatalf("step %d %s: error %v, want %v", i, s.do, err, s.wantErr)
				}
				if s.do == "undefine" && err == nil {
					if _, err := f.hv.Status(f.ctx, "vm"); !errors.Is(err, hypervisor.ErrNotFound) {
						t.Fatalf("step %d: Status after undefine: %v, want ErrNotFound", i, err)
					}
					continue
				}
				st := f.status("vm")
				if st.State != s.wantState || st.Reason != s.wantReason || st.ExitCode != s.wantExit {
					t.Fatalf("step %d %s: status %v/%s exit %d, want %v/%s exit %d",
						i, s.do, st.State, st.Reason, st.ExitCode, s.wantState, s.wantReason, s.wantExit)
				}
				switch st.State {
				case hypervisor.StateRunning, hypervisor.StatePaused, hypervisor.StateShutdown:
					if st.PID == 0 || st.StartedAt.IsZero() || !st.FinishedAt.IsZero() {
						t.Fatalf("step %d: active domain with PID %d, StartedAt %v, FinishedAt %v", i, st.PID, st.StartedAt, st.FinishedAt)
					}
					if s.do == "start" && err == nil {
						if st.PID == lastPID || !st.StartedAt.Equal(before) {
							t.Fatalf("step %d: start gave PID %d (previous %d), StartedAt %v (now %v)", i, st.PID, lastPID, st.StartedAt, before)
						}
						lastPID = st.PID
					}
				default:
					if st.PID != 0 {
						t.Fatalf("step %d: stopped domain has PID %d", i, st.PID)
					}
					stopped := st.Reason == hypervisor.ReasonShutdown || st.Reason == hypervisor.ReasonDestroyed || st.Reason == hypervisor.ReasonCrashed
					if stopped == st.FinishedAt.IsZero() {
						t.Fatalf("step %d: %s domain has FinishedAt %v", i, st.Reason, st.FinishedAt)
					}
				}
			}
		})
	}
}

var errBoom = errors.New("boom")

func TestStoppedAtExactDueTime(t *testing.T) {
	f := newFixture(t, Options{DefaultBehavior: GuestBehavior{ShutdownDelay: 250 * time.Millisecond}})
	f.start("vm")
	f.clock.Advance(time.Second)
	if err := f.hv.Shutdown(f.ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour) // one big step: the guest still stops on time
	st := f.wantState("vm", hypervisor.StateShutoff, hypervisor.ReasonShutdown)
	if want := epoch.Add(time.Second + 250*time.Millisecond); !st.FinishedAt.Equal(want) {
		t.Errorf("FinishedAt %v, want %v", st.FinishedAt, want)
	}
	if !st.StartedAt.Equal(epoch) {
		t.Errorf("StartedAt %v, want %v", st.StartedAt, epoch)
	}
}

func TestMissingDomain(t *testing.T) {
	f := newFixture(t, Options{})
	calls := map[string]func() error{
		"Start":    func() error { return f.hv.Start(f.ctx, "nope") },
		"Shutdown": func() error { return f.hv.Shutdown(f.ctx, "nope") },
		"Destroy":  func() error { return f.hv.Destroy(f.ctx, "nope") },
		"Undefine": func() error { return f.hv.Undefine(f.ctx, "nope") },
		"Status":   func() error { _, err := f.hv.Status(f.ctx, "nope"); return err },
		"XML":      func() error { _, err := f.hv.XML(f.ctx, "nope"); return err },
		"Console":  func() error { _, err := f.hv.Console(f.ctx, "nope"); return err },
		"Stats":    func() error { _, err := f.hv.Stats(f.ctx, "nope"); return err },
		"Agent": func() error {
			_, err := f.hv.AgentCommand(f.ctx, "nope", `{"execute":"guest-ping"}`, time.Second)
			return err
		},
		"Pause":  func() error { return f.hv.Pause("nope") },
		"Resume": func() error { return f.hv.Resume("nope") },
		"Crash":  func() error { return f.hv.Crash("nope") },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			if !errors.Is(err, hypervisor.ErrNotFound) {
				t.Fatalf("error %v, want ErrNotFound", err)
			}
		})
	}
}

func TestStats(t *testing.T) {
	f := newFixture(t, Options{})
	f.define("vm")
	if _, err := f.hv.Stats(f.ctx, "vm"); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("Stats of a defined domain: %v, want ErrInvalidState", err)
	}
	if err := f.hv.Start(f.ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(5 * time.Second)
	if err := f.hv.Pause("vm"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	if err := f.hv.Resume("vm"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(5 * time.Second)
	st, err := f.hv.Stats(f.ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	// 10 s of guest time on 2 vCPUs at 10% each; the hour paused counts
	// for nothing.
	want := hypervisor.Stats{Timestamp: f.clock.Now(), CPUTime: 2 * time.Second,
		MemoryBytes: 128 << 20, MemoryLimitBytes: 512 << 20,
		Memory: hypervisor.MemoryStats{FromGuest: true, WorkingSetBytes: 128 << 20, UsageBytes: 256 << 20, CacheBytes: 128 << 20, RSSBytes: 276 << 20},
		Disks: []hypervisor.DiskStats{{Target: "vda", Path: "/var/lib/podvisor/vm.qcow2",
			ReadBytes: 2000 << 12, ReadOps: 2000, WriteBytes: 2000 << 10, WriteOps: 500}},
		Interfaces: []hypervisor.InterfaceStats{{Name: "eth0", RxBytes: 15000, RxPackets: 150, TxBytes: 10000, TxPackets: 100}},
	}
	if d := cmp.Diff(want, st); d != "" {
		t.Errorf("Stats (-want +got):\n%s", d)
	}
	f.clock.Advance(time.Second)
	later, err := f.hv.Stats(f.ctx, "vm")
	if err != nil || later.CPUTime <= st.CPUTime || later.Interfaces[0].RxBytes <= st.Interfaces[0].RxBytes || later.Disks[0].WriteBytes <= st.Disks[0].WriteBytes {
		t.Errorf("a second later: CPU, network and disk counters did not grow: %+v (%v)", later, err)
	}
	if err := f.hv.Destroy(f.ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.hv.Stats(f.ctx, "vm"); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("Stats of a destroyed domain: %v, want ErrInvalidState", err)
	}
}

func TestBehaviorChanges(t *testing.T) {
	f := newFixture(t, Options{DefaultBehavior: GuestBehavior{IgnoreACPI: true}})
	f.start("vm")
	f.clock.Advance(time.Minute)
	// A CrashAfter already passed crashes the guest at once.
	f.hv.SetBehavior("vm", GuestBehavior{CrashAfter: time.Second})
	f.wantState("vm", hypervisor.StateCrashed, hypervisor.ReasonCrashed)

	f.hv.ResetBehavior("vm")
	if err := f.hv.Start(f.ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	if err := f.hv.Shutdown(f.ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	f.wantState("vm", hypervisor.StateRunning, hypervisor.ReasonBooted) // default: hung
}

func TestInfoAndClose(t *testing.T) {
	f := newFixture(t, Options{})
	info, err := f.hv.Info(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info != (hypervisor.Info{Name: "sim", Version: Version, Accelerator: "sim", AcceleratorReason: SimAcceleratorReason}) {
		t.Errorf("Info = %+v", info)
	}
	f.start("vm")
	if err := f.hv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.hv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := f.hv.Status(f.ctx, "vm"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Status after Close: %v, want ErrClosed", err)
	}
	if _, err := f.hv.List(f.ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("List after Close: %v, want ErrClosed", err)
	}
}
