package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// vncViewers are the viewers podvisorctl starts when one is installed, in
// this order, and how each is given the address.
var vncViewers = []struct {
	name string
	url  bool // vnc://HOST:PORT; else HOST::PORT (TigerVNC, TightVNC, RealVNC)
}{
	{"remote-viewer", true},
	{"vncviewer", false},
	{"xtigervncviewer", false},
	{"xtightvncviewer", false},
	{"krdc", true},
}

func (a *app) vncCmd() *cobra.Command {
	var (
		port   int
		viewer string
	)
	cmd := &cobra.Command{
		Use:   "vnc POD",
		Short: "Show a VM's display: a local VNC port (and a viewer, if one is installed)",
		Long: `Forwards a local port to the VNC display of a VM pod:

  kubectl port-forward -n NAMESPACE pod/POD --address 127.0.0.1 [PORT]:5900

Every podvisor VM has a VNC display. It listens on a unix socket in the
VM's directory on the node, never on a TCP port of the node or the pod.
podvisor connects port-forwards to port 5900 of a VM pod to that socket
(the guest's own port 5900 cannot be forwarded). The connection runs
through the API server and kubelet, which kubectl authenticates; the
display has no password of its own, so anyone who may port-forward to the
pod sees it.

podvisorctl prints the local address (vnc://127.0.0.1:PORT) and, with a
graphical session ($DISPLAY or $WAYLAND_DISPLAY), starts the first VNC
viewer installed of remote-viewer, vncviewer, xtigervncviewer,
xtightvncviewer and krdc; closing the viewer ends the forward. Without one
it keeps forwarding until Ctrl-C: connect any VNC client to the address.`,
		Example: `  podvisorctl vnc cirros-vm
  podvisorctl vnc --port 5901 --viewer none ubuntu-vm     # then: vncviewer 127.0.0.1::5901
  kubectl podvisor -n vms vnc --viewer remote-viewer my-vm`,
		Args:              onePod,
		ValidArgsFunction: a.completeVMPods,
		RunE: func(cmd *cobra.Command, args []string) error {
			if port < 0 || port > 65535 {
				return fmt.Errorf("--port %d: want a local port, 1 to 65535, or 0 for a free one", port)
			}
			return a.vnc(cmd.Context(), args[0], port, viewer)
		},
	}
	cmd.Flags().IntVar(&port, "port", 0, "local port to listen on, on 127.0.0.1 (0: a free one)")
	cmd.Flags().StringVar(&viewer, "viewer", "auto", `VNC viewer to start: "auto" (the first installed, if there is a graphical session), "none", or a program (given vnc://127.0.0.1:PORT, or 127.0.0.1::PORT if its name ends in vncviewer)`)
	return cmd
}

func (a *app) vnc(ctx context.Context, pod string, port int, viewer string) error {
	k, err := a.kubectl()
	if err != nil {
		return err
	}
	var viewerPath string
	if viewer != "auto" && viewer != "none" {
		if viewerPath, err = a.lookPath(viewer); err != nil {
			return fmt.Errorf("--viewer %s: not found (%v); give an installed VNC viewer, or --viewer none", viewer, err)
		}
	}
	vm, err := a.vmPod(ctx, k, pod)
	if err != nil {
		return err
	}
	tun, err := a.portForward(ctx, k, vm, port, hypervisor.DisplayPort)
	if err != nil {
		return err
	}
	defer tun.stop()
	fmt.Fprintf(a.stdout, "VNC display of %s (domain %s on node %s): vnc://127.0.0.1:%d\n", vm.ref(), vm.Domain, vm.Node, tun.local)
	if viewer == "auto" {
		viewerPath = a.findViewer()
	}
	if viewerPath == "" {
		why := "no VNC viewer found (remote-viewer, vncviewer, xtigervncviewer, xtightvncviewer, krdc)"
		switch {
		case viewer == "none":
			why = "--viewer none"
		case a.getenv("DISPLAY") == "" && a.getenv("WAYLAND_DISPLAY") == "":
			why = "no graphical session ($DISPLAY and $WAYLAND_DISPLAY are empty)"
		}
		fmt.Fprintf(a.stderr, "Not starting a viewer: %s. Connect a VNC client to 127.0.0.1:%d; Ctrl-C stops the forward.\n", why, tun.local)
		select {
		case <-ctx.Done():
			return nil
		case <-tun.exited:
			return a.tunnelEnded(tun)
		}
	}
	addr := viewerAddress(viewerPath, tun.local)
	fmt.Fprintf(a.stderr, "Starting %s %s; closing it ends the forward.\n", filepath.Base(viewerPath), addr)
	c := newCommand(ctx, viewerPath, []string{addr})
	c.Stdin, c.Stdout, c.Stderr = nil, a.stderr, a.stderr
	err = c.Run()
	if err != nil {
		if msg := strings.TrimSpace(tun.stderr.String()); msg != "" {
			fmt.Fprintf(a.stderr, "kubectl port-forward said:\n%s\n", msg)
		}
	}
	return passExit(err, filepath.Base(viewerPath))
}

// findViewer returns the first installed viewer, when there is a
// graphical session to show it in.
func (a *app) findViewer() string {
	if a.getenv("DISPLAY") == "" && a.getenv("WAYLAND_DISPLAY") == "" {
		return ""
	}
	for _, v := range vncViewers {
		if p, err := a.lookPath(v.name); err == nil {
			return p
		}
	}
	return ""
}

// viewerAddress is the address argument the viewer understands.
func viewerAddress(path string, port int) string {
	base := filepath.Base(path)
	for _, v := range vncViewers {
		if v.name == base && !v.url {
			return "127.0.0.1::" + strconv.Itoa(port)
		}
	}
	if strings.HasSuffix(base, "vncviewer") {
		return "127.0.0.1::" + strconv.Itoa(port)
	}
	return "vnc://127.0.0.1:" + strconv.Itoa(port)
}

// tunnelEnded reports a port-forward that stopped by itself (the pod went
// away, or kubectl gave up after a failed connection).
func (a *app) tunnelEnded(t *tunnel) error {
	msg := strings.TrimSpace(t.stderr.String())
	if msg == "" {
		msg = fmt.Sprint(t.err())
	}
	return fmt.Errorf("kubectl %s ended: %s", quoteArgs(t.args), msg)
}
