package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxOutput caps captured output per stream, as qemu-ga does (16 MiB).
const maxOutput = 16 << 20

// agent answers QEMU guest agent commands: one JSON object a line in, one
// a line out (https://www.qemu.org/docs/master/interop/qemu-ga-ref.html).
type agent struct {
	mu    sync.Mutex
	execs map[int]*process
	// shutdown runs for guest-shutdown (mode powerdown, halt or reboot).
	shutdown func(mode string) error
	// now is the clock of guest-get-time.
	now func() time.Time
	// setTime sets the clock for guest-set-time; freeze and thaw freeze
	// and thaw the file systems for guest-fsfreeze-* and return how many.
	setTime      func(time.Time) error
	freeze, thaw func() (int, error)
	frozen       bool
	// cpuDir is the CPUs' sysfs directory for guest-get-vcpus and
	// guest-set-vcpus; empty (outside the guest agent): they are refused.
	cpuDir string
}

type process struct {
	done     chan struct{}
	exitCode int
	signal   int
	out, err *capped
	capture  bool
}

func newAgent() *agent {
	return &agent{
		execs: map[int]*process{},
		// Only the agent subcommand (in the guest) powers off: a test or
		// fuzz run of this code on a host must never.
		shutdown: func(string) error { return errors.New("shutdown is disabled outside the guest agent") },
		now:      time.Now,
		setTime:  func(time.Time) error { return errors.New("setting the clock is disabled outside the guest agent") },
		freeze:   func() (int, error) { return 0, errors.New("freezing is disabled outside the guest agent") },
		thaw:     func() (int, error) { return 0, nil },
	}
}

// busyboxShutdown asks busybox init to stop the guest.
func busyboxShutdown(mode string) error {
	prog := map[string]string{"powerdown": "poweroff", "halt": "halt", "reboot": "reboot"}[mode]
	return exec.Command(prog).Start()
}

type request struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id,omitempty"`
}

type agentErr struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *agentErr) Error() string { return e.Desc }

func genericErr(format string, args ...any) *agentErr {
	return &agentErr{Class: "GenericError", Desc: fmt.Sprintf(format, args...)}
}

// noReply is returned by commands that send no answer on success
// (guest-shutdown), like qemu-ga.
var noReply = errors.New("no reply")

// serve handles requests from r until it ends. A 0xFF byte resets the
// parser: clients send one before guest-sync-delimited to flush a partial
// request.
func (a *agent) serve(r io.Reader, w io.Writer) error {
	br := bufio.NewReader(r)
	var line []byte
	for {
		b, err := br.ReadByte()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case b == 0xFF:
			line = line[:0]
		case b == '\n':
			if reply := a.handle(line); reply != nil {
				if _, err := w.Write(reply); err != nil {
					return fmt.Errorf("writing reply: %w", err)
				}
			}
			line = line[:0]
		case len(line) < 64<<20:
			line = append(line, b)
		}
	}
}

// handle answers one request line; nil means no reply.
func (a *agent) handle(line []byte) []byte {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil
	}
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return encode(nil, nil, genericErr("JSON parse error, %v", err), false)
	}
	if req.Execute == "" {
		return encode(req.ID, nil, genericErr("Expected 'execute' in the request"), false)
	}
	ret, err := a.dispatch(req)
	if errors.Is(err, noReply) {
		return nil
	}
	var ae *agentErr
	if err != nil && !errors.As(err, &ae) {
		ae = genericErr("%v", err)
	}
	if ae != nil {
		return encode(req.ID, nil, ae, false)
	}
	return encode(req.ID, ret, nil, req.Execute == "guest-sync-delimited")
}

func encode(id json.RawMessage, ret any, e *agentErr, delimited bool) []byte {
	var m = map[string]any{}
	if e != nil {
		m["error"] = e
	} else {
		m["return"] = ret
	}
	if len(id) > 0 {
		m["id"] = id
	}
	b, err := json.Marshal(m)
	if err != nil {
		b, _ = json.Marshal(map[string]any{"error": genericErr("encoding the reply: %v", err)})
	}
	b = append(b, '\n')
	if delimited {
		b = append([]byte{0xFF}, b...)
	}
	return b
}

var commands = []string{
	"guest-exec", "guest-exec-status", "guest-fsfreeze-freeze", "guest-fsfreeze-status", "guest-fsfreeze-thaw",
	"guest-get-osinfo", "guest-get-time", "guest-get-vcpus", "guest-info",
	"guest-network-get-interfaces", "guest-ping", "guest-set-time", "guest-set-vcpus", "guest-shutdown", "guest-sync", "guest-sync-delimited",
}

func (a *agent) dispatch(req request) (any, error) {
	args := req.Arguments
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	switch req.Execute {
	case "guest-sync", "guest-sync-delimited":
		var p struct {
			ID *json.Number `json:"id"`
		}
		if err := strictArgs(args, &p); err != nil || p.ID == nil {
			return nil, &agentErr{Class: "GenericError", Desc: "Parameter 'id' is missing"}
		}
		return p.ID, nil
	case "guest-ping":
		return struct{}{}, nil
	case "guest-info":
		type cmd struct {
			Name            string `json:"name"`
			Enabled         bool   `json:"enabled"`
			SuccessResponse bool   `json:"success-response"`
		}
		var cs []cmd
		for _, c := range commands {
			cs = append(cs, cmd{Name: c, Enabled: true, SuccessResponse: c != "guest-shutdown"})
		}
		return map[string]any{"version": version, "supported_commands": cs}, nil
	case "guest-get-time":
		return a.now().UnixNano(), nil
	case "guest-exec":
		return a.exec(args)
	case "guest-exec-status":
		return a.execStatus(args)
	case "guest-shutdown":
		var p struct {
			Mode string `json:"mode"`
		}
		if err := strictArgs(args, &p); err != nil {
			return nil, err
		}
		if p.Mode == "" {
			p.Mode = "powerdown"
		}
		if p.Mode != "powerdown" && p.Mode != "halt" && p.Mode != "reboot" {
			return nil, genericErr("Parameter 'mode' does not accept value '%s': accepted powerdown, halt, reboot", p.Mode)
		}
		if err := a.shutdown(p.Mode); err != nil {
			return nil, genericErr("guest-shutdown %s: %v", p.Mode, err)
		}
		return nil, noReply
	case "guest-get-osinfo":
		return osInfo(), nil
	case "guest-network-get-interfaces":
		return interfaces()
	case "guest-get-vcpus", "guest-set-vcpus":
		if a.cpuDir == "" {
			return nil, genericErr("%s is disabled outside the guest agent", req.Execute)
		}
		if req.Execute == "guest-set-vcpus" {
			return setVCPUs(a.cpuDir, args)
		}
		if err := strictArgs(args, &struct{}{}); err != nil {
			return nil, err
		}
		return getVCPUs(a.cpuDir)
	}
	if ret, err, ok := a.dispatchState(req.Execute, args); ok {
		return ret, err
	}
	return nil, &agentErr{Class: "CommandNotFound", Desc: fmt.Sprintf("The command %s has not been found", req.Execute)}
}

// strictArgs decodes arguments, rejecting unknown members as qemu-ga does.
func strictArgs(raw json.RawMessage, v any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return genericErr("Invalid arguments: %v", err)
	}
	return nil
}

type execArgs struct {
	Path string   `json:"path"`
	Arg  []string `json:"arg"`
	Env  []string `json:"env"`
	// InputData is base64; encoding/json decodes it into bytes.
	InputData     []byte          `json:"input-data"`
	CaptureOutput json.RawMessage `json:"capture-output"`
}

// capture reads capture-output: a bool, or (QEMU 8.0+) a mode string.
func (e execArgs) capture() (bool, error) {
	c := bytes.TrimSpace(e.CaptureOutput)
	switch string(c) {
	case "", "false", `"none"`:
		return false, nil
	case "true", `"separated"`:
		return true, nil
	}
	return false, genericErr("Parameter 'capture-output' does not accept %s: accepted true, false, \"none\", \"separated\"", c)
}

func (a *agent) exec(raw json.RawMessage) (any, error) {
	var p execArgs
	if err := strictArgs(raw, &p); err != nil {
		return nil, err
	}
	if p.Path == "" {
		return nil, genericErr("Parameter 'path' is missing")
	}
	capture, err := p.capture()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(p.Path, p.Arg...)
	cmd.Dir = "/"
	if p.Env != nil {
		cmd.Env = p.Env
	}
	cmd.Stdin = bytes.NewReader(p.InputData)
	proc := &process{done: make(chan struct{}), out: &capped{}, err: &capped{}, capture: capture}
	if capture {
		cmd.Stdout, cmd.Stderr = proc.out, proc.err
	}
	// A background child keeping the pipes open must not hold the status.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, genericErr("Guest agent command failed, error was 'Failed to execute child process \"%s\" (%v)'", p.Path, unwrapExec(err))
	}
	pid := cmd.Process.Pid
	a.mu.Lock()
	a.execs[pid] = proc
	a.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			proc.signal = int(ws.Signal())
		} else {
			proc.exitCode = cmd.ProcessState.ExitCode()
		}
		close(proc.done)
	}()
	return map[string]int{"pid": pid}, nil
}

func unwrapExec(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	return err
}

type execStatus struct {
	Exited   bool   `json:"exited"`
	ExitCode *int   `json:"exitcode,omitempty"`
	Signal   *int   `json:"signal,omitempty"`
	OutData  string `json:"out-data,omitempty"`
	ErrData  string `json:"err-data,omitempty"`
	OutTrunc bool   `json:"out-truncated,omitempty"`
	ErrTrunc bool   `json:"err-truncated,omitempty"`
}

// execStatus reports a process; once it has reported the exit, the PID is
// forgotten (qemu-ga does the same).
func (a *agent) execStatus(raw json.RawMessage) (any, error) {
	var p struct {
		PID *int `json:"pid"`
	}
	if err := strictArgs(raw, &p); err != nil {
		return nil, err
	}
	if p.PID == nil {
		return nil, genericErr("Parameter 'pid' is missing")
	}
	a.mu.Lock()
	proc, ok := a.execs[*p.PID]
	a.mu.Unlock()
	if !ok {
		return nil, genericErr("Invalid parameter 'pid'")
	}
	select {
	case <-proc.done:
	default:
		return execStatus{}, nil
	}
	a.mu.Lock()
	delete(a.execs, *p.PID)
	a.mu.Unlock()
	st := execStatus{Exited: true}
	if proc.signal != 0 {
		// qemu-ga reports only the signal; podvisor reads exitcode, so
		// give the shell's 128+N as well.
		sig, code := proc.signal, 128+proc.signal
		st.Signal, st.ExitCode = &sig, &code
	} else {
		code := proc.exitCode
		st.ExitCode = &code
	}
	if proc.capture {
		st.OutData, st.OutTrunc = proc.out.base64()
		st.ErrData, st.ErrTrunc = proc.err.base64()
	}
	return st, nil
}

// capped is a bounded, concurrency-safe output buffer.
type capped struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	trunc bool
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := maxOutput - c.buf.Len()
	if len(p) > room {
		c.buf.Write(p[:room])
		c.trunc = true
	} else {
		c.buf.Write(p)
	}
	return len(p), nil
}

func (c *capped) base64() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf.Len() == 0 {
		return "", c.trunc
	}
	b, _ := json.Marshal(c.buf.Bytes()) // a quoted base64 string
	return string(b[1 : len(b)-1]), c.trunc
}

func osInfo() map[string]string {
	var u syscall.Utsname
	info := map[string]string{"id": "podvisor-test-guest", "name": "podvisor test guest", "pretty-name": "podvisor test guest (busybox)", "version": "1", "version-id": "1"}
	if err := syscall.Uname(&u); err == nil {
		info["kernel-release"] = cstr(u.Release[:])
		info["kernel-version"] = cstr(u.Version[:])
		info["machine"] = cstr(u.Machine[:])
	} else {
		info["machine"] = runtime.GOARCH
	}
	return info
}

func cstr(b []int8) string {
	var s strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		s.WriteByte(byte(c))
	}
	return s.String()
}

type ipAddr struct {
	Type   string `json:"ip-address-type"`
	Addr   string `json:"ip-address"`
	Prefix int    `json:"prefix"`
}

type netIface struct {
	Name   string   `json:"name"`
	HWAddr string   `json:"hardware-address,omitempty"`
	IPs    []ipAddr `json:"ip-addresses"`
}

func interfaces() ([]netIface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, genericErr("listing interfaces: %v", err)
	}
	var r []netIface
	for _, ifc := range ifs {
		n := netIface{Name: ifc.Name, HWAddr: ifc.HardwareAddr.String(), IPs: []ipAddr{}}
		if n.HWAddr == "" {
			n.HWAddr = "00:00:00:00:00:00"
		}
		addrs, _ := ifc.Addrs()
		for _, ad := range addrs {
			ipn, ok := ad.(*net.IPNet)
			if !ok {
				continue
			}
			ones, _ := ipn.Mask.Size()
			t := "ipv6"
			if ipn.IP.To4() != nil {
				t = "ipv4"
			}
			n.IPs = append(n.IPs, ipAddr{Type: t, Addr: ipn.IP.String(), Prefix: ones})
		}
		r = append(r, n)
	}
	sort.Slice(r, func(i, j int) bool { return r[i].Name < r[j].Name })
	return r, nil
}
