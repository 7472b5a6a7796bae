package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSSHForms: the ssh command line each form of podvisorctl ssh gives,
// podvisorctl's (flags before the pod, the command after it) and
// virtletctl's (ssh's options after --, the command after them).
func TestSSHForms(t *testing.T) {
	const (
		fwd  = "port-forward -n default pod/cirros-vm --address 127.0.0.1 :22"
		base = "-p 40123 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "
	)
	tests := []struct {
		name    string
		args    []string
		wantSSH string
	}{
		{"podvisorctl's: no command", []string{"ssh", "cirros@cirros-vm"}, base + "cirros@127.0.0.1"},
		{"podvisorctl's: -i before the pod, command after --", []string{"ssh", "-i", "/k", "cirros@cirros-vm", "--", "uname", "-a"}, base + "-i /k cirros@127.0.0.1 uname -a"},
		{"podvisorctl's: command without --", []string{"ssh", "cirros@cirros-vm", "ls", "-l"}, base + "cirros@127.0.0.1 ls -l"},
		{"virtletctl's: -i KEY after --", []string{"ssh", "cirros@cirros-vm", "--", "-i", "/k"}, base + "-i /k cirros@127.0.0.1"},
		{"virtletctl's: options, then the command", []string{"ssh", "cirros@cirros-vm", "--", "-i", "/k", "-o", "ConnectTimeout=5", "uname", "-a"}, base + "-i /k -o ConnectTimeout=5 cirros@127.0.0.1 uname -a"},
		{"virtletctl's: grouped flags and an attached argument", []string{"ssh", "cirros@cirros-vm", "--", "-vvA", "-i/k", "-tt", "top"}, base + "-vvA -i/k -tt cirros@127.0.0.1 top"},
		{"virtletctl's: a flag group ending in an option with an argument", []string{"ssh", "cirros@cirros-vm", "--", "-Ai", "/k", "id"}, base + "-Ai /k cirros@127.0.0.1 id"},
		{"virtletctl's: -- ends ssh's options", []string{"ssh", "cirros@cirros-vm", "--", "-i", "/k", "--", "-weird-cmd"}, base + "-i /k cirros@127.0.0.1 -weird-cmd"},
		{"both: podvisorctl's -i and ssh's -o", []string{"ssh", "-i", "/k", "cirros@cirros-vm", "--", "-o", "ServerAliveInterval=10"}, base + "-i /k -o ServerAliveInterval=10 cirros@127.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.on("get pod cirros-vm -o json", cirrosVM.json())
			f.add(fakeResponse{Args: fwd, Stdout: forwarding(40123, 22), Block: true})
			f.add(fakeResponse{Tool: "ssh", Args: tc.wantSSH})
			r := f.run(tc.args...)
			want := []string{"kubectl get pod cirros-vm -o json", "kubectl " + fwd, "ssh " + tc.wantSSH, "kubectl SIGTERM"}
			if diff := cmp.Diff(want, f.calls()); diff != "" || r.code != 0 {
				t.Errorf("exit %d, stderr %q; calls (-want +got):\n%s", r.code, r.stderr, diff)
			}
		})
	}
}

func TestSSHBadOptions(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"ssh", "cirros@cirros-vm", "--", "-p", "2222"}, "ssh option -p: podvisorctl sets ssh's port to the tunnel's local port; give the guest's port with --port before the pod"},
		{[]string{"ssh", "cirros@cirros-vm", "--", "-vp2222"}, "ssh option -p: podvisorctl sets ssh's port"},
		{[]string{"ssh", "cirros@cirros-vm", "--", "-i"}, "ssh option -i needs an argument"},
		{[]string{"ssh", "cirros@cirros-vm", "--", "-Z"}, `ssh option -Z (in "-Z"): not an ssh option (ssh options after the pod are virtletctl's form; see podvisorctl ssh --help)`},
	}
	for _, tc := range tests {
		f := newFake(t)
		r := f.run(tc.args...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) || len(f.calls()) != 0 {
			t.Errorf("%v: exit %d, calls %v, stderr %q; want %q", tc.args, r.code, f.calls(), r.stderr, tc.want)
		}
	}
}

// TestSSHHelpNamesBothForms: --help explains how the forms differ.
func TestSSHHelpNamesBothForms(t *testing.T) {
	f := newFake(t)
	r := f.run("ssh", "--help")
	for _, want := range []string{"podvisorctl's form", "virtletctl's form (virtletctl ssh user@pod -- [ssh args])", "podvisorctl ssh user@pod -- -i KEY -A uname -a"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("ssh --help does not say %q:\n%s", want, r.stdout)
		}
	}
}
