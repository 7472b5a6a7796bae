package simhv

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/internal/rfb"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

func withDisplay(d *libvirtxml.Domain) {
	d.Devices.Graphics = append(d.Devices.Graphics, libvirtxml.DomainGraphic{VNC: &libvirtxml.DomainGraphicVNC{Socket: "/run/vm/vnc.sock"}})
}

// TestDisplay: a running domain with a VNC display answers the RFB
// handshake, several clients at once; the connections end with the run;
// a stopped domain or one without a display is refused.
func TestDisplay(t *testing.T) {
	f := newFixture(t, Options{})
	f.start("vm", withDisplay)
	f.start("headless")
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()

	var conns []io.ReadWriteCloser
	for range 2 {
		c, err := f.hv.Display(ctx, "vm")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		si, err := rfb.Handshake(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if want := (rfb.ServerInit{Version: "RFB 003.008", Width: DisplayWidth, Height: DisplayHeight, BitsPerPixel: 32, Depth: 24, Name: "QEMU (vm)"}); si != want {
			t.Errorf("ServerInit %+v, want %+v", si, want)
		}
		conns = append(conns, c)
	}
	if _, err := f.hv.Display(ctx, "headless"); !errors.Is(err, hypervisor.ErrUnimplemented) {
		t.Errorf("Display of a domain without graphics: %v, want ErrUnimplemented", err)
	}
	if _, err := f.hv.Display(ctx, "nosuch"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Display of no domain: %v, want ErrNotFound", err)
	}
	if err := f.hv.Destroy(ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("connection %d still open after the domain stopped", i)
		}
	}
	if _, err := f.hv.Display(ctx, "vm"); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Errorf("Display of a stopped domain: %v, want ErrInvalidState", err)
	}
}
