package simhv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// ErrAgentUnresponsive is returned (wrapped) when the guest agent does not
// answer: the guest has not finished booting, or it is paused.
var ErrAgentUnresponsive = errors.New("guest agent is not responding")

// AgentVersion is what guest-info reports.
const AgentVersion = "podvisor-sim-agent " + Version

// AgentError is an error reply of the guest agent.
type AgentError struct {
	Command string
	Class   string
	Desc    string
}

func (e *AgentError) Error() string {
	return fmt.Sprintf("internal error: unable to execute QEMU agent command '%s': %s", e.Command, e.Desc)
}

var agentCommands = []string{"guest-exec", "guest-exec-status", "guest-fsfreeze-freeze", "guest-fsfreeze-status", "guest-fsfreeze-thaw",
	"guest-info", "guest-network-get-interfaces", "guest-ping", "guest-set-time", "guest-sync"}

// AgentCommand answers QEMU guest agent commands for a booted domain whose
// XML has the org.qemu.guest_agent.0 virtio channel: guest-ping,
// guest-info, guest-sync, and guest-exec/guest-exec-status running the
// simulated guest's programs (see the package documentation). Other commands get the agent's error JSON as
// the reply together with an *AgentError.
func (h *Hypervisor) AgentCommand(ctx context.Context, name string, command string, timeout time.Duration) (string, error) {
	if err := h.before(ctx, OpAgentCommand, name); err != nil {
		return "", err
	}
	reply, wait, err := h.agent(name, command)
	if wait {
		// A paused guest cannot answer: the caller waits its timeout.
		if werr := h.wait(ctx, timeout); werr != nil {
			return "", fmt.Errorf("guest agent command on domain '%s': %w", name, werr)
		}
	}
	if err != nil {
		return reply, err
	}
	return reply, h.after(ctx, OpAgentCommand, name)
}

func (h *Hypervisor) agent(name, command string) (reply string, wait bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.runningLocked(name)
	if err != nil {
		return "", false, err
	}
	if !d.rec.Run.Agent {
		return "", false, fmt.Errorf("%w: domain '%s' has no guest agent channel (a virtio <channel> with target name %s)",
			hypervisor.ErrUnimplemented, name, AgentChannel)
	}
	if d.rec.State == hypervisor.StatePaused {
		return "", true, fmt.Errorf("%w: domain '%s' is paused", ErrAgentUnresponsive, name)
	}
	if d.bootStep < bootLines {
		return "", false, fmt.Errorf("%w: QEMU guest agent of domain '%s' is not connected (the guest is booting)", ErrAgentUnresponsive, name)
	}
	var req struct {
		Execute   string          `json:"execute"`
		Arguments json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal([]byte(command), &req); err != nil {
		return agentError("", "GenericError", "JSON parse error, "+err.Error())
	}
	switch req.Execute {
	case "":
		return agentError("", "GenericError", "Expected 'execute' in QMP input")
	case "guest-ping":
		return `{"return":{}}`, false, nil
	case "guest-sync":
		var args struct {
			ID *int64 `json:"id"`
		}
		if err := json.Unmarshal(req.Arguments, &args); err != nil || args.ID == nil {
			return agentError(req.Execute, "GenericError", "Parameter 'id' is missing")
		}
		return fmt.Sprintf(`{"return":%d}`, *args.ID), false, nil
	case "guest-info":
		type cmd struct {
			Name            string `json:"name"`
			Enabled         bool   `json:"enabled"`
			SuccessResponse bool   `json:"success-response"`
		}
		var info struct {
			Return struct {
				Version  string `json:"version"`
				Commands []cmd  `json:"supported_commands"`
			} `json:"return"`
		}
		info.Return.Version = AgentVersion
		for _, c := range agentCommands {
			info.Return.Commands = append(info.Return.Commands, cmd{Name: c, Enabled: true, SuccessResponse: true})
		}
		out, err := json.Marshal(info)
		if err != nil {
			return "", false, fmt.Errorf("encoding guest-info reply: %w", err)
		}
		return string(out), false, nil
	case "guest-exec":
		return h.guestExec(d, req.Arguments)
	case "guest-exec-status":
		return h.guestExecStatus(d, req.Arguments)
	case "guest-set-time", "guest-network-get-interfaces", "guest-fsfreeze-freeze", "guest-fsfreeze-thaw", "guest-fsfreeze-status":
		return h.guestState(d, req.Execute, req.Arguments)
	default:
		return agentError(req.Execute, "CommandNotFound", fmt.Sprintf("The command %s has not been found", req.Execute))
	}
}

func agentError(command, class, desc string) (string, bool, error) {
	var reply struct {
		Error struct {
			Class string `json:"class"`
			Desc  string `json:"desc"`
		} `json:"error"`
	}
	reply.Error.Class, reply.Error.Desc = class, desc
	out, err := json.Marshal(reply)
	if err != nil {
		return "", false, fmt.Errorf("encoding agent error: %w", err)
	}
	return string(out), false, &AgentError{Command: command, Class: class, Desc: desc}
}
