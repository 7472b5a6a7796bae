package simhv

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// The simulated display: what QEMU 7.2's VNC server says before the guest
// draws (TestLibvirtDisplay: 640x480, desktop "QEMU (DOMAIN)") over RFB
// 3.8 with security type None, the way podvisor's domains are configured
// (runtime/domain: VNC on a unix socket, no password).
const (
	DisplayWidth  = 640
	DisplayHeight = 480
	rfbVersion    = "RFB 003.008\n"
)

// Display connects to the display of an active domain with a <graphics
// type='vnc'>: an RFB server that does the handshake and then reads and
// drops the client's messages. It sends no framebuffer updates. The
// connection ends with the run, as QEMU's does when the VM stops.
func (h *Hypervisor) Display(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	return openStream(ctx, h, OpDisplay, name, func() (io.ReadWriteCloser, error) { return h.openDisplay(name) })
}

func (h *Hypervisor) openDisplay(name string) (net.Conn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.runningLocked(name)
	if err != nil {
		return nil, err
	}
	if !d.rec.Run.Display {
		return nil, fmt.Errorf("%w: domain '%s' has no <graphics type='vnc'>", hypervisor.ErrUnimplemented, name)
	}
	client, server := net.Pipe()
	d.displays = append(d.displays, server)
	go serveRFB(server, "QEMU ("+name+")")
	return client, nil
}

// closeDisplaysLocked ends the run's display connections.
func (d *domain) closeDisplaysLocked() {
	for _, c := range d.displays {
		_ = c.Close()
	}
	d.displays = nil
}

// serveRFB is the server side of the RFB handshake (RFC 6143, 7.1-7.3).
func serveRFB(c net.Conn, name string) {
	defer c.Close()
	var version [12]byte
	if _, err := c.Write([]byte(rfbVersion)); err != nil {
		return
	}
	if _, err := io.ReadFull(c, version[:]); err != nil || string(version[:]) != rfbVersion {
		return
	}
	if _, err := c.Write([]byte{1, 1}); err != nil { // one security type: None
		return
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 1 {
		return
	}
	if _, err := c.Write([]byte{0, 0, 0, 0}); err != nil { // SecurityResult OK
		return
	}
	if _, err := io.ReadFull(c, b[:]); err != nil { // ClientInit
		return
	}
	init := binary.BigEndian.AppendUint16(nil, DisplayWidth)
	init = binary.BigEndian.AppendUint16(init, DisplayHeight)
	// 32 bits per pixel, depth 24, little-endian true colour, 8 bits each
	// of red, green, blue at shifts 16, 8, 0 (QEMU's default), padding.
	init = append(init, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0)
	init = binary.BigEndian.AppendUint32(init, uint32(len(name)))
	init = append(init, name...)
	if _, err := c.Write(init); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, c)
}
