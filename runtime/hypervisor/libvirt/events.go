package libvirt

import (
	"sync"
	"time"

	"github.com/podvisor/podvisor/runtime/hypervisor"
	lv "libvirt.org/go/libvirt"
)

// record is what podvisor saw of one domain's lifecycle. libvirt keeps no
// start or stop times, so they come from lifecycle events (or, failing
// that, from the first observation).
type record struct {
	startedAt  time.Time
	finishedAt time.Time
	stopReason hypervisor.Reason // set once it stopped after running
}

// recorder holds lifecycle records by domain name.
type recorder struct {
	mu  sync.Mutex
	now func() time.Time
	m   map[string]*record
}

func newRecorder() *recorder {
	return &recorder{now: time.Now, m: map[string]*record{}}
}

func (r *recorder) get(name string) *record {
	rec := r.m[name]
	if rec == nil {
		rec = &record{}
		r.m[name] = rec
	}
	return rec
}

func (r *recorder) started(name string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.get(name)
	if !rec.startedAt.IsZero() && rec.finishedAt.IsZero() {
		// Already known running (recorded by Start or a first
		// observation): the event is about the same run.
		return
	}
	rec.startedAt, rec.finishedAt, rec.stopReason = at, time.Time{}, ""
}

func (r *recorder) stopped(name string, at time.Time, reason hypervisor.Reason) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.get(name)
	if rec.finishedAt.IsZero() || rec.finishedAt.Before(rec.startedAt) {
		rec.finishedAt = at
	}
	rec.stopReason = reason
}

func (r *recorder) forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, name)
}

// fill completes st (state and reason from libvirt) with what was recorded.
// startHint is when the running emulator started (zero if unknown).
func (r *recorder) fill(st *hypervisor.DomainStatus, startHint time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.m[st.Name]
	switch st.State {
	case hypervisor.StateRunning, hypervisor.StatePaused, hypervisor.StateShutdown:
		if rec == nil || rec.startedAt.IsZero() || !rec.finishedAt.IsZero() {
			// A start podvisor did not see (it or libvirtd restarted).
			rec = r.get(st.Name)
			rec.startedAt = startHint
			if rec.startedAt.IsZero() {
				rec.startedAt = r.now()
			}
			rec.finishedAt, rec.stopReason = time.Time{}, ""
		}
		st.StartedAt = rec.startedAt
	case hypervisor.StateShutoff, hypervisor.StateCrashed:
		if rec == nil {
			// Never seen running: nothing to add. A shut off domain whose
			// reason libvirt forgot (libvirtd restarted) stays "defined".
			return
		}
		if st.Reason == hypervisor.ReasonDefined {
			if rec.stopReason == "" && rec.startedAt.IsZero() {
				return
			}
			// libvirtd restarted after the stop and forgot the reason.
			st.Reason = rec.stopReason
			if st.Reason == "" {
				st.Reason = hypervisor.ReasonUnknown
			}
		}
		if !rec.startedAt.IsZero() && rec.finishedAt.IsZero() {
			// The stop event was missed: the first observation dates it.
			rec.finishedAt = r.now()
			rec.stopReason = st.Reason
		}
		st.StartedAt, st.FinishedAt = rec.startedAt, rec.finishedAt
		st.ExitCode = exitCode(st.Reason)
	}
}

// onLifecycle records starts and stops and tells watchers of every change
// of state; it runs on libvirt's event loop.
func (h *Hypervisor) onLifecycle(_ *lv.Connect, d *lv.Domain, ev *lv.DomainEventLifecycle) {
	name, err := d.GetName()
	if err != nil {
		return
	}
	if ev.Event != lv.DOMAIN_EVENT_DEFINED {
		// After recording, so that a watcher's Status sees the times.
		defer h.watchers.Changed(name)
	}
	now := time.Now()
	switch ev.Event {
	case lv.DOMAIN_EVENT_STARTED:
		h.rec.started(name, now)
	case lv.DOMAIN_EVENT_STOPPED:
		reason := stoppedEventReason(lv.DomainEventStoppedDetailType(ev.Detail))
		h.rec.stopped(name, now, reason)
		h.log.Info("domain stopped", "domain", name, "reason", reason)
	case lv.DOMAIN_EVENT_CRASHED:
		h.rec.stopped(name, now, hypervisor.ReasonCrashed)
		h.log.Warn("domain crashed", "domain", name)
	case lv.DOMAIN_EVENT_UNDEFINED:
		h.rec.forget(name)
	}
}
