package libvirt

import (
	"github.com/podvisor/podvisor/runtime/hypervisor"
	lv "libvirt.org/go/libvirt"
)

// Exit codes reported in DomainStatus.ExitCode; the same as the simulated
// hypervisor's so that the pod layer reads both alike.
const (
	exitCodeShutdown  int32 = 0   // the guest powered off
	exitCodeDestroyed int32 = 137 // 128+SIGKILL: stopped by a hard stop
	exitCodeCrashed   int32 = 139 // 128+SIGSEGV: the guest or emulator crashed
	exitCodeFailed    int32 = 1   // the emulator failed or stopped otherwise
)

// mapState turns virDomainGetState's state and reason into podvisor's.
// Reasons without a hypervisor constant keep libvirt's name.
func mapState(state lv.DomainState, reason int) (hypervisor.State, hypervisor.Reason) {
	switch state {
	case lv.DOMAIN_RUNNING, lv.DOMAIN_BLOCKED:
		return hypervisor.StateRunning, runningReason(lv.DomainRunningReason(reason))
	case lv.DOMAIN_PAUSED:
		return hypervisor.StatePaused, pausedReason(lv.DomainPausedReason(reason))
	case lv.DOMAIN_PMSUSPENDED:
		return hypervisor.StatePaused, "pmsuspended"
	case lv.DOMAIN_SHUTDOWN:
		return hypervisor.StateShutdown, hypervisor.ReasonUser
	case lv.DOMAIN_SHUTOFF:
		return hypervisor.StateShutoff, shutoffReason(lv.DomainShutoffReason(reason))
	case lv.DOMAIN_CRASHED:
		if lv.DomainCrashedReason(reason) == lv.DOMAIN_CRASHED_PANICKED {
			return hypervisor.StateCrashed, "panicked"
		}
		return hypervisor.StateCrashed, hypervisor.ReasonCrashed
	default:
		return hypervisor.StateUnknown, hypervisor.ReasonUnknown
	}
}

func runningReason(r lv.DomainRunningReason) hypervisor.Reason {
	switch r {
	case lv.DOMAIN_RUNNING_BOOTED:
		return hypervisor.ReasonBooted
	case lv.DOMAIN_RUNNING_MIGRATED:
		return "migrated"
	case lv.DOMAIN_RUNNING_RESTORED:
		return "restored"
	case lv.DOMAIN_RUNNING_FROM_SNAPSHOT:
		return "from snapshot"
	case lv.DOMAIN_RUNNING_UNPAUSED:
		return "unpaused"
	case lv.DOMAIN_RUNNING_MIGRATION_CANCELED:
		return "migration canceled"
	case lv.DOMAIN_RUNNING_SAVE_CANCELED:
		return "save canceled"
	case lv.DOMAIN_RUNNING_WAKEUP:
		return "wakeup"
	case lv.DOMAIN_RUNNING_CRASHED:
		return hypervisor.ReasonCrashed
	default:
		return hypervisor.ReasonUnknown
	}
}

func pausedReason(r lv.DomainPausedReason) hypervisor.Reason {
	switch r {
	case lv.DOMAIN_PAUSED_USER:
		return hypervisor.ReasonUser
	case lv.DOMAIN_PAUSED_IOERROR:
		return "ioerror"
	case lv.DOMAIN_PAUSED_WATCHDOG:
		return "watchdog"
	case lv.DOMAIN_PAUSED_SHUTTING_DOWN:
		return "shutting down"
	case lv.DOMAIN_PAUSED_CRASHED:
		return hypervisor.ReasonCrashed
	case lv.DOMAIN_PAUSED_STARTING_UP:
		return "starting up"
	case lv.DOMAIN_PAUSED_MIGRATION, lv.DOMAIN_PAUSED_SAVE, lv.DOMAIN_PAUSED_DUMP, lv.DOMAIN_PAUSED_SNAPSHOT:
		return "migration/save/dump/snapshot"
	default:
		return hypervisor.ReasonUnknown
	}
}

// shutoffReason: libvirt has no "defined" reason; a domain that was defined
// and never started reports unknown, which podvisor calls defined. The
// caller corrects this when it saw the domain run.
func shutoffReason(r lv.DomainShutoffReason) hypervisor.Reason {
	switch r {
	case lv.DOMAIN_SHUTOFF_SHUTDOWN:
		return hypervisor.ReasonShutdown
	case lv.DOMAIN_SHUTOFF_DESTROYED:
		return hypervisor.ReasonDestroyed
	case lv.DOMAIN_SHUTOFF_CRASHED:
		return hypervisor.ReasonCrashed
	case lv.DOMAIN_SHUTOFF_FAILED:
		return hypervisor.ReasonFailed
	case lv.DOMAIN_SHUTOFF_MIGRATED:
		return "migrated"
	case lv.DOMAIN_SHUTOFF_SAVED:
		return "saved"
	case lv.DOMAIN_SHUTOFF_FROM_SNAPSHOT:
		return "from snapshot"
	case lv.DOMAIN_SHUTOFF_DAEMON:
		return "daemon"
	default:
		return hypervisor.ReasonDefined
	}
}

// stoppedEventReason maps the detail of a lifecycle STOPPED event.
func stoppedEventReason(d lv.DomainEventStoppedDetailType) hypervisor.Reason {
	switch d {
	case lv.DOMAIN_EVENT_STOPPED_SHUTDOWN:
		return hypervisor.ReasonShutdown
	case lv.DOMAIN_EVENT_STOPPED_DESTROYED:
		return hypervisor.ReasonDestroyed
	case lv.DOMAIN_EVENT_STOPPED_CRASHED:
		return hypervisor.ReasonCrashed
	case lv.DOMAIN_EVENT_STOPPED_FAILED:
		return hypervisor.ReasonFailed
	case lv.DOMAIN_EVENT_STOPPED_MIGRATED:
		return "migrated"
	case lv.DOMAIN_EVENT_STOPPED_SAVED:
		return "saved"
	case lv.DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT:
		return "from snapshot"
	default:
		return hypervisor.ReasonUnknown
	}
}

// exitCode is the exit code reported for a domain stopped for reason r.
func exitCode(r hypervisor.Reason) int32 {
	switch r {
	case hypervisor.ReasonShutdown:
		return exitCodeShutdown
	case hypervisor.ReasonDestroyed:
		return exitCodeDestroyed
	case hypervisor.ReasonCrashed, "panicked":
		return exitCodeCrashed
	default:
		return exitCodeFailed
	}
}
