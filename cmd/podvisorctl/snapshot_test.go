package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSnapshotAndRestore(t *testing.T) {
	getVM := "get pod cirros-vm -o json"
	proxy := "create --raw /api/v1/nodes/node-1/proxy/checkpoint/default/cirros-vm/cirros-vm -f /dev/null"
	archive := "checkpoint-cirros-vm_default-cirros-vm-2026-12-03T17:00:00Z.tar"
	tests := []struct {
		name       string
		args       []string
		setup      func(f *fake)
		wantCalls  []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{
			name: "snapshot: kubelet's checkpoint API through the node proxy",
			args: []string{"snapshot", "cirros-vm"},
			setup: func(f *fake) {
				f.on(getVM, cirrosVM.json())
				f.on(proxy, `{"items":["/var/lib/kubelet/checkpoints/`+archive+`"]}`)
			},
			wantCalls:  []string{"kubectl " + getVM, "kubectl " + proxy},
			wantStdout: "/var/lib/kubelet/checkpoints/" + archive + "\n",
			wantStderr: "restore " + archive + " --node node-1",
		},
		{
			name: "snapshot with a timeout",
			args: []string{"snapshot", "cirros-vm", "--timeout", "90"},
			setup: func(f *fake) {
				f.on(getVM, cirrosVM.json())
				f.on(strings.Replace(proxy, "cirros-vm -f", "cirros-vm?timeout=90 -f", 1), `{"items":["/x.tar"]}`)
			},
			wantCalls:  []string{"kubectl " + getVM, "kubectl " + strings.Replace(proxy, "cirros-vm -f", "cirros-vm?timeout=90 -f", 1)},
			wantStdout: "/x.tar",
		},
		{
			name: "snapshot refused by kubelet: its error",
			args: []string{"snapshot", "cirros-vm"},
			setup: func(f *fake) {
				f.on(getVM, cirrosVM.json())
				f.fail(proxy, "Error from server (Forbidden): nodes \"node-1\" is forbidden: cannot create resource \"nodes/proxy\"", 1)
			},
			wantCalls:  []string{"kubectl " + getVM, "kubectl " + proxy},
			wantCode:   1,
			wantStderr: "checkpoint of default/cirros-vm on node node-1: kubectl create --raw",
		},
		{
			name:       "snapshot of a pod that is not a VM",
			args:       []string{"snapshot", "nginx"},
			setup:      func(f *fake) { f.on("get pod nginx -o json", nginx.json()) },
			wantCalls:  []string{"kubectl get pod nginx -o json"},
			wantCode:   1,
			wantStderr: "is not a VM pod",
		},
		{
			name:       "restore needs --node",
			args:       []string{"restore", archive},
			wantCode:   1,
			wantStderr: "--node is required",
		},
		{
			name:       "restore of a file outside kubelet's checkpoints",
			args:       []string{"restore", "/tmp/x.tar", "--node", "node-1"},
			wantCode:   1,
			wantStderr: "give a file in /var/lib/kubelet/checkpoints",
		},
		{
			name:       "restore of something else",
			args:       []string{"restore", "x.qcow2", "--node", "node-1"},
			wantCode:   1,
			wantStderr: "*.tar",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
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
			if !strings.Contains(r.stdout, tc.wantStdout) || !strings.Contains(r.stderr, tc.wantStderr) {
				t.Errorf("stdout %q (want %q), stderr %q (want %q)", r.stdout, tc.wantStdout, r.stderr, tc.wantStderr)
			}
		})
	}
}

// restore creates the pod kubelet restores: on the node, its image the
// archive's name under virtlet.cloud/checkpoint/, the original's settings.
func TestRestoreCreatesThePod(t *testing.T) {
	archive := "checkpoint-cirros-vm_default-cirros-vm-2026-12-03T17:00:00Z.tar"
	image := restoreImageFile(archive)
	if !regexp.MustCompile(`^restore-[0-9a-f]{12}\.tar$`).MatchString(image) {
		t.Fatalf("the archive's image name %q is not one an image reference may hold", image)
	}
	f := newFake(t)
	f.on("get pod cirros-vm -o json", cirrosVM.json())
	f.on("get pods -n kube-system -l "+podSel+" --field-selector spec.nodeName=node-2 -o json", list(podvisor2))
	ln := "exec -n kube-system podvisor-fghij -c libvirt -- ln -f /var/lib/kubelet/checkpoints/" + archive + " /var/lib/kubelet/checkpoints/" + image
	f.on(ln, "")
	f.add(fakeResponse{Args: "create -f - -o name", EchoStdin: true})
	r := f.run("restore", "/var/lib/kubelet/checkpoints/"+archive, "--node", "node-2", "--from", "cirros-vm")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if calls := f.calls(); len(calls) != 4 || calls[2] != "kubectl "+ln {
		t.Errorf("calls %q, want the hard link made in the node's podvisor pod before the pod", calls)
	}
	var p newPod
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("the pod given to kubectl create: %v\n%s", err, r.stdout)
	}
	c := p.Spec.Containers[0]
	if p.Metadata.Name != "restored-cirros-vm" || p.Spec.NodeName != "node-2" || c.Name != "cirros-vm" ||
		c.Image != "virtlet.cloud/checkpoint/"+image || !c.Stdin || !c.TTY || p.Metadata.Annotations["kubernetes.io/target-runtime"] != "virtlet.cloud" {
		t.Errorf("pod = %+v", p)
	}
	f2 := newFake(t)
	r = f2.run("restore", archive, "--node", "node-1", "--name", "copy", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, `"name": "copy"`) || len(f2.calls()) != 0 {
		t.Errorf("--dry-run: exit %d, calls %v, stdout:\n%s", r.code, f2.calls(), r.stdout)
	}
}
