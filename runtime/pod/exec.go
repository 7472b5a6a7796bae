package pod

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// ExecSync runs cmd in a running VM through the QEMU guest agent (guest-exec)
// and returns its output and exit code. It needs an agent in the guest;
// without one the error says so. timeout 0 means no limit besides ctx.
func (m *Manager) ExecSync(ctx context.Context, id string, cmd []string, timeoutSeconds int64) ([]byte, []byte, int32, error) {
	c, err := m.ContainerStatus(ctx, id)
	if err != nil {
		return nil, nil, 0, err
	}
	if c.State != ContainerRunning {
		return nil, nil, 0, errdefs.FailedPreconditionf("container %s is %s: commands run only in a running VM", c.ID, c.State)
	}
	if timeoutSeconds <= 0 {
		// No limit asked: still do not wait forever for an agent that
		// never comes.
		timeoutSeconds = 120
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(timeoutSeconds)*time.Second)
	defer cancel()
	return m.agentExec(ctx, c.DomainName, cmd, nil)
}

// Exec is ExecSync for the streaming server: stdin is read to its end (at
// most the stdin limit) and passed to the command, output is written when it
// has finished (the guest agent has no interactive mode).
func (m *Manager) Exec(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int32, error) {
	c, err := m.ContainerStatus(ctx, id)
	if err != nil {
		return 0, err
	}
	if c.State != ContainerRunning {
		return 0, errdefs.FailedPreconditionf("container %s is %s: commands run only in a running VM", c.ID, c.State)
	}
	input, err := readStdin(stdin, m.cfg.ExecStdinLimit)
	if err != nil {
		return 0, err
	}
	out, errOut, code, err := m.agentExec(ctx, c.DomainName, cmd, input)
	if err != nil {
		return 0, err
	}
	stdout.Write(out)
	stderr.Write(errOut)
	return code, nil
}

// DefaultExecStdinLimit is the most stdin Exec passes to a command unless
// configured otherwise, and MaxExecStdinLimit the most it can: the guest
// agent takes stdin whole, base64-encoded in one JSON command, and libvirt
// carries that command as one RPC string of at most 4 MiB (REMOTE_STRING_MAX),
// which fits 3 MiB once encoded.
const (
	DefaultExecStdinLimit = 1 << 20
	MaxExecStdinLimit     = 3<<20 - 64<<10
)

// readStdin reads stdin to its end, failing once it passes limit bytes
// without reading (or holding) more than that: the client's input stays in
// its pipe, not in the daemon's memory.
func readStdin(stdin io.Reader, limit int64) ([]byte, error) {
	if stdin == nil {
		return nil, nil
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(stdin, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading exec input: %w", err)
	}
	if n > limit {
		return nil, errdefs.InvalidArgumentf("exec: stdin is larger than %d bytes, the most podvisor passes to a command in a VM (the guest agent takes it whole; podvisor's --exec-stdin-limit): copy large files over the pod network or through a volume", limit)
	}
	return buf.Bytes(), nil
}

type agentReply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

func (m *Manager) agentCall(ctx context.Context, domain string, command any) (json.RawMessage, error) {
	req, err := json.Marshal(command)
	if err != nil {
		return nil, err
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	raw, err := m.hv.AgentCommand(ctx, domain, string(req), timeout)
	// A guest that is still booting has no agent yet: wait for it within
	// the call's deadline (exec probes start while the VM boots).
	for err != nil && raw == "" && errors.Is(err, errdefs.ErrUnavailable) {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("guest agent of VM %s did not answer before the deadline: %w", domain, err)
		case <-time.After(500 * time.Millisecond):
		}
		raw, err = m.hv.AgentCommand(ctx, domain, string(req), timeout)
	}
	if err != nil && raw == "" {
		if errors.Is(err, hypervisor.ErrUnimplemented) {
			return nil, errdefs.Unimplementedf("exec: VM %s has no guest agent channel: %w", domain, err)
		}
		return nil, fmt.Errorf("guest agent of VM %s: %w", domain, err)
	}
	var reply agentReply
	if jerr := json.Unmarshal([]byte(raw), &reply); jerr != nil {
		return nil, fmt.Errorf("guest agent of VM %s answered %q: %w", domain, raw, jerr)
	}
	if reply.Error != nil {
		return nil, fmt.Errorf("guest agent of VM %s: %s: %s", domain, reply.Error.Class, reply.Error.Desc)
	}
	return reply.Return, nil
}

func (m *Manager) agentExec(ctx context.Context, domain string, cmd []string, input []byte) ([]byte, []byte, int32, error) {
	if len(cmd) == 0 {
		return nil, nil, 0, errdefs.InvalidArgumentf("exec: a command is required")
	}
	args := map[string]any{"path": cmd[0], "arg": cmd[1:], "capture-output": true}
	if len(input) > 0 {
		args["input-data"] = base64.StdEncoding.EncodeToString(input)
	}
	ret, err := m.agentCall(ctx, domain, map[string]any{"execute": "guest-exec", "arguments": args})
	if err != nil {
		return nil, nil, 0, err
	}
	var started struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(ret, &started); err != nil {
		return nil, nil, 0, fmt.Errorf("guest-exec reply %s: %w", ret, err)
	}
	wait := 20 * time.Millisecond
	for {
		ret, err := m.agentCall(ctx, domain, map[string]any{"execute": "guest-exec-status", "arguments": map[string]any{"pid": started.PID}})
		if err != nil {
			return nil, nil, 0, err
		}
		var st struct {
			Exited   bool   `json:"exited"`
			ExitCode int32  `json:"exitcode"`
			OutData  string `json:"out-data"`
			ErrData  string `json:"err-data"`
		}
		if err := json.Unmarshal(ret, &st); err != nil {
			return nil, nil, 0, fmt.Errorf("guest-exec-status reply %s: %w", ret, err)
		}
		if st.Exited {
			out, err1 := base64.StdEncoding.DecodeString(st.OutData)
			errOut, err2 := base64.StdEncoding.DecodeString(st.ErrData)
			if err := errors.Join(err1, err2); err != nil {
				return nil, nil, 0, fmt.Errorf("decoding guest-exec output: %w", err)
			}
			return out, errOut, st.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			m.killGuestProcess(ctx, domain, started.PID)
			return nil, nil, 0, fmt.Errorf("waiting for %q in VM %s: %w", cmd[0], domain, ctx.Err())
		case <-time.After(wait):
		}
		if wait < 500*time.Millisecond {
			wait *= 2
		}
	}
}

// killGuestProcess ends a command whose exec timed out or was cancelled,
// as containerd kills an exec's process at its timeout. The guest agent
// protocol has no kill, so a second guest-exec runs kill(1) in the guest;
// both statuses are then read once so that the agent forgets them. Best
// effort, bounded: the exec has already failed.
func (m *Manager) killGuestProcess(ctx context.Context, domain string, pid int) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	log := m.log.With("domain", domain, "pid", pid)
	ret, err := m.agentCall(ctx, domain, map[string]any{"execute": "guest-exec",
		"arguments": map[string]any{"path": "kill", "arg": []string{"-KILL", strconv.Itoa(pid)}}})
	var killer struct {
		PID int `json:"pid"`
	}
	if err == nil {
		err = json.Unmarshal(ret, &killer)
	}
	if err != nil {
		log.Warn("ending a timed-out exec in the guest", "err", err)
		return
	}
	for _, p := range []int{killer.PID, pid} {
		_, _ = m.agentCall(ctx, domain, map[string]any{"execute": "guest-exec-status", "arguments": map[string]any{"pid": p}})
	}
}
