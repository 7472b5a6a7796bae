package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestVNC: the port-forward to the display port, the address printed, and
// which viewer starts with which argument.
func TestVNC(t *testing.T) {
	const (
		getVM = "get pod cirros-vm -o json"
		fwd   = "port-forward -n default pod/cirros-vm --address 127.0.0.1 :5900"
	)
	tests := []struct {
		name       string
		args       []string
		display    string   // $DISPLAY
		viewers    []string // fake viewers installed
		localPort  int      // --port
		setup      func(f *fake)
		cancelOn   string
		wantCalls  []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{
			name:       "no viewer installed: prints the address and forwards until Ctrl-C",
			args:       []string{"vnc", "cirros-vm"},
			display:    ":0",
			cancelOn:   "vnc://",
			wantCalls:  []string{"kubectl " + getVM, "kubectl " + fwd, "kubectl SIGTERM"},
			wantStdout: "VNC display of default/cirros-vm (domain " + vmDomain + " on node node-1): vnc://127.0.0.1:40125\n",
			wantStderr: "Not starting a viewer: no VNC viewer found (remote-viewer, vncviewer, xtigervncviewer, xtightvncviewer, krdc). Connect a VNC client to 127.0.0.1:40125; Ctrl-C stops the forward.",
		},
		{
			name:       "a viewer but no graphical session",
			args:       []string{"vnc", "cirros-vm"},
			viewers:    []string{"vncviewer"},
			cancelOn:   "vnc://",
			wantCalls:  []string{"kubectl " + getVM, "kubectl " + fwd, "kubectl SIGTERM"},
			wantStdout: "vnc://127.0.0.1:40125",
			wantStderr: "Not starting a viewer: no graphical session ($DISPLAY and $WAYLAND_DISPLAY are empty)",
		},
		{
			name:       "vncviewer is given HOST::PORT; closing it ends the forward",
			args:       []string{"vnc", "cirros-vm"},
			display:    ":0",
			viewers:    []string{"vncviewer"},
			setup:      func(f *fake) { f.add(fakeResponse{Tool: "vncviewer", Args: "127.0.0.1::40125"}) },
			wantCalls:  []string{"kubectl " + getVM, "kubectl " + fwd, "vncviewer 127.0.0.1::40125", "kubectl SIGTERM"},
			wantStdout: "vnc://127.0.0.1:40125",
			wantStderr: "Starting vncviewer 127.0.0.1::40125; closing it ends the forward.",
		},
		{
			name:      "remote-viewer comes first and is given a vnc:// URL",
			args:      []string{"vnc", "cirros-vm"},
			display:   ":0",
			viewers:   []string{"vncviewer", "remote-viewer"},
			setup:     func(f *fake) { f.add(fakeResponse{Tool: "remote-viewer", Args: "vnc://127.0.0.1:40125"}) },
			wantCalls: []string{"kubectl " + getVM, "kubectl " + fwd, "remote-viewer vnc://127.0.0.1:40125", "kubectl SIGTERM"},
		},
		{
			name:       "--viewer none, a chosen local port",
			args:       []string{"vnc", "--port", "5901", "--viewer", "none", "cirros-vm"},
			localPort:  5901,
			display:    ":0",
			viewers:    []string{"vncviewer"},
			cancelOn:   "vnc://",
			wantCalls:  []string{"kubectl " + getVM, "kubectl port-forward -n default pod/cirros-vm --address 127.0.0.1 5901:5900", "kubectl SIGTERM"},
			wantStdout: "vnc://127.0.0.1:5901",
			wantStderr: "Not starting a viewer: --viewer none.",
		},
		{
			name:      "--viewer PROG without a graphical session, and its exit code",
			args:      []string{"vnc", "--viewer", "remote-viewer", "cirros-vm"},
			viewers:   []string{"remote-viewer"},
			setup:     func(f *fake) { f.add(fakeResponse{Tool: "remote-viewer", Args: "vnc://127.0.0.1:40125", Exit: 3}) },
			wantCalls: []string{"kubectl " + getVM, "kubectl " + fwd, "remote-viewer vnc://127.0.0.1:40125", "kubectl SIGTERM"},
			wantCode:  3,
		},
		{
			name: "the forward ends by itself: kubectl's reason",
			args: []string{"vnc", "--viewer", "none", "cirros-vm"},
			setup: func(f *fake) {
				f.responses[1].Block = false
				f.responses[1].Exit = 1
				f.responses[1].Stderr = "error: lost connection to pod\n"
			},
			wantCalls:  []string{"kubectl " + getVM, "kubectl " + fwd},
			wantCode:   1,
			wantStderr: "podvisorctl: kubectl port-forward -n default pod/cirros-vm --address 127.0.0.1 :5900 ended: error: lost connection to pod",
		},
		{
			name:       "--viewer that is not installed",
			args:       []string{"vnc", "--viewer", "tigervnc", "cirros-vm"},
			wantCode:   1,
			wantStderr: "--viewer tigervnc: not found",
		},
		{
			name:       "bad --port",
			args:       []string{"vnc", "--port", "70000", "cirros-vm"},
			wantCode:   1,
			wantStderr: "--port 70000: want a local port, 1 to 65535, or 0 for a free one",
		},
		{
			name:       "not a VM pod",
			args:       []string{"vnc", "nginx"},
			setup:      func(f *fake) { f.responses = nil; f.on("get pod nginx -o json", nginx.json()) },
			wantCalls:  []string{"kubectl get pod nginx -o json"},
			wantCode:   1,
			wantStderr: "pod default/nginx is not a VM pod",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			t.Setenv("DISPLAY", tc.display)
			t.Setenv("WAYLAND_DISPLAY", "")
			for _, v := range tc.viewers {
				f.tool(v)
			}
			f.on(getVM, cirrosVM.json())
			// kubectl listens on the chosen port, else on 40125.
			local, spec := 40125, ":5900"
			if tc.localPort != 0 {
				local, spec = tc.localPort, fmt.Sprintf("%d:5900", tc.localPort)
			}
			f.add(fakeResponse{Args: strings.TrimSuffix(fwd, ":5900") + spec, Stdout: forwarding(local, 5900), Block: true})
			if tc.setup != nil {
				tc.setup(f)
			}
			f.cancelOn = tc.cancelOn
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
		})
	}
}
