package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const notFound = `Error from server (NotFound): pods "nope" not found` + "\n"

// TestVerbs runs each verb against the fake kubectl and checks the exact
// commands it ran, its exit code and what it printed.
func TestVerbs(t *testing.T) {
	getVM := "get pod cirros-vm -o json"
	pvNode1 := "get pods -n kube-system -l " + podSel + " --field-selector spec.nodeName=node-1 -o json"
	execLibvirt := "exec -n kube-system podvisor-abcde -c libvirt -- virsh -c qemu:///system "
	tests := []struct {
		name       string
		args       []string
		stdin      string
		terminal   bool
		setup      func(f *fake)
		wantCalls  []string
		wantCode   int
		wantStdout string // substring
		wantStderr string // substring
	}{
		{
			name:     "console on a terminal: raw (-t) when the container has a tty",
			args:     []string{"console", "cirros-vm"},
			terminal: true,
			setup: func(f *fake) {
				f.on(getVM, cirrosVM.json())
				f.on("attach -i -t -n default cirros-vm -c cirros-vm", "")
			},
			wantCalls:  []string{"kubectl " + getVM, "kubectl attach -i -t -n default cirros-vm -c cirros-vm"},
			wantStderr: "Serial console of default/cirros-vm (domain " + vmDomain + " on node node-1). Detach with Ctrl-].",
		},
		{
			name:  "console with piped input: -i, input passed through",
			args:  []string{"console", "cirros-vm"},
			stdin: "root\n\x1d",
			setup: func(f *fake) {
				f.on(getVM, cirrosVM.json())
				f.add(fakeResponse{Args: "attach -i -n default cirros-vm -c cirros-vm", Stdout: []byte("login: "), EchoStdin: true})
			},
			wantCalls:  []string{"kubectl " + getVM, "kubectl attach -i -n default cirros-vm -c cirros-vm"},
			wantStdout: "login: root\n\x1d",
			wantStderr: "A Ctrl-] in the input, or its end, detaches.",
		},
		{
			name:     "console on a terminal, container without a tty: -i, Ctrl-] and Enter",
			args:     []string{"console", "cirros-vm"},
			terminal: true,
			setup: func(f *fake) {
				vm := cirrosVM
				vm.tty = false
				f.on(getVM, vm.json())
				f.on("attach -i -n default cirros-vm -c cirros-vm", "")
			},
			wantCalls:  []string{"kubectl " + getVM, "kubectl attach -i -n default cirros-vm -c cirros-vm"},
			wantStderr: "Detach with Ctrl-] and Enter",
		},
		{
			name: "console passes the namespace and kubeconfig flags to kubectl",
			args: []string{"--kubeconfig", "/tmp/kc", "--context", "prod", "-n", "vms", "console", "cirros-vm"},
			setup: func(f *fake) {
				vm := cirrosVM
				vm.ns = "vms"
				f.on("--kubeconfig /tmp/kc --context prod get pod cirros-vm -n vms -o json", vm.json())
				f.on("--kubeconfig /tmp/kc --context prod attach -i -n vms cirros-vm -c cirros-vm", "")
			},
			wantCalls: []string{
				"kubectl --kubeconfig /tmp/kc --context prod get pod cirros-vm -n vms -o json",
				"kubectl --kubeconfig /tmp/kc --context prod attach -i -n vms cirros-vm -c cirros-vm",
			},
		},
		{
			name:     "console of a container without stdin is read-only",
			args:     []string{"console", "cirros-vm"},
			terminal: true,
			setup: func(f *fake) {
				vm := cirrosVM
				vm.stdin = false
				f.on(getVM, vm.json())
				f.on("attach -n default cirros-vm -c cirros-vm", "")
			},
			wantCalls:  []string{"kubectl " + getVM, "kubectl attach -n default cirros-vm -c cirros-vm"},
			wantStderr: "has stdin: false: the console is read-only",
		},
		{
			name:       "console: pod not found",
			args:       []string{"console", "nope"},
			setup:      func(f *fake) { f.fail("get pod nope -o json", notFound, 1) },
			wantCalls:  []string{"kubectl get pod nope -o json"},
			wantCode:   1,
			wantStderr: `podvisorctl: pod "nope" not found in the context's namespace (-n NAMESPACE for another)`,
		},
		{
			name:       "console: not a VM pod",
			args:       []string{"console", "nginx"},
			setup:      func(f *fake) { f.on("get pod nginx -o json", nginx.json()) },
			wantCalls:  []string{"kubectl get pod nginx -o json"},
			wantCode:   1,
			wantStderr: `pod default/nginx is not a VM pod: its container nginx has ID "containerd://8d2e1f00aa"; containers podvisor runs have IDs podvisor__<id>`,
		},
		{
			name:       "console: VM pod without a VM yet",
			args:       []string{"console", "new-vm"},
			setup:      func(f *fake) { f.on("get pod new-vm -o json", pendingVM.json()) },
			wantCalls:  []string{"kubectl get pod new-vm -o json"},
			wantCode:   1,
			wantStderr: "pod default/new-vm (phase Pending) has no VM yet on node node-1: wait until it is Running",
		},
		{
			name:       "console: kubectl's other failures are shown",
			args:       []string{"console", "cirros-vm"},
			setup:      func(f *fake) { f.fail(getVM, "error: You must be logged in to the server (Unauthorized)\n", 1) },
			wantCalls:  []string{"kubectl " + getVM},
			wantCode:   1,
			wantStderr: "podvisorctl: kubectl get pod cirros-vm -o json: error: You must be logged in to the server (Unauthorized)",
		},
		{
			name:       "console: NAMESPACE/POD is refused",
			args:       []string{"console", "default/cirros-vm"},
			wantCode:   1,
			wantStderr: `"default/cirros-vm" is not a pod name (give the namespace with -n, not NAMESPACE/POD)`,
		},
		{
			name:       "console: one pod",
			args:       []string{"console"},
			wantCode:   1,
			wantStderr: "podvisorctl console needs one argument, the VM pod's name (got 0",
		},
		{
			name: "virsh list on a node",
			args: []string{"virsh", "--node", "node-1", "list", "--all"},
			setup: func(f *fake) {
				f.on(pvNode1, list(podvisor1))
				f.on(execLibvirt+"list --all", " Id   Name                  State\n 1    "+vmDomain+"   running\n")
			},
			wantCalls:  []string{"kubectl " + pvNode1, "kubectl " + execLibvirt + "list --all"},
			wantStdout: vmDomain + "   running",
		},
		{
			name: "virsh: -- before the virsh command",
			args: []string{"virsh", "--node", "node-1", "--", "list", "--all"},
			setup: func(f *fake) {
				f.on(pvNode1, list(podvisor1))
				f.on(execLibvirt+"list --all", "")
			},
			wantCalls: []string{"kubectl " + pvNode1, "kubectl " + execLibvirt + "list --all"},
		},
		{
			name: "virsh @POD is the pod's domain on the pod's node",
			args: []string{"virsh", "dumpxml", "@cirros-vm"},
			setup: func(f *fake) {
				f.on(getVM, cirrosVM.json())
				f.on(pvNode1, list(podvisor1))
				f.on(execLibvirt+"dumpxml "+vmDomain, "<domain type='kvm'>\n")
			},
			wantCalls:  []string{"kubectl " + getVM, "kubectl " + pvNode1, "kubectl " + execLibvirt + "dumpxml " + vmDomain},
			wantStdout: "<domain type='kvm'>",
		},
		{
			name: "virsh in another podvisor namespace",
			args: []string{"--podvisor-namespace", "podvisor-system", "virsh", "--node", "node-1", "version"},
			setup: func(f *fake) {
				pv := podvisor1
				pv.ns = "podvisor-system"
				f.on("get pods -n podvisor-system -l "+podSel+" --field-selector spec.nodeName=node-1 -o json", list(pv))
				f.on("exec -n podvisor-system podvisor-abcde -c libvirt -- virsh -c qemu:///system version", "")
			},
			wantCalls: []string{
				"kubectl get pods -n podvisor-system -l " + podSel + " --field-selector spec.nodeName=node-1 -o json",
				"kubectl exec -n podvisor-system podvisor-abcde -c libvirt -- virsh -c qemu:///system version",
			},
		},
		{
			name: "virsh: virsh's exit code is podvisorctl's, without a message of ours",
			args: []string{"virsh", "--node", "node-1", "dominfo", "nosuch"},
			setup: func(f *fake) {
				f.on(pvNode1, list(podvisor1))
				f.add(fakeResponse{Args: execLibvirt + "dominfo nosuch", Stderr: "error: failed to get domain 'nosuch'\ncommand terminated with exit code 1\n", Exit: 1})
			},
			wantCalls:  []string{"kubectl " + pvNode1, "kubectl " + execLibvirt + "dominfo nosuch"},
			wantCode:   1,
			wantStderr: "error: failed to get domain 'nosuch'",
		},
		{
			name:       "virsh: --node disagrees with the pod",
			args:       []string{"virsh", "--node", "node-2", "dominfo", "@cirros-vm"},
			setup:      func(f *fake) { f.on(getVM, cirrosVM.json()) },
			wantCalls:  []string{"kubectl " + getVM},
			wantCode:   1,
			wantStderr: "--node node-2, but pod default/cirros-vm runs on node node-1",
		},
		{
			name:       "virsh: no podvisor pod on the node",
			args:       []string{"virsh", "--node", "node-1", "list"},
			setup:      func(f *fake) { f.on(pvNode1, list()) },
			wantCalls:  []string{"kubectl " + pvNode1},
			wantCode:   1,
			wantStderr: "no podvisor pod on node node-1 (namespace kube-system, label " + podSel + "): is the DaemonSet installed there",
		},
		{
			name: "virsh: the podvisor pod is not running",
			args: []string{"virsh", "--node", "node-3", "list"},
			setup: func(f *fake) {
				f.on("get pods -n kube-system -l "+podSel+" --field-selector spec.nodeName=node-3 -o json", list(podvisorPn))
			},
			wantCalls:  []string{"kubectl get pods -n kube-system -l " + podSel + " --field-selector spec.nodeName=node-3 -o json"},
			wantCode:   1,
			wantStderr: "the podvisor pod on node node-3 is not running (podvisor-zzzzz is Pending)",
		},
		{
			name:       "virsh: @POD of a container pod",
			args:       []string{"virsh", "dominfo", "@nginx"},
			setup:      func(f *fake) { f.on("get pod nginx -o json", nginx.json()) },
			wantCalls:  []string{"kubectl get pod nginx -o json"},
			wantCode:   1,
			wantStderr: "pod default/nginx is not a VM pod",
		},
		{
			name:       "virsh without a node",
			args:       []string{"virsh", "list"},
			wantCode:   1,
			wantStderr: "which node? Name it with --node NODE, or name a VM pod as @POD",
		},
		{
			name: "ssh forwards a free local port and runs ssh on it",
			args: []string{"ssh", "-i", "/keys/vm", "cirros@cirros-vm", "--", "uname", "-a"},
			setup: func(f *fake) {
				f.on(getVM, cirrosVM.json())
				f.add(fakeResponse{Args: "port-forward -n default pod/cirros-vm --address 127.0.0.1 :22", Stdout: forwarding(40123, 22), Block: true})
				f.add(fakeResponse{Tool: "ssh", Args: "-p 40123 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -i /keys/vm cirros@127.0.0.1 uname -a", Stdout: []byte("Linux cirros\n")})
			},
			wantCalls: []string{
				"kubectl " + getVM,
				"kubectl port-forward -n default pod/cirros-vm --address 127.0.0.1 :22",
				"ssh -p 40123 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -i /keys/vm cirros@127.0.0.1 uname -a",
				"kubectl SIGTERM",
			},
			wantStdout: "Linux cirros",
		},
		{
			name: "ssh without a user, another port, a command without --",
			args: []string{"ssh", "--port", "2222", "cirros-vm", "ls", "-l"},
			setup: func(f *fake) {
				f.on(getVM, cirrosVM.json())
				f.add(fakeResponse{Args: "port-forward -n default pod/cirros-vm --address 127.0.0.1 :2222", Stdout: forwarding(40124, 2222), Block: true,
					Stderr: "E0101 00:00:00.000000 1 portforward.go:424] \"Unhandled Error\" err=\"an error occurred forwarding 40124 -> 2222: port-forward to pod x port 2222: connection refused\"\n"})
				f.add(fakeResponse{Tool: "ssh", Args: "-p 40124 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR 127.0.0.1 ls -l", Exit: 255, Stderr: "ssh: connect to host 127.0.0.1 port 40124: Connection refused\n"})
			},
			wantCalls: []string{
				"kubectl " + getVM,
				"kubectl port-forward -n default pod/cirros-vm --address 127.0.0.1 :2222",
				"ssh -p 40124 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR 127.0.0.1 ls -l",
				"kubectl SIGTERM",
			},
			wantCode:   255,
			wantStderr: "Connection refused\nkubectl port-forward said:\nE0101",
		},
		{
			name: "ssh: port-forward fails",
			args: []string{"ssh", "cirros@cirros-vm"},
			setup: func(f *fake) {
				f.on(getVM, cirrosVM.json())
				f.fail("port-forward -n default pod/cirros-vm --address 127.0.0.1 :22", "error: unable to forward port because pod is not running. Current status=Pending\n", 1)
			},
			wantCalls:  []string{"kubectl " + getVM, "kubectl port-forward -n default pod/cirros-vm --address 127.0.0.1 :22"},
			wantCode:   1,
			wantStderr: "kubectl port-forward -n default pod/cirros-vm --address 127.0.0.1 :22: error: unable to forward port because pod is not running",
		},
		{
			name:       "ssh: bad target",
			args:       []string{"ssh", "@cirros-vm"},
			wantCode:   1,
			wantStderr: `"@cirros-vm": want [USER@]POD`,
		},
		{
			name:       "ssh: bad port",
			args:       []string{"ssh", "--port", "0", "cirros-vm"},
			wantCode:   1,
			wantStderr: "--port 0: want a port number, 1 to 65535",
		},
		{
			name: "version of every node",
			args: []string{"version"},
			setup: func(f *fake) {
				f.on("get pods -n kube-system -l "+podSel+" -o json", list(podvisor2, podvisor1))
				f.on("get nodes -o json", `{"items":[{"metadata":{"name":"node-1","labels":{"podvisor.io/accelerator":"kvm"},"annotations":{"podvisor.io/accelerator-reason":"a trial KVM domain ran 64-bit guest code"}}},{"metadata":{"name":"node-2"}}]}`)
				f.on("exec -n kube-system podvisor-abcde -c podvisor -- /usr/local/bin/podvisor --version", "podvisor 0.1.0\n")
				f.on("exec -n kube-system podvisor-fghij -c podvisor -- /usr/local/bin/podvisor --version", "podvisor 0.1.0\n")
			},
			wantCalls: []string{
				"kubectl get pods -n kube-system -l " + podSel + " -o json",
				"kubectl get nodes -o json",
				"kubectl exec -n kube-system podvisor-abcde -c podvisor -- /usr/local/bin/podvisor --version",
				"kubectl exec -n kube-system podvisor-fghij -c podvisor -- /usr/local/bin/podvisor --version",
			},
			wantStdout: "podvisorctl " + version + " (go",
		},
		{
			name: "version says each node's accelerator and why",
			args: []string{"version"},
			setup: func(f *fake) {
				f.on("get pods -n kube-system -l "+podSel+" -o json", list(podvisor2, podvisor1))
				f.on("get nodes -o json", `{"items":[{"metadata":{"name":"node-1","labels":{"podvisor.io/accelerator":"kvm"},"annotations":{"podvisor.io/accelerator-reason":"a trial KVM domain ran 64-bit guest code"}}},{"metadata":{"name":"node-2"}}]}`)
				f.on("exec -n kube-system podvisor-abcde -c podvisor -- /usr/local/bin/podvisor --version", "podvisor 0.1.0\n")
				f.on("exec -n kube-system podvisor-fghij -c podvisor -- /usr/local/bin/podvisor --version", "podvisor 0.1.0\n")
			},
			wantCalls: []string{
				"kubectl get pods -n kube-system -l " + podSel + " -o json",
				"kubectl get nodes -o json",
				"kubectl exec -n kube-system podvisor-abcde -c podvisor -- /usr/local/bin/podvisor --version",
				"kubectl exec -n kube-system podvisor-fghij -c podvisor -- /usr/local/bin/podvisor --version",
			},
			wantStdout: "node node-1: podvisor 0.1.0 (pod kube-system/podvisor-abcde), accelerator kvm: a trial KVM domain ran 64-bit guest code\n" +
				"node node-2: podvisor 0.1.0 (pod kube-system/podvisor-fghij), accelerator unknown (no podvisor.io/accelerator label on the node",
		},
		{
			name: "version: a node that does not answer",
			args: []string{"version"},
			setup: func(f *fake) {
				f.on("get pods -n kube-system -l "+podSel+" -o json", list(podvisor1, podvisorPn))
				f.fail("get nodes -o json", "Error from server (Forbidden): nodes is forbidden\n", 1)
				f.fail("exec -n kube-system podvisor-abcde -c podvisor -- /usr/local/bin/podvisor --version", "error: unable to upgrade connection: container not found\n", 1)
			},
			wantCalls: []string{
				"kubectl get pods -n kube-system -l " + podSel + " -o json",
				"kubectl get nodes -o json",
				"kubectl exec -n kube-system podvisor-abcde -c podvisor -- /usr/local/bin/podvisor --version",
			},
			wantCode:   1,
			wantStdout: "node node-3: error: pod kube-system/podvisor-zzzzz is Pending",
			wantStderr: "could not read podvisor's version on every node",
		},
		{
			name:       "version: no podvisor anywhere",
			args:       []string{"version"},
			setup:      func(f *fake) { f.on("get pods -n kube-system -l "+podSel+" -o json", list()) },
			wantCalls:  []string{"kubectl get pods -n kube-system -l " + podSel + " -o json"},
			wantCode:   1,
			wantStderr: "no podvisor pod on any node (namespace kube-system, label " + podSel + "): is the DaemonSet installed there (kubectl -n kube-system get ds podvisor; --podvisor-namespace if it is elsewhere) and the node labelled extraRuntime=virtlet podvisor.io/enabled=true? (--client skips the cluster)",
		},
		{
			name:       "version --client needs no cluster",
			args:       []string{"version", "--client"},
			wantStdout: "podvisorctl " + version,
		},
		{
			name:       "version -o json",
			args:       []string{"version", "--client", "-o", "json"},
			wantStdout: `"client": "` + version + `"`,
		},
		{
			name:       "version -o yaml is refused",
			args:       []string{"version", "-o", "yaml"},
			wantCode:   1,
			wantStderr: `-o "yaml": want text or json`,
		},
		{
			name:       "no verb: help and exit 2",
			args:       nil,
			wantCode:   2,
			wantStderr: "Available Commands:",
		},
		{
			name:       "unknown flag names the command's help",
			args:       []string{"console", "--bogus", "x"},
			wantCode:   1,
			wantStderr: "unknown flag: --bogus (see podvisorctl console --help)",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.stdin, f.terminal = tc.stdin, tc.terminal
			if tc.setup != nil {
				tc.setup(f)
			}
			r := f.run(tc.args...)
			if r.code != tc.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.wantCode, r.stdout, r.stderr)
			}
			if diff := cmp.Diff(tc.wantCalls, f.calls()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if !strings.Contains(r.stdout, tc.wantStdout) {
				t.Errorf("stdout does not contain %q:\n%s", tc.wantStdout, r.stdout)
			}
			if !strings.Contains(r.stderr, tc.wantStderr) {
				t.Errorf("stderr does not contain %q:\n%s", tc.wantStderr, r.stderr)
			}
			if tc.wantCode == 0 && tc.wantStderr == "" && strings.Contains(r.stderr, "podvisorctl:") {
				t.Errorf("unexpected error output:\n%s", r.stderr)
			}
		})
	}
}

func TestKubectlMissing(t *testing.T) {
	for _, args := range [][]string{{"console", "x"}, {"virsh", "--node", "n", "list"}, {"ssh", "x"}, {"version"}, {"diag", "dump"}, {"list"}} {
		f := newFake(t)
		t.Setenv("PATH", t.TempDir())
		r := f.run(args...)
		if r.code != 1 || !strings.Contains(r.stderr, "kubectl not found in PATH: podvisorctl runs kubectl for every cluster operation; install it or give its path with --kubectl") {
			t.Errorf("%v without kubectl: exit %d, stderr:\n%s", args, r.code, r.stderr)
		}
	}
	f := newFake(t)
	r := f.run("--kubectl", "/no/such/kubectl", "console", "x")
	if r.code != 1 || !strings.Contains(r.stderr, "--kubectl /no/such/kubectl: not an executable file") {
		t.Errorf("--kubectl /no/such/kubectl: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	// An explicit --kubectl is used.
	f = newFake(t)
	f.fail("get pod nope -o json", notFound, 1)
	t.Setenv("PATH", t.TempDir())
	r = f.run("--kubectl", f.dir+"/kubectl", "console", "nope")
	if want := []string{"kubectl get pod nope -o json"}; !cmp.Equal(want, f.calls()) || !strings.Contains(r.stderr, `pod "nope" not found`) {
		t.Errorf("--kubectl: calls %v, stderr:\n%s", f.calls(), r.stderr)
	}
}

func TestSSHClientMissing(t *testing.T) {
	f := newFake(t)
	r := f.run("ssh", "--ssh", "no-such-ssh", "cirros-vm")
	if r.code != 1 || !strings.Contains(r.stderr, `ssh client "no-such-ssh" not found: install OpenSSH's client or give one with --ssh`) || len(f.calls()) != 0 {
		t.Errorf("exit %d, calls %v, stderr:\n%s", r.code, f.calls(), r.stderr)
	}
}

func TestPluginName(t *testing.T) {
	f := newFake(t)
	r := f.runAs(pluginName, "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "kubectl podvisor [command]") {
		t.Errorf("as %s: exit %d, help:\n%s", pluginName, r.code, r.stdout)
	}
	r = f.runAs(pluginName, "vnc", "a/b")
	if !strings.HasPrefix(r.stderr, `kubectl podvisor: "a/b" is not a pod name`) {
		t.Errorf("as %s, errors start %q", pluginName, r.stderr)
	}
}

// TestEveryVerbHasHelp: each verb has a short and a long description
// (--help is the user's manual) and runs --help without a cluster.
func TestEveryVerbHasHelp(t *testing.T) {
	a := &app{}
	root := a.rootCmd("podvisorctl")
	want := []string{"completion", "console", "diag", "gen", "install", "list", "restore", "snapshot", "ssh", "version", "virsh", "vnc"}
	var got []string
	for _, c := range root.Commands() {
		if c.Name() == "help" {
			continue
		}
		got = append(got, c.Name())
		if c.Short == "" || (c.Long == "" && c.Name() != "diag") {
			t.Errorf("%s has no Short or Long help", c.Name())
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("verbs (-want +got):\n%s", diff)
	}
	for _, args := range [][]string{{"console", "--help"}, {"diag", "dump", "--help"}, {"virsh", "--help"}, {"ssh", "--help"}} {
		f := newFake(t)
		r := f.run(args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") || len(f.calls()) != 0 {
			t.Errorf("%v: exit %d, calls %v, stdout:\n%s", args, r.code, f.calls(), r.stdout)
		}
	}
}
