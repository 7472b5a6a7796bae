package libvirt

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/podvisor/podvisor/runtime/hypervisor"
	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"
)

// Console connects to the unix socket of the domain's first serial port
// (<serial type='unix'><source mode='bind' path='...'/>), which QEMU serves.
// One console per domain at a time.
func (h *Hypervisor) Console(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	x, err := h.runningXML(ctx, "opening the console of domain", name)
	if err != nil {
		return nil, err
	}
	path, err := consoleSocket(x)
	if err != nil {
		return nil, fmt.Errorf("opening the console of domain %q: %w", name, err)
	}

	h.mu.Lock()
	if h.consoles[name] {
		h.mu.Unlock()
		return nil, fmt.Errorf("opening the console of domain %q: %w: a console is already open", name, hypervisor.ErrInvalidState)
	}
	h.consoles[name] = true
	h.mu.Unlock()

	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", path)
	if err != nil {
		h.releaseConsole(name)
		return nil, fmt.Errorf("opening the console of domain %q: connecting to %s: %w", name, path, err)
	}
	return &console{Conn: conn, release: func() { h.releaseConsole(name) }}, nil
}

func (h *Hypervisor) releaseConsole(name string) {
	h.mu.Lock()
	delete(h.consoles, name)
	h.mu.Unlock()
}

// consoleSocket finds the unix socket path of the first serial port.
func consoleSocket(domainXML string) (string, error) {
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(domainXML); err != nil {
		return "", fmt.Errorf("parsing the domain XML: %w", err)
	}
	if dom.Devices != nil {
		for _, s := range dom.Devices.Serials {
			if s.Source != nil && s.Source.UNIX != nil && s.Source.UNIX.Path != "" &&
				(s.Source.UNIX.Mode == "" || s.Source.UNIX.Mode == "bind") {
				return s.Source.UNIX.Path, nil
			}
		}
	}
	return "", fmt.Errorf("%w: the domain has no <serial type='unix'> with <source mode='bind' path='...'/>", hypervisor.ErrUnimplemented)
}

// console releases the domain's console slot once, on Close.
type console struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *console) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// runningXML returns the live XML of domain name, or ErrInvalidState when it
// is not running; what says what the caller was doing, for the errors.
func (h *Hypervisor) runningXML(ctx context.Context, what, name string) (string, error) {
	var x string
	var active bool
	err := h.withDomain(ctx, what, name, func(d *lv.Domain) error {
		var err error
		if active, err = d.IsActive(); err != nil {
			return err
		}
		x, err = d.GetXMLDesc(0)
		return err
	})
	if err != nil {
		return "", err
	}
	if !active {
		return "", fmt.Errorf("%s %q: %w: the domain is not running", what, name, hypervisor.ErrInvalidState)
	}
	return x, nil
}
