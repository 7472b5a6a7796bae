package clock

import (
	"context"
	"testing"
	"time"
)

var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

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
	c.Advance(500 * time.Millisecond)
	if len(got) != 0 {
		t.Fatalf("fired early: %v", got)
	}
	c.Advance(10 * time.Second)
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitForTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	if got := <-done; !got.Equal(epoch.Add(time.Minute)) {
		t.Fatalf("After delivered %v", got)
	}
	short, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := c.WaitForTimers(short, 5); err == nil {
		t.Fatal("WaitForTimers with a cancelled context returned nil")
	}
}

func TestFakeNonPositiveRunsAtOnce(t *testing.T) {
	c := NewFake(epoch)
	ran := make(chan struct{})
	c.AfterFunc(0, func() { close(ran) })
	<-ran
}

func TestRealAfterFunc(t *testing.T) {
	ran := make(chan struct{})
	Real{}.AfterFunc(time.Millisecond, func() { close(ran) })
	<-ran
}

func TestFakeSet(t *testing.T) {
	c := NewFake(epoch)
	fired := 0
	c.AfterFunc(time.Hour, func() { fired++ })
	c.Set(epoch.Add(-time.Hour)) // back in time: nothing fires
	if fired != 0 || !c.Now().Equal(epoch.Add(-time.Hour)) {
		t.Fatalf("after Set to the past: fired %d, now %v", fired, c.Now())
	}
	c.Set(epoch.Add(2 * time.Hour))
	if fired != 1 || c.Since(epoch) != 2*time.Hour {
		t.Fatalf("after Set past the timer: fired %d, now %v", fired, c.Now())
	}
}
