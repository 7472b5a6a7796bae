package simhv

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/fakes/clock"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

var epoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// deadline bounds every wait for a condition; it is generous because the
// conditions are met in microseconds unless something is broken.
const deadline = 20 * time.Second

const testBoot = 600 * time.Millisecond

type xmlOpt func(*libvirtxml.Domain)

func uuidFor(name string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(name)).String()
}

// domainXML builds a typical podvisor domain: kvm, 512 MiB, 2 vCPUs, a virtio
// root disk, a serial console and no agent.
func domainXML(t testing.TB, name string, opts ...xmlOpt) string {
	t.Helper()
	port := uint(0)
	dom := &libvirtxml.Domain{
		Type:   "kvm",
		Name:   name,
		UUID:   uuidFor(name),
		Memory: &libvirtxml.DomainMemory{Value: 512, Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: 2},
		Devices: &libvirtxml.DomainDeviceList{
			Disks: []libvirtxml.DomainDisk{{
				Device: "disk",
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: "/var/lib/podvisor/" + name + ".qcow2"}},
				Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
			}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
				Target: &libvirtxml.DomainSerialTarget{Port: &port},
			}},
		},
	}
	for _, o := range opts {
		o(dom)
	}
	x, err := dom.Marshal()
	if err != nil {
		t.Fatalf("marshalling test domain: %v", err)
	}
	return x
}

func withAgent(d *libvirtxml.Domain) {
	d.Devices.Channels = append(d.Devices.Channels, libvirtxml.DomainChannel{
		Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind"}},
		Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: AgentChannel}},
	})
}

func withoutSerial(d *libvirtxml.Domain) { d.Devices.Serials = nil }

func withDisk(dev, bus, file string) xmlOpt {
	return func(d *libvirtxml.Domain) {
		disk := libvirtxml.DomainDisk{
			Device: "disk",
			Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: file}},
		}
		if dev != "" || bus != "" {
			disk.Target = &libvirtxml.DomainDiskTarget{Dev: dev, Bus: bus}
		}
		d.Devices.Disks = append(d.Devices.Disks, disk)
	}
}

type fixture struct {
	t     testing.TB
	hv    *Hypervisor
	clock *clock.Fake
	ctx   context.Context
}

func newFixture(t testing.TB, opts Options) *fixture {
	t.Helper()
	fc := clock.NewFake(epoch)
	if opts.Clock == nil {
		opts.Clock = fc
	} else {
		fc = opts.Clock.(*clock.Fake)
	}
	if opts.BootTime == 0 {
		opts.BootTime = testBoot
	}
	hv, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { hv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	return &fixture{t: t, hv: hv, clock: fc, ctx: ctx}
}

func (f *fixture) define(name string, opts ...xmlOpt) hypervisor.DomainStatus {
	f.t.Helper()
	st, err := f.hv.Define(f.ctx, domainXML(f.t, name, opts...))
	if err != nil {
		f.t.Fatalf("Define %s: %v", name, err)
	}
	return st
}

func (f *fixture) start(name string, opts ...xmlOpt) {
	f.t.Helper()
	f.define(name, opts...)
	if err := f.hv.Start(f.ctx, name); err != nil {
		f.t.Fatalf("Start %s: %v", name, err)
	}
}

func (f *fixture) status(name string) hypervisor.DomainStatus {
	f.t.Helper()
	st, err := f.hv.Status(f.ctx, name)
	if err != nil {
		f.t.Fatalf("Status %s: %v", name, err)
	}
	return st
}

func (f *fixture) wantState(name string, state hypervisor.State, reason hypervisor.Reason) hypervisor.DomainStatus {
	f.t.Helper()
	st := f.status(name)
	if st.State != state || st.Reason != reason {
		f.t.Fatalf("%s: state %v/%s, want %v/%s", name, st.State, st.Reason, state, reason)
	}
	return st
}

func (f *fixture) console(name string) *consoleReader {
	f.t.Helper()
	c, err := f.hv.Console(f.ctx, name)
	if err != nil {
		f.t.Fatalf("Console %s: %v", name, err)
	}
	return newConsoleReader(f.t, c)
}

// consoleReader reads a console on a goroutine so that tests can wait for
// output with a deadline.
type consoleReader struct {
	t    testing.TB
	rwc  io.ReadWriteCloser
	mu   sync.Mutex
	cond *sync.Cond
	buf  bytes.Buffer
	err  error
}

func newConsoleReader(t testing.TB, rwc io.ReadWriteCloser) *consoleReader {
	r := &consoleReader{t: t, rwc: rwc}
	r.cond = sync.NewCond(&r.mu)
	go func() {
		p := make([]byte, 512)
		for {
			n, err := rwc.Read(p)
			r.mu.Lock()
			r.buf.Write(p[:n])
			if err != nil {
				r.err = err
			}
			r.cond.Broadcast()
			r.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { rwc.Close() })
	return r
}

// waitFor waits until cond holds on the output read so far, or the read
// ended, or the deadline passed.
func (r *consoleReader) waitFor(cond func(out string, err error) bool) (string, error) {
	timer := time.AfterFunc(deadline, func() {
		r.mu.Lock()
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	defer timer.Stop()
	start := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for !cond(r.buf.String(), r.err) && r.err == nil && time.Since(start) < deadline {
		r.cond.Wait()
	}
	return r.buf.String(), r.err
}

// expect waits for want in the output, then consumes the output up to and
// including it and returns what came before.
func (r *consoleReader) expect(want string) string {
	r.t.Helper()
	out, err := r.waitFor(func(out string, _ error) bool { return strings.Contains(out, want) })
	i := strings.Index(out, want)
	if i < 0 {
		r.t.Fatalf("console output %q does not contain %q (read error: %v)", out, want, err)
	}
	r.mu.Lock()
	r.buf.Next(i + len(want))
	r.mu.Unlock()
	return out[:i]
}

// expectEnd waits for the read to end and returns the output left.
func (r *consoleReader) expectEnd(wantErr error) string {
	r.t.Helper()
	out, err := r.waitFor(func(_ string, err error) bool { return err != nil })
	if !errors.Is(err, wantErr) {
		r.t.Fatalf("console read ended with %v, want %v (output %q)", err, wantErr, out)
	}
	return out
}

// pending returns the output read and not yet consumed.
func (r *consoleReader) pending() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

func (r *consoleReader) write(s string) {
	r.t.Helper()
	if _, err := r.rwc.Write([]byte(s)); err != nil {
		r.t.Fatalf("console write %q: %v", s, err)
	}
}
