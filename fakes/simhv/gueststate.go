package simhv

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// GuestMAC is the hardware address of the simulated guest's one NIC, as
// guest-network-get-interfaces reports it.
const GuestMAC = "52:54:00:00:00:01"

// guestState answers the agent commands that change the guest's clock
// and file systems: guest-set-time (the time is recorded, see GuestTimeSet)
// and the guest-fsfreeze-* trio over one simulated file system; and
// guest-network-get-interfaces: lo and eth0.
func (h *Hypervisor) guestState(d *domain, cmd string, raw json.RawMessage) (string, bool, error) {
	switch cmd {
	case "guest-set-time":
		var args struct {
			Time *int64 `json:"time"`
		}
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &args); err != nil {
				return agentError(cmd, "GenericError", "Invalid parameter type for 'time', expected: integer")
			}
		}
		at := h.clock.Now()
		if args.Time != nil {
			at = time.Unix(0, *args.Time)
		}
		d.timeSet = append(d.timeSet, at)
		return `{"return":{}}`, false, nil
	case "guest-network-get-interfaces":
		return `{"return":[{"name":"lo","hardware-address":"00:00:00:00:00:00"},{"name":"eth0","hardware-address":"` + GuestMAC + `"}]}`, false, nil
	case "guest-fsfreeze-freeze":
		if d.frozen {
			return agentError(cmd, "GenericError", "Command guest-fsfreeze-freeze has been disabled: the agent is in frozen state")
		}
		d.frozen = true
		d.freezes++
		return `{"return":1}`, false, nil
	case "guest-fsfreeze-thaw":
		n := 0
		if d.frozen {
			n = 1
		}
		d.frozen = false
		return fmt.Sprintf(`{"return":%d}`, n), false, nil
	default: // guest-fsfreeze-status
		if d.frozen {
			return `{"return":"frozen"}`, false, nil
		}
		return `{"return":"thawed"}`, false, nil
	}
}

// GuestState is what the simulated guest's agent was told in its current
// run: the times set (guest-set-time), the ip commands run through
// guest-exec, whether its file system is frozen and how often it was.
type GuestState struct {
	// Running are the guest-exec processes not yet exited, each its
	// program and arguments.
	Running    []string
	TimeSet    []time.Time
	IPCommands [][]string
	Frozen     bool
	Freezes    int
}

// Guest reports the guest state of the named domain's current run.
func (h *Hypervisor) Guest(name string) (GuestState, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.lookupLocked(name)
	if err != nil {
		return GuestState{}, err
	}
	var running []string
	now := d.uptime(h.clock.Now())
	for _, p := range d.execs {
		if p.doneAt > now {
			running = append(running, p.cmd)
		}
	}
	slices.Sort(running)
	return GuestState{
		Running:    running,
		TimeSet:    append([]time.Time(nil), d.timeSet...),
		IPCommands: append([][]string(nil), d.ipCommands...),
		Frozen:     d.frozen, Freezes: d.freezes,
	}, nil
}
