package simhv

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

func TestInjectFault(t *testing.T) {
	f := newFixture(t, Options{})
	f.define("a")
	f.define("b")

	// Counted and per name: two failures on a, none on b, without effect.
	f.hv.InjectFault(OpStart, "a", errBoom, 2)
	for i := range 2 {
		if err := f.hv.Start(f.ctx, "a"); !errors.Is(err, errBoom) {
			t.Fatalf("Start a #%d: %v, want the injected fault", i, err)
		}
		f.wantState("a", hypervisor.StateShutoff, hypervisor.ReasonDefined)
	}
	if err := f.hv.Start(f.ctx, "b"); err != nil {
		t.Fatalf("Start b: %v", err)
	}
	if err := f.hv.Start(f.ctx, "a"); err != nil {
		t.Fatalf("Start a after the faults ran out: %v", err)
	}

	// Forever, any domain, also for calls without a domain.
	f.hv.InjectFault(OpStatus, "", errBoom, Forever)
	f.hv.InjectFault(OpList, "", errBoom, Forever)
	for range 5 {
		for _, name := range []string{"a", "b", "missing"} {
			if _, err := f.hv.Status(f.ctx, name); !errors.Is(err, errBoom) {
				t.Fatalf("Status %s: %v, want the injected fault", name, err)
			}
		}
		if _, err := f.hv.List(f.ctx); !errors.Is(err, errBoom) {
			t.Fatalf("List: %v, want the injected fault", err)
		}
	}
	f.hv.ClearFaults()
	f.wantState("a", hypervisor.StateRunning, hypervisor.ReasonBooted)

	// After effect: the call reports the error, yet the domain stopped.
	f.hv.InjectFaultAfterEffect(OpDestroy, "a", errBoom, 1)
	if err := f.hv.Destroy(f.ctx, "a"); !errors.Is(err, errBoom) {
		t.Fatalf("Destroy a: %v, want the injected fault", err)
	}
	f.wantState("a", hypervisor.StateShutoff, hypervisor.ReasonDestroyed)
	if err := f.hv.Destroy(f.ctx, "a"); err != nil {
		t.Fatalf("second Destroy a: %v", err)
	}

	if got := f.hv.CallCount(OpStart, "a"); got != 3 {
		t.Errorf("CallCount(Start, a) = %d, want 3", got)
	}
	if got := f.hv.CallCount(OpStart, ""); got != 4 {
		t.Errorf("CallCount(Start) = %d, want 4", got)
	}
}

func TestFaultOnEveryOp(t *testing.T) {
	f := newFixture(t, Options{})
	f.start("vm", withAgent)
	f.clock.Advance(testBoot)
	calls := map[Op]func() error{
		OpInfo:     func() error { _, err := f.hv.Info(f.ctx); return err },
		OpDefine:   func() error { _, err := f.hv.Define(f.ctx, domainXML(t, "vm")); return err },
		OpStart:    func() error { return f.hv.Start(f.ctx, "vm") },
		OpUnpause:  func() error { return f.hv.Unpause(f.ctx, "vm") },
		OpShutdown: func() error { return f.hv.Shutdown(f.ctx, "vm") },
		OpDestroy:  func() error { return f.hv.Destroy(f.ctx, "vm") },
		OpUndefine: func() error { return f.hv.Undefine(f.ctx, "vm") },
		OpStatus:   func() error { _, err := f.hv.Status(f.ctx, "vm"); return err },
		OpList:     func() error { _, err := f.hv.List(f.ctx); return err },
		OpXML:      func() error { _, err := f.hv.XML(f.ctx, "vm"); return err },
		OpConsole:  func() error { _, err := f.hv.Console(f.ctx, "vm"); return err },
		OpDisplay:  func() error { _, err := f.hv.Display(f.ctx, "vm"); return err },
		OpStats:    func() error { _, err := f.hv.Stats(f.ctx, "vm"); return err },
		OpResize:   func() error { _, err := f.hv.Sizing(f.ctx, "vm"); return err },
		OpAgentCommand: func() error {
			_, err := f.hv.AgentCommand(f.ctx, "vm", `{"execute":"guest-ping"}`, time.Second)
			return err
		},
		OpSave:     func() error { return f.hv.Save(f.ctx, "vm", filepath.Join(t.TempDir(), "vm.save")) },
		OpRestore:  func() error { return f.hv.Restore(f.ctx, filepath.Join(t.TempDir(), "vm.save"), domainXML(t, "vm")) },
		OpSavedXML: func() error { _, err := f.hv.SavedXML(f.ctx, filepath.Join(t.TempDir(), "vm.save")); return err },
		OpClose:    func() error { return f.hv.Close() },
	}
	if len(calls) != len(Ops) {
		t.Fatalf("test covers %d ops, Ops has %d", len(calls), len(Ops))
	}
	for _, op := range Ops {
		f.hv.InjectFault(op, "", errBoom, 1)
		if err := calls[op](); !errors.Is(err, errBoom) {
			t.Errorf("%s: %v, want the injected fault", op, err)
		}
	}
	f.wantState("vm", hypervisor.StateRunning, hypervisor.ReasonBooted)
}

func TestLatency(t *testing.T) {
	f := newFixture(t, Options{})
	f.define("vm")
	f.hv.SetLatency(OpStart, 3*time.Second)

	// A cancelled call has no effect.
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- f.hv.Start(ctx, "vm") }()
	if err := f.clock.WaitForTimers(f.ctx, 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Start: %v, want context.Canceled", err)
	}
	f.wantState("vm", hypervisor.StateShutoff, hypervisor.ReasonDefined)

	// A patient one succeeds once the latency passed.
	go func() { done <- f.hv.Start(f.ctx, "vm") }()
	if err := f.clock.WaitForTimers(f.ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(3 * time.Second)
	if err := <-done; err != nil {
		t.Fatalf("Start with latency: %v", err)
	}
	st := f.wantState("vm", hypervisor.StateRunning, hypervisor.ReasonBooted)
	if !st.StartedAt.Equal(epoch.Add(3 * time.Second)) {
		t.Errorf("StartedAt %v, want after the latency", st.StartedAt)
	}

	// Latency after the effect: the caller times out, the domain stopped.
	f.clock.Advance(testBoot)
	f.hv.ClearFaults()
	f.hv.SetLatencyAfterEffect(OpDestroy, time.Minute)
	ctx, cancel = context.WithCancel(f.ctx)
	defer cancel()
	go func() { done <- f.hv.Destroy(ctx, "vm") }()
	if err := f.clock.WaitForTimers(f.ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.wantState("vm", hypervisor.StateShutoff, hypervisor.ReasonDestroyed)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Destroy cancelled after effect: %v, want context.Canceled", err)
	}
}
