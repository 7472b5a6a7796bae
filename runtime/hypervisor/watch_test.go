package hypervisor_test

import (
	"context"
	"testing"
	"time"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

const deadline = 20 * time.Second

func next(t *testing.T, ch <-chan hypervisor.StateEvent) hypervisor.StateEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(deadline):
		t.Fatal("no notice within the deadline")
	}
	panic("unreachable")
}

func TestNotifierDeliversNames(t *testing.T) {
	var n hypervisor.Notifier
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := n.WatchStates(ctx), n.WatchStates(ctx)
	n.Changed("x")
	n.Changed("y")
	for _, ch := range []<-chan hypervisor.StateEvent{a, b} {
		got := map[string]bool{}
		for len(got) < 2 {
			ev := next(t, ch)
			if ev.Resync || (ev.Name != "x" && ev.Name != "y") {
				t.Fatalf("unexpected notice %+v", ev)
			}
			got[ev.Name] = true
		}
	}
}

func TestNotifierCoalesces(t *testing.T) {
	var n hypervisor.Notifier
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := n.WatchStates(ctx)
	// Nobody reads while a domain changes many times: at most one notice
	// is in flight and one pending.
	for i := 0; i < 1000; i++ {
		n.Changed("x")
	}
	if ev := next(t, ch); ev.Name != "x" {
		t.Fatalf("notice %+v, want x", ev)
	}
	n.Changed("marker")
	seen := 0
	for {
		ev := next(t, ch)
		if ev.Name == "marker" {
			break
		}
		seen++
	}
	if seen > 1 {
		t.Errorf("%d more notices of x after the first; want at most 1 (coalesced)", seen)
	}
}

func TestNotifierOverflowResyncs(t *testing.T) {
	n := hypervisor.Notifier{Buffer: 3}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := n.WatchStates(ctx)
	// At most one batch (<= Buffer names) is in flight while nobody
	// reads, so 2*Buffer+1 distinct names must overflow. Changed never
	// blocks.
	for _, name := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		n.Changed(name)
	}
	for !next(t, ch).Resync {
	}
	n.Changed("after")
	for {
		ev := next(t, ch)
		if ev.Name == "after" {
			break
		}
		if ev.Resync {
			t.Fatal("a second Resync without a second overflow")
		}
	}
}

func TestNotifierResync(t *testing.T) {
	var n hypervisor.Notifier
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := n.WatchStates(ctx)
	n.Changed("x")
	n.Resync()
	for !next(t, ch).Resync {
	}
}

func TestNotifierEnds(t *testing.T) {
	var n hypervisor.Notifier
	ctx, cancel := context.WithCancel(context.Background())
	a := n.WatchStates(ctx)
	b := n.WatchStates(context.Background())
	n.Changed("x") // pending while the watch ends
	cancel()
	for range a {
	}
	if got := n.Watches(); got != 1 {
		t.Errorf("after the context ended: Watches() = %d, want 1", got)
	}
	n.Close()
	for range b {
	}
	if got := n.Watches(); got != 0 {
		t.Errorf("after Close: Watches() = %d, want 0", got)
	}
	n.Changed("y") // no watch: nothing happens
	if _, ok := <-n.WatchStates(context.Background()); ok {
		t.Error("WatchStates after Close: the channel is open")
	}
	n.Close()
}
