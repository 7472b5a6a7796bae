package simhv

import (
	"context"
	"encoding/json"
	"errors"
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
			`{"name":"guest-info","enabled":true,"success-response":true},` +
			`{"name":"guest-ping","enabled":true,"success-response":true},` +
			`{"name":"guest-sync","enabled":true,"success-response":true}]}}`},
		{name: "unknown command", command: `{"execute":"guest-shutdown"}`, wantReply: `{"error":{"class":"CommandNotFound","desc":"The command guest-shutdown has not been found"}}`, wantClass: "CommandNotFound"},
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
