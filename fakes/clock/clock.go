// Package clock provides the time source seam used by podvisor's fakes: the
// real clock and a fake one that tests advance by hand, so that nothing
// timing-dependent needs a sleep.
package clock

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Timer is a pending call scheduled by AfterFunc.
type Timer interface {
	// Stop cancels the call; it reports whether the call was still pending.
	Stop() bool
}

// Clock is a source of time and of delayed calls.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f once d has elapsed. f may run on any goroutine.
	AfterFunc(d time.Duration, f func()) Timer
}

// Real is the wall clock.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// AfterFunc is time.AfterFunc.
func (Real) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// After is time.After.
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Fake is a clock that only moves when Advance or Set is called. Timers fire
// synchronously inside Advance, in order of their due time, each one seeing
// Now() equal to its due time; a timer scheduled by a firing timer is fired in
// the same Advance if it falls due before the target time. This makes tests
// deterministic: when Advance returns, everything due has happened.
//
// A timer created with a non-positive duration runs at once on its own
// goroutine, as time.AfterFunc would.
type Fake struct {
	advance sync.Mutex // serialises Advance and Set
	mu      sync.Mutex
	cond    *sync.Cond // signalled when timers are added
	now     time.Time
	seq     uint64
	timers  timerHeap
}

// NewFake returns a fake clock showing start.
func NewFake(start time.Time) *Fake {
	f := &Fake{now: start}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Since returns the fake time elapsed since t.
func (f *Fake) Since(t time.Time) time.Duration { return f.Now().Sub(t) }

// AfterFunc schedules f at Now()+d.
func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	if d <= 0 {
		go fn()
		return stoppedTimer{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	t := &fakeTimer{clock: f, when: f.now.Add(d), seq: f.seq, fn: fn, index: -1}
	heap.Push(&f.timers, t)
	f.cond.Broadcast()
	return t
}

// After returns a channel that receives the fake time once d has elapsed.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	f.AfterFunc(d, func() { ch <- f.Now() })
	return ch
}

// Advance moves the clock forward by d, firing every timer that falls due on
// the way.
func (f *Fake) Advance(d time.Duration) {
	f.advance.Lock()
	defer f.advance.Unlock()
	f.mu.Lock()
	target := f.now.Add(d)
	f.fireUntilLocked(target)
	if target.After(f.now) {
		f.now = target
	}
	f.mu.Unlock()
}

// Set moves the clock to t, firing the timers due by then. Setting a time in
// the past moves the clock back and fires nothing.
func (f *Fake) Set(t time.Time) {
	f.advance.Lock()
	defer f.advance.Unlock()
	f.mu.Lock()
	f.fireUntilLocked(t)
	f.now = t
	f.mu.Unlock()
}

// fireUntilLocked fires timers due at or before target. Called with f.mu held;
// releases it while a timer's function runs.
func (f *Fake) fireUntilLocked(target time.Time) {
	for len(f.timers) > 0 && !f.timers[0].when.After(target) {
		t := heap.Pop(&f.timers).(*fakeTimer)
		if t.when.After(f.now) {
			f.now = t.when
		}
		f.mu.Unlock()
		t.fn()
		f.mu.Lock()
	}
}

// Pending reports how many timers are waiting to fire.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// WaitForTimers blocks until at least n timers are pending or ctx ends. Tests
// use it to know that a goroutine under test has started waiting before they
// advance the clock.
func (f *Fake) WaitForTimers(ctx context.Context, n int) error {
	stop := context.AfterFunc(ctx, func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	defer stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.timers) < n {
		if err := ctx.Err(); err != nil {
			return err
		}
		f.cond.Wait()
	}
	return nil
}

type fakeTimer struct {
	clock *Fake
	when  time.Time
	seq   uint64
	fn    func()
	index int // position in the heap, -1 when not pending
}

func (t *fakeTimer) Stop() bool {
	f := t.clock
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&f.timers, t.index)
	return true
}

type stoppedTimer struct{}

func (stoppedTimer) Stop() bool { return false }

// timerHeap orders timers by due time, then by creation.
type timerHeap []*fakeTimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].when.Equal(h[j].when) {
		return h[i].seq < h[j].seq
	}
	return h[i].when.Before(h[j].when)
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *timerHeap) Push(x any) {
	t := x.(*fakeTimer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*h = old[:len(old)-1]
	return t
}
