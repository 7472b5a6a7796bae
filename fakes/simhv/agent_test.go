package simhv

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

func TestAgentCommand(t *testing.T) {
	tests := []struct {
		name      string
		command   string
		wantReply string // JSON, compared structurally
		wantErr   error
		wantClass string // for *AgentError
	}{
		{name: "ping", command: `{"execute":"guest-ping"}`, wantReply: `{"return":{}}`},
		{name: "sync", command: `{"execute":"guest-sync","arguments":{"id":1234}}`, wantReply: `{"return":1234}`},
		{name: "sync without id", command: `{"execute":"guest-sync"}`, wantReply: `{"error":{"class":"GenericError","desc":"Parameter 'id' is missing"}}`, wantClass: "GenericError"},
		{name: "info", command: `{"execute":"guest-info"}`, wantReply: `{"return":{"version":"` + AgentVersion + `","supported_commands":[` +
			`{"name":"guest-exec","enabled":true,"success-response":true},` +
			`{"name":"guest-exec-status","enabled":true,"success-response":true},` +
			`{"name":"guest-fsfreeze-freeze","enabled":true,"success-response":true},` +
			`{"name":"guest-fsfreeze-status","enabled":true,"success-response":true},` +
			`{"name":"guest-fsfreeze-thaw","enabled":true,"success-response":true},` +
			`{"name":"guest-info","enabled":true,"success-response":true},` +
			`{"name":"guest-network-get-interfaces","enabled":true,"success-response":true},` +
			`{"name":"guest-ping","enabled":true,"success-response":true},` +
			`{"name":"guest-set-time","enabled":true,"success-response":true},` +
			`{"name":"guest-sync","enabled":true,"success-response":true}]}}`},
		{name: "unknown command", command: `{"execute":"guest-shutdown"}`, wantReply: `{"error":{"class":"CommandNotFound","desc":"The command guest-shutdown has not been found"}}`, wantClass: "CommandNotFound"},
		{name: "exec of a missing program", command: `{"execute":"guest-exec","arguments":{"path":"/usr/bin/nope"}}`, wantClass: "GenericError"},
		{name: "exec without path", command: `{"execute":"guest-exec","arguments":{}}`, wantClass: "GenericError"},
		{name: "status of an unknown pid", command: `{"execute":"guest-exec-status","arguments":{"pid":1}}`, wantClass: "GenericError"},
		{name: "not JSON", command: `guest-ping`, wantClass: "GenericError"},
		{name: "no execute", command: `{}`, wantReply: `{"error":{"class":"GenericError","desc":"Expected 'execute' in QMP input"}}`, wantClass: "GenericError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			f.start("vm", withAgent)
			f.clock.Advance(testBoot)
			reply, err := f.hv.AgentCommand(f.ctx, "vm", tt.command, time.Second)
			if tt.wantClass != "" {
				var aerr *AgentError
				if !errors.As(err, &aerr) || aerr.Class != tt.wantClass {
					t.Fatalf("error %v, want an *AgentError of class %s", err, tt.wantClass)
				}
				if want := "unable to execute QEMU agent command"; !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
				var got struct{ Error struct{ Class string } }
				if jerr := json.Unmarshal([]byte(reply), &got); jerr != nil || got.Error.Class != tt.wantClass {
					t.Errorf("reply %q is not an agent error of class %s", reply, tt.wantClass)
				}
			} else if err != nil {
				t.Fatalf("AgentCommand: %v", err)
			}
			if tt.wantReply != "" {
				var got, want any
				if err := json.Unmarshal([]byte(reply), &got); err != nil {
					t.Fatalf("reply %q is not JSON: %v", reply, err)
				}
				if err := json.Unmarshal([]byte(tt.wantReply), &want); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("reply (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestAgentUnavailable(t *testing.T) {
	f := newFixture(t, Options{})
	ping := `{"execute":"guest-ping"}`
	f.start("noagent")
	f.clock.Advance(testBoot)
	if _, err := f.hv.AgentCommand(f.ctx, "noagent", ping, time.Second); !errors.Is(err, hypervisor.ErrUnimplemented) {
		t.Errorf("without a channel: %v, want ErrUnimplemented", err)
	}
	f.define("vm", withAgent)
	if _, err := f.hv.AgentCommand(f.ctx, "vm", ping, time.Second); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Errorf("shut off: %v, want ErrInvalidState", err)
	}
	if err := f.hv.Start(f.ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.hv.AgentCommand(f.ctx, "vm", ping, time.Second); !errors.Is(err, ErrAgentUnresponsive) {
		t.Errorf("booting: %v, want ErrAgentUnresponsive", err)
	}
	f.clock.Advance(testBoot)
	if _, err := f.hv.AgentCommand(f.ctx, "vm", ping, time.Second); err != nil {
		t.Errorf("booted: %v", err)
	}
	// A paused guest does not answer; the caller waits its timeout.
	if err := f.hv.Pause("vm"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := f.hv.AgentCommand(f.ctx, "vm", ping, 5*time.Second)
		done <- err
	}()
	if err := f.clock.WaitForTimers(f.ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(5 * time.Second)
	if err := <-done; !errors.Is(err, ErrAgentUnresponsive) {
		t.Errorf("paused: %v, want ErrAgentUnresponsive", err)
	}
	// The wait ends with the caller's context too.
	ctx, cancel := context.WithCancel(f.ctx)
	go func() {
		_, err := f.hv.AgentCommand(ctx, "vm", ping, time.Hour)
		done <- err
	}()
	if err := f.clock.WaitForTimers(f.ctx, 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("paused, cancelled: %v, want context.Canceled", err)
	}
}

func TestGuestExec(t *testing.T) {
	tests := []struct {
		name     string
		path     string
		args     []string
		input    string
		wantOut  string
		wantErr  string
		wantCode int
	}{
		{name: "hostname", path: "/bin/hostname", wantOut: "vm\n"},
		{name: "echo", path: "echo", args: []string{"a", "b"}, wantOut: "a b\n"},
		{name: "false", path: "/bin/false", wantCode: 1},
		{name: "cat copies input", path: "/bin/cat", input: "line\n", wantOut: "line\n"},
		{name: "sh -c", path: "/bin/sh", args: []string{"-c", "hostname"}, wantOut: "vm\n"},
		{name: "sh exit", path: "/bin/sh", args: []string{"-c", "exit 3"}, wantCode: 3},
		{name: "sh not found", path: "/bin/bash", args: []string{"-c", "ls /"}, wantErr: "sh: 1: ls: not found\n", wantCode: 127},
		{name: "sleep with bad interval", path: "sleep", args: []string{"soon"}, wantErr: "sleep: invalid time interval 'soon'\n", wantCode: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			f.start("vm", withAgent)
			f.clock.Advance(testBoot)
			pid := startExec(t, f, tt.path, tt.args, tt.input)
			st := execStatus(t, f, pid)
			if !st.Exited || st.ExitCode == nil || *st.ExitCode != tt.wantCode || st.Out != tt.wantOut || st.Err != tt.wantErr {
				t.Errorf("status %+v (code %v), want exit %d, out %q, err %q", st, deref(st.ExitCode), tt.wantCode, tt.wantOut, tt.wantErr)
			}
			_, err := f.hv.AgentCommand(f.ctx, "vm", fmt.Sprintf(`{"execute":"guest-exec-status","arguments":{"pid":%d}}`, pid), time.Second)
			var aerr *AgentError
			if !errors.As(err, &aerr) {
				t.Errorf("second status of an exited process: %v, want an agent error", err)
			}
		})
	}
}

func TestGuestExecSleepsInGuestTime(t *testing.T) {
	f := newFixture(t, Options{})
	f.start("vm", withAgent)
	f.clock.Advance(testBoot)
	pid := startExec(t, f, "/bin/sh", []string{"-c", "sleep 2.5"}, "")
	f.clock.Advance(2 * time.Second)
	if st := execStatus(t, f, pid); st.Exited {
		t.Fatalf("sleep 2.5 exited after 2s: %+v", st)
	}
	if err := f.hv.Pause("vm"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	if err := f.hv.Resume("vm"); err != nil {
		t.Fatal(err)
	}
	if st := execStatus(t, f, pid); st.Exited {
		t.Fatalf("sleep 2.5 exited after 2s of guest time: %+v", st)
	}
	f.clock.Advance(500 * time.Millisecond)
	if st := execStatus(t, f, pid); !st.Exited || *st.ExitCode != 0 {
		t.Fatalf("sleep 2.5 after 2.5s: %+v, want exited 0", st)
	}
}

func startExec(t *testing.T, f *fixture, path string, args []string, input string) int {
	t.Helper()
	req := map[string]any{"execute": "guest-exec", "arguments": map[string]any{
		"path": path, "arg": args, "capture-output": true,
		"input-data": base64.StdEncoding.EncodeToString([]byte(input)),
	}}
	cmd, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := f.hv.AgentCommand(f.ctx, "vm", string(cmd), time.Second)
	if err != nil {
		t.Fatalf("guest-exec: %v", err)
	}
	var r struct{ Return struct{ PID int } }
	if err := json.Unmarshal([]byte(reply), &r); err != nil || r.Return.PID == 0 {
		t.Fatalf("guest-exec reply %q: %v", reply, err)
	}
	return r.Return.PID
}

type execResult struct {
	Exited   bool
	ExitCode *int
	Out, Err string
}

func execStatus(t *testing.T, f *fixture, pid int) execResult {
	t.Helper()
	reply, err := f.hv.AgentCommand(f.ctx, "vm", fmt.Sprintf(`{"execute":"guest-exec-status","arguments":{"pid":%d}}`, pid), time.Second)
	if err != nil {
		t.Fatalf("guest-exec-status: %v", err)
	}
	var r struct {
		Return struct {
			Exited   bool    `json:"exited"`
			ExitCode *int    `json:"exitcode"`
			OutData  *string `json:"out-data"`
			ErrData  *string `json:"err-data"`
		} `json:"return"`
	}
	if err := json.Unmarshal([]byte(reply), &r); err != nil {
		t.Fatalf("guest-exec-status reply %q: %v", reply, err)
	}
	res := execResult{Exited: r.Return.Exited, ExitCode: r.Return.ExitCode}
	for _, p := range []struct {
		in  *string
		out *string
	}{{r.Return.OutData, &res.Out}, {r.Return.ErrData, &res.Err}} {
		if p.in == nil {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(*p.in)
		if err != nil {
			t.Fatalf("reply %q: %v", reply, err)
		}
		*p.out = string(b)
	}
	return res
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}
