package clock

import (
	"context"
	"testing"
	"time"
)

var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// failAfter bounds every wait in these tests: a clock that never fires
// fails the test with what was awaited instead of hanging until the test
// binary's timeout.
const failAfter = 10 * time.Second

// recv returns the next value of ch, or fails the test after failAfter.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(failAfter):
		t.Fatalf("%s did not happen within %v", what, failAfter)
		panic("unreachable")
	}
}

// advance is c.Advance(d), failing the test if it does not return.
func advance(t *testing.T, c *Fake, d time.Duration) {
	t.Helper()
	within(t, "Advance("+d.String()+")", func() { c.Advance(d) })
}

// within runs f and fails the test if it does not return within failAfter.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	recv(t, done, what+" returning")
}

func TestFakeFiresInOrderAtDueTime(t *testing.T) {
	c := NewFake(epoch)
	var got []time.Duration
	record := func() { got = append(got, c.Now().Sub(epoch)) }
	c.AfterFunc(3*time.Second, record)
	c.AfterFunc(1*time.Second, func() {
		record()
		// A timer scheduled by a firing timer fires in the same Advance.
		c.AfterFunc(time.Second, record)
	})
	stopped := c.AfterFunc(2*time.Second, record)
	if !stopped.Stop() {
		t.Fatal("Stop of a pending timer returned false")
	}
	if stopped.Stop() {
		t.Fatal("second Stop returned true")
	}
	advance(t, c, 500*time.Millisecond)
	if len(got) != 0 {
		t.Fatalf("fired early: %v", got)
	}
	// A timer function that schedules another must not deadlock Advance.
	advance(t, c, 10*time.Second)
	want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}
	if len(got) != len(want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("fired %v, want %v", got, want)
		}
	}
	if now := c.Now().Sub(epoch); now != 10500*time.Millisecond {
		t.Fatalf("Now after advances = %v, want 10.5s", now)
	}
	if c.Pending() != 0 {
		t.Fatalf("Pending = %d, want 0", c.Pending())
	}
}

func TestFakeWaitForTimers(t *testing.T) {
	c := NewFake(epoch)
	done := make(chan time.Time)
	go func() { done <- <-c.After(time.Minute) }()
	ctx, cancel := context.WithTimeout(context.Background(), failAfter)
	defer cancel()
	if err := c.WaitForTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	advance(t, c, time.Minute)
	if got := recv(t, done, "After's delivery after Advance"); !got.Equal(epoch.Add(time.Minute)) {
		t.Fatalf("After delivered %v", got)
	}
	short, cancel2 := context.WithCancel(context.Background())
	cancel2()
	var err error
	within(t, "WaitForTimers with a cancelled context", func() { err = c.WaitForTimers(short, 5) })
	if err == nil {
		t.Fatal("WaitForTimers with a cancelled context returned nil")
	}
}

func TestFakeNonPositiveRunsAtOnce(t *testing.T) {
	c := NewFake(epoch)
	ran := make(chan struct{})
	c.AfterFunc(0, func() { close(ran) })
	recv(t, ran, "an AfterFunc(0) without Advance")
}

func TestRealAfterFunc(t *testing.T) {
	ran := make(chan struct{})
	Real{}.AfterFunc(time.Millisecond, func() { close(ran) })
	recv(t, ran, "Real.AfterFunc(1ms)")
}

func TestFakeSet(t *testing.T) {
	c := NewFake(epoch)
	fired := 0
	c.AfterFunc(time.Hour, func() { fired++ })
	within(t, "Set to the past", func() { c.Set(epoch.Add(-time.Hour)) }) // nothing fires
	if fired != 0 || !c.Now().Equal(epoch.Add(-time.Hour)) {
		t.Fatalf("after Set to the past: fired %d, now %v", fired, c.Now())
	}
	within(t, "Set past a pending timer", func() { c.Set(epoch.Add(2 * time.Hour)) })
	if fired != 1 || c.Since(epoch) != 2*time.Hour {
		t.Fatalf("after Set past the timer: fired %d, now %v", fired, c.Now())
	}
}
