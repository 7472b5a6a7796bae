package libvirt

import (
	"context"
	"fmt"
	"io"
	"net"

	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// Display connects to the VNC server of a running domain on the unix
// socket its <graphics type='vnc'> listens on (runtime/domain puts it in
// the VM's directory). QEMU serves several clients at once.
func (h *Hypervisor) Display(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	x, err := h.runningXML(ctx, "opening the display of domain", name)
	if err != nil {
		return nil, err
	}
	path, err := displaySocket(x)
	if err != nil {
		return nil, fmt.Errorf("opening the display of domain %q: %w", name, err)
	}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("opening the display of domain %q: connecting to %s: %w", name, path, err)
	}
	return conn, nil
}

// displaySocket finds the unix socket of the domain's VNC display.
func displaySocket(domainXML string) (string, error) {
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(domainXML); err != nil {
		return "", fmt.Errorf("parsing the domain XML: %w", err)
	}
	if dom.Devices != nil {
		for _, g := range dom.Devices.Graphics {
			if g.VNC == nil {
				continue
			}
			if g.VNC.Socket != "" {
				return g.VNC.Socket, nil
			}
			for _, l := range g.VNC.Listeners {
				if l.Socket != nil && l.Socket.Socket != "" {
					return l.Socket.Socket, nil
				}
			}
		}
	}
	return "", fmt.Errorf("%w: the domain has no <graphics type='vnc'> listening on a unix socket", hypervisor.ErrUnimplemented)
}
