package simhv

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// execProc is a process started by guest-exec. It lives in guest time: a
// "sleep" finishes once the guest has run long enough.
type execProc struct {
	cmd      string        // the program and its arguments, space-separated
	doneAt   time.Duration // guest uptime at exit
	exitCode int
	capture  bool
	out, err []byte
}

type execArgs struct {
	Path          string   `json:"path"`
	Arg           []string `json:"arg"`
	InputData     string   `json:"input-data"`
	CaptureOutput bool     `json:"capture-output"`
}

func (h *Hypervisor) guestExec(d *domain, raw json.RawMessage) (string, bool, error) {
	var args execArgs
	if err := json.Unmarshal(raw, &args); err != nil || args.Path == "" {
		return agentError("guest-exec", "GenericError", "Parameter 'path' is missing")
	}
	input, err := base64.StdEncoding.DecodeString(args.InputData)
	if err != nil {
		return agentError("guest-exec", "GenericError", "Invalid parameter 'input-data': "+err.Error())
	}
	now := d.uptime(h.clock.Now())
	var p *execProc
	ok := true
	if path.Base(args.Path) == "kill" {
		// kill(1) acts on this domain's processes, which runProgram does not see.
		p = killProgram(d, args.Arg, now)
	} else {
		p, ok = runProgram(d.rec.Name, args.Path, args.Arg, input)
	}
	if !ok {
		return agentError("guest-exec", "GenericError", fmt.Sprintf(
			"Guest agent command failed, error was 'Failed to execute child process \u201c%s\u201d (No such file or directory)'", args.Path))
	}
	if path.Base(args.Path) == "ip" {
		d.ipCommands = append(d.ipCommands, append([]string(nil), args.Arg...))
	}
	p.capture = args.CaptureOutput
	p.cmd = strings.Join(append([]string{path.Base(args.Path)}, args.Arg...), " ")
	p.doneAt += now
	if d.execs == nil {
		d.execs = map[int]*execProc{}
		d.nextExecPID = 1000
	}
	d.nextExecPID++
	d.execs[d.nextExecPID] = p
	return fmt.Sprintf(`{"return":{"pid":%d}}`, d.nextExecPID), false, nil
}

func (h *Hypervisor) guestExecStatus(d *domain, raw json.RawMessage) (string, bool, error) {
	var args struct {
		PID *int `json:"pid"`
	}
	if err := json.Unmarshal(raw, &args); err != nil || args.PID == nil {
		return agentError("guest-exec-status", "GenericError", "Parameter 'pid' is missing")
	}
	p := d.execs[*args.PID]
	if p == nil {
		return agentError("guest-exec-status", "GenericError", "Invalid parameter 'pid'")
	}
	type status struct {
		Exited   bool   `json:"exited"`
		ExitCode *int   `json:"exitcode,omitempty"`
		OutData  string `json:"out-data,omitempty"`
		ErrData  string `json:"err-data,omitempty"`
	}
	var reply struct {
		Return status `json:"return"`
	}
	if d.uptime(h.clock.Now()) >= p.doneAt {
		// Like qemu-ga, the status of an exited process is reported once.
		delete(d.execs, *args.PID)
		code := p.exitCode
		reply.Return = status{Exited: true, ExitCode: &code}
		if p.capture {
			reply.Return.OutData = base64.StdEncoding.EncodeToString(p.out)
			reply.Return.ErrData = base64.StdEncoding.EncodeToString(p.err)
		}
	}
	out, err := json.Marshal(reply)
	if err != nil {
		return "", false, fmt.Errorf("encoding guest-exec-status reply: %w", err)
	}
	return string(out), false, nil
}

// runProgram runs one of the simulated guest's programs. ok is false when
// the program does not exist. doneAt is the run time of the program.
func runProgram(hostname, prog string, args []string, input []byte) (p *execProc, ok bool) {
	p = &execProc{}
	switch path.Base(prog) {
	case "sh", "bash":
		if len(args) < 2 || args[0] != "-c" {
			return p, true // an interactive shell with no input exits
		}
		fields := strings.Fields(args[1])
		if len(fields) == 0 {
			return p, true
		}
		if fields[0] == "exit" {
			if len(fields) > 1 {
				code, err := strconv.Atoi(fields[1])
				if err != nil {
					p.err = []byte("sh: 1: exit: Illegal number: " + fields[1] + "\n")
					p.exitCode = 2
					return p, true
				}
				p.exitCode = code & 0xff
			}
			return p, true
		}
		q, found := runProgram(hostname, fields[0], fields[1:], input)
		if !found {
			p.err = []byte("sh: 1: " + fields[0] + ": not found\n")
			p.exitCode = 127
			return p, true
		}
		return q, true
	case "hostname":
		p.out = []byte(hostname + "\n")
	case "echo":
		p.out = []byte(strings.Join(args, " ") + "\n")
	case "true", "ip": // ip: the guest's network configuration always applies
	case "false":
		p.exitCode = 1
	case "cat":
		p.out = append([]byte(nil), input...)
	case "sleep":
		if len(args) != 1 {
			p.err = []byte("sleep: missing operand\n")
			p.exitCode = 1
			return p, true
		}
		secs, err := strconv.ParseFloat(args[0], 64)
		if err != nil || secs < 0 {
			p.err = []byte("sleep: invalid time interval '" + args[0] + "'\n")
			p.exitCode = 1
			return p, true
		}
		p.doneAt = time.Duration(secs * float64(time.Second))
	default:
		return nil, false
	}
	return p, true
}

// killProgram is kill(1) in the guest: `kill [-KILL|-9|-TERM|-15] PID` ends
// a guest-exec process now, its exit code 128 plus the signal's, as a
// shell reports a process killed by a signal.
func killProgram(d *domain, args []string, now time.Duration) *execProc {
	p := &execProc{}
	sig := 15
	if len(args) == 2 {
		switch args[0] {
		case "-KILL", "-9":
			sig = 9
		case "-TERM", "-15":
		default:
			p.err, p.exitCode = []byte("kill: invalid signal "+args[0]+"\n"), 1
			return p
		}
		args = args[1:]
	}
	if len(args) != 1 {
		p.err, p.exitCode = []byte("kill: usage: kill [-KILL|-TERM] PID\n"), 1
		return p
	}
	pid, err := strconv.Atoi(args[0])
	target := d.execs[pid]
	if err != nil || target == nil || target.doneAt <= now {
		p.err, p.exitCode = []byte("kill: ("+args[0]+") - No such process\n"), 1
		return p
	}
	target.doneAt, target.exitCode = now, 128+sig
	return p
}
