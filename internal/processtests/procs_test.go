package processtests

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// cleanupMargin is how long before go test's -timeout a test stops
// waiting: the timeout's panic runs no t.Cleanup, so a test that waits
// into it leaves its pods, domains and QEMUs behind (and a daemon holding
// the heavy lock's machine). Stopping the pods and killing the QEMUs fits
// in it with room.
const cleanupMargin = 4 * time.Minute

// testDeadline is when the test must give up waiting so that its cleanups
// still run: cleanupMargin before go test's -timeout, or an hour away
// without one.
func testDeadline(t *testing.T) time.Time {
	if d, ok := t.Deadline(); ok {
		return d.Add(-cleanupMargin)
	}
	return time.Now().Add(time.Hour)
}

// until is the earlier of now+d and the test's deadline.
func until(t *testing.T, d time.Duration) time.Time {
	end := time.Now().Add(d)
	if dl := testDeadline(t); dl.Before(end) {
		return dl
	}
	return end
}

// startGroup starts cmd in a process group of its own, killed whole
// (SIGKILL to the group) when the test ends, and killed by the kernel when
// the test process dies first (parent-death signal: even go test's timeout
// panic or a kill of go test leaves no QEMU behind). It returns a channel
// that yields cmd.Wait's result once.
func startGroup(t *testing.T, cmd *exec.Cmd) <-chan error {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd.Path, err)
	}
	exited := make(chan error, 1)
	done := make(chan struct{})
	go func() { err := cmd.Wait(); close(done); exited <- err }()
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		select {
		case <-done:
			// Reaped: its PID, and so the group's id, may be another's now.
		default:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
		}
	})
	return exited
}
