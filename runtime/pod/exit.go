package pod

import (
	"fmt"
	"time"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

func exitOf(st hypervisor.DomainStatus) (int32, string, string) {
	switch {
	case st.State == hypervisor.StateCrashed || st.Reason == hypervisor.ReasonCrashed:
		code := st.ExitCode
		if code == 0 {
			code = 139
		}
		return code, "Error", "the VM crashed (the guest, or its emulator process was killed)"
	case st.Reason == hypervisor.ReasonShutdown:
		if st.ExitCode != 0 {
			return st.ExitCode, "Error", "the guest powered off"
		}
		return 0, "Completed", "the guest powered off"
	case st.Reason == hypervisor.ReasonDestroyed:
		code := st.ExitCode
		if code == 0 {
			code = 137
		}
		return code, "Error", "the VM was destroyed"
	case st.Reason == hypervisor.ReasonFailed:
		return 128, "Error", "the emulator failed"
	default:
		code := st.ExitCode
		if code == 0 {
			code = 255
		}
		return code, "Error", fmt.Sprintf("the VM stopped (%s)", st.Reason)
	}
}

// markExited sets the exit fields of c (a private copy) and stops its
// console pump.
func (m *Manager) markExited(c *Container, at time.Time, code int32, reason, msg string) {
	if c.State == ContainerExited {
		return
	}
	c.State = ContainerExited
	c.FinishedAt = at
	c.ExitCode = code
	c.Reason = reason
	c.Message = msg
	m.log.Info("container exited", "pod", c.SandboxID, "container", c.ID, "exitCode", code, "reason", reason, "message", msg)
	m.stopConsole(c.ID)
}

func nonZero(t, fallback time.Time) time.Time {
	if t.IsZero() {
		return fallback
	}
	return t
}
