package hypervisor

import (
	"context"
	"sync"
)

// DefaultWatchBuffer is how many distinct domains a watch holds notices for,
// while its reader is busy, before it gives up on them and sends Resync
// instead.
const DefaultWatchBuffer = 4096

// Notifier implements StateWatcher for hypervisor implementations: they
// call Changed when a domain's state changes and Resync when they may have
// missed changes. It never blocks the caller: each watch keeps a set of
// changed names, bounded by Buffer, and a goroutine per watch hands them to
// its reader; a watch whose set overflows drops it and sends one Resync.
// The zero value is ready to use.
type Notifier struct {
	// Buffer bounds each watch's set of pending names; zero means
	// DefaultWatchBuffer. Set it before the first Watch.
	Buffer int

	mu      sync.Mutex
	watches map[*watch]struct{}
	closed  bool
}

type watch struct {
	mu      sync.Mutex
	pending map[string]struct{}
	resync  bool
	limit   int

	wake chan struct{} // capacity 1: something is pending
	done chan struct{} // closed by Notifier.Close
	out  chan StateEvent
}

// WatchStates implements StateWatcher. After Close it returns a closed
// channel.
func (n *Notifier) WatchStates(ctx context.Context) <-chan StateEvent {
	limit := n.Buffer
	if limit <= 0 {
		limit = DefaultWatchBuffer
	}
	w := &watch{
		pending: map[string]struct{}{},
		limit:   limit,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		out:     make(chan StateEvent),
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		close(w.out)
		return w.out
	}
	if n.watches == nil {
		n.watches = map[*watch]struct{}{}
	}
	n.watches[w] = struct{}{}
	n.mu.Unlock()
	go w.run(ctx, n)
	return w.out
}

// Changed notes that the named domain's state changed.
func (n *Notifier) Changed(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for w := range n.watches {
		w.add(name)
	}
}

// Resync tells every watch that changes may have been missed.
func (n *Notifier) Resync() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for w := range n.watches {
		w.overflow()
	}
}

// Watches reports how many watches are open (for tests and metrics).
func (n *Notifier) Watches() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.watches)
}

// Close ends every watch (their channels close) and makes later
// WatchStates return closed channels.
func (n *Notifier) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.closed = true
	for w := range n.watches {
		close(w.done)
	}
}

func (n *Notifier) remove(w *watch) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.watches, w)
}

func (w *watch) add(name string) {
	w.mu.Lock()
	switch {
	case w.resync:
		// A resync is due; it covers this change.
	case len(w.pending) >= w.limit:
		w.resync, w.pending = true, map[string]struct{}{}
	default:
		w.pending[name] = struct{}{}
	}
	w.mu.Unlock()
	w.poke()
}

func (w *watch) overflow() {
	w.mu.Lock()
	w.resync, w.pending = true, map[string]struct{}{}
	w.mu.Unlock()
	w.poke()
}

func (w *watch) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run hands pending notices to the reader until ctx ends or the Notifier
// closes. The watch leaves the Notifier before its channel closes.
func (w *watch) run(ctx context.Context, n *Notifier) {
	defer close(w.out)
	defer n.remove(w)
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.done:
			return
		case <-w.wake:
		}
		w.mu.Lock()
		resync, pending := w.resync, w.pending
		w.resync, w.pending = false, map[string]struct{}{}
		w.mu.Unlock()
		var batch []StateEvent
		if resync {
			batch = []StateEvent{{Resync: true}}
		} else {
			batch = make([]StateEvent, 0, len(pending))
			for name := range pending {
				batch = append(batch, StateEvent{Name: name})
			}
		}
		for _, ev := range batch {
			select {
			case w.out <- ev:
			case <-ctx.Done():
				return
			case <-w.done:
				return
			}
		}
	}
}
