package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompletion: each shell gets cobra's script for podvisorctl, the bash
// one parses, and the __complete command the scripts run lists the verbs.
func TestCompletion(t *testing.T) {
	for _, tc := range []struct{ shell, want string }{
		{"bash", "__start_podvisorctl"},
		{"zsh", "#compdef podvisorctl"},
		{"fish", "complete -c podvisorctl"},
	} {
		t.Run(tc.shell, func(t *testing.T) {
			f := newFake(t)
			r := f.run("completion", tc.shell)
			if r.code != 0 || !strings.Contains(r.stdout, tc.want) || len(f.calls()) != 0 {
				t.Fatalf("exit %d, calls %v, stderr %q; script does not contain %q:\n%.400s", r.code, f.calls(), r.stderr, tc.want, r.stdout)
			}
			if tc.shell != "bash" {
				return
			}
			bash, err := exec.LookPath("/bin/bash")
			if err != nil {
				t.Fatalf("bash -n needs bash: %v", err)
			}
			script := filepath.Join(t.TempDir(), "podvisorctl.bash")
			if err := os.WriteFile(script, []byte(r.stdout), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
				t.Errorf("bash -n: %v\n%s", err, out)
			}
		})
	}

	f := newFake(t)
	r := f.run("__complete", "")
	for _, verb := range []string{"completion", "console", "list", "ssh", "vnc"} {
		if !strings.Contains(r.stdout, "\n"+verb+"\t") && !strings.HasPrefix(r.stdout, verb+"\t") {
			t.Errorf("__complete does not offer %s:\n%s", verb, r.stdout)
		}
	}
	r = f.run("__complete", "completion", "")
	if !strings.HasPrefix(r.stdout, "bash\nzsh\nfish\n") {
		t.Errorf("__complete completion: want the shells, got:\n%s", r.stdout)
	}
}

func TestCompletionBadShell(t *testing.T) {
	f := newFake(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"completion", "powershell"}, `shell "powershell": want bash, zsh or fish`},
		{[]string{"completion"}, "podvisorctl completion needs one argument, the shell: bash, zsh or fish (got 0"},
	} {
		r := f.run(tc.args...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

// TestCompletePodNames: console, ssh and vnc complete the namespace's VM
// pods (ssh after USER@), not its container pods.
func TestCompletePodNames(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"__complete", "console", ""}, "cirros-vm\tRunning on node-1\nnew-vm\tPending on node-1\n:4\n"},
		{[]string{"__complete", "vnc", "ci"}, "cirros-vm\tRunning on node-1\n:4\n"},
		{[]string{"__complete", "ssh", "cirros@"}, "cirros@cirros-vm\tRunning on node-1\ncirros@new-vm\tPending on node-1\n:4\n"},
		{[]string{"__complete", "-n", "vms", "console", ""}, ":4\n"},
		{[]string{"__complete", "console", "cirros-vm", ""}, ":4\n"},
	} {
		f := newFake(t)
		f.on("get pods -o json", list(cirrosVM, nginx, pendingVM))
		f.on("get pods -n vms -o json", list(nginx))
		r := f.run(tc.args...)
		if r.stdout != tc.want {
			t.Errorf("%v: got %q, want %q", tc.args, r.stdout, tc.want)
		}
	}
}
