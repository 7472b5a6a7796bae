package simhv

import (
	"errors"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

func TestDefineRefuses(t *testing.T) {
	const existing = "existing"
	tests := []struct {
		name    string
		xml     func(t *testing.T) string
		kind    error
		wantMsg string
	}{
		{"unparsable", func(*testing.T) string { return "<domain type='kvm'><name>x</name" }, errdefs.ErrInvalidArgument, "XML error"},
		{"empty document", func(*testing.T) string { return "" }, errdefs.ErrInvalidArgument, "XML error"},
		{"not a domain", func(*testing.T) string { return "<network><name>x</name></network>" }, errdefs.ErrInvalidArgument, "XML error"},
		{"missing name", func(t *testing.T) string { return domainXML(t, "", func(d *libvirtxml.Domain) { d.Name = "" }) }, errdefs.ErrInvalidArgument, "missing name"},
		{"name with slash", func(t *testing.T) string { return domainXML(t, "a/b") }, errdefs.ErrInvalidArgument, "cannot contain '/'"},
		{"missing type", func(t *testing.T) string { return domainXML(t, "vm", func(d *libvirtxml.Domain) { d.Type = "" }) }, errdefs.ErrInvalidArgument, "missing domain type"},
		{"xen type", func(t *testing.T) string { return domainXML(t, "vm", func(d *libvirtxml.Domain) { d.Type = "xen" }) }, errdefs.ErrInvalidArgument, "domain type 'xen'"},
		{"no memory", func(t *testing.T) string { return domainXML(t, "vm", func(d *libvirtxml.Domain) { d.Memory = nil }) }, errdefs.ErrInvalidArgument, "Memory size must be specified"},
		{"zero memory", func(t *testing.T) string {
			return domainXML(t, "vm", func(d *libvirtxml.Domain) { d.Memory.Value = 0 })
		}, errdefs.ErrInvalidArgument, "Memory size must be specified"},
		{"bad memory unit", func(t *testing.T) string {
			return domainXML(t, "vm", func(d *libvirtxml.Domain) { d.Memory.Unit = "parsecs" })
		}, errdefs.ErrInvalidArgument, "unknown suffix 'parsecs'"},
		{"overflowing memory", func(t *testing.T) string {
			return domainXML(t, "vm", func(d *libvirtxml.Domain) { d.Memory.Value, d.Memory.Unit = 1<<40, "EiB" })
		}, errdefs.ErrInvalidArgument, "too large"},
		{"malformed uuid", func(t *testing.T) string {
			return domainXML(t, "vm", func(d *libvirtxml.Domain) { d.UUID = "not-a-uuid" })
		}, errdefs.ErrInvalidArgument, "malformed uuid"},
		{"short uuid", func(t *testing.T) string {
			return domainXML(t, "vm", func(d *libvirtxml.Domain) { d.UUID = "1234567890abcdef1234567890abcde" })
		}, errdefs.ErrInvalidArgument, "malformed uuid"},
		{"long uuid", func(t *testing.T) string {
			return domainXML(t, "vm", func(d *libvirtxml.Domain) { d.UUID = "1234567890abcdef1234567890abcdef00" })
		}, errdefs.ErrInvalidArgument, "malformed uuid"},
		{"duplicate name, other uuid", func(t *testing.T) string {
			return domainXML(t, existing, func(d *libvirtxml.Domain) { d.UUID = uuidFor("other") })
		}, errdefs.ErrAlreadyExists, "domain 'existing' already exists with uuid " + uuidFor(existing)},
		{"duplicate name, no uuid", func(t *testing.T) string {
			return domainXML(t, existing, func(d *libvirtxml.Domain) { d.UUID = "" })
		}, errdefs.ErrAlreadyExists, "domain 'existing' already exists with uuid"},
		{"duplicate uuid, other name", func(t *testing.T) string {
			return domainXML(t, "vm", func(d *libvirtxml.Domain) { d.UUID = uuidFor(existing) })
		}, errdefs.ErrAlreadyExists, "domain 'existing' is already defined with uuid " + uuidFor(existing)},
		{"unknown disk bus", func(t *testing.T) string { return domainXML(t, "vm", withDisk("vdb", "floppy-ish", "/b")) }, errdefs.ErrInvalidArgument, "unknown disk bus type 'floppy-ish'"},
		{"duplicate disk target", func(t *testing.T) string { return domainXML(t, "vm", withDisk("vda", "virtio", "/b")) }, errdefs.ErrInvalidArgument, "target 'vda' duplicated for disk sources '/var/lib/podvisor/vm.qcow2' and '/b'"},
		{"missing disk target", func(t *testing.T) string { return domainXML(t, "vm", withDisk("", "", "/b")) }, errdefs.ErrInvalidArgument, "missing target information for device /b"},
		{"disk target without dev", func(t *testing.T) string { return domainXML(t, "vm", withDisk("", "virtio", "/b")) }, errdefs.ErrInvalidArgument, "missing target information for device /b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			f.define(existing)
			_, err := f.hv.Define(f.ctx, tt.xml(t))
			if err == nil {
				t.Fatal("Define succeeded, want an error")
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("error %q is not of kind %v", err, tt.kind)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			list, lerr := f.hv.List(f.ctx)
			if lerr != nil {
				t.Fatal(lerr)
			}
			if len(list) != 1 || list[0].Name != existing || list[0].UUID != uuidFor(existing) {
				t.Errorf("after a refused Define, List = %+v, want only %s", list, existing)
			}
			if got := f.hv.DefinedXML("vm"); len(got) != 0 {
				t.Errorf("refused definition recorded: %v", got)
			}
			if got := f.hv.DefinedXML(existing); len(got) != 1 {
				t.Errorf("DefinedXML(%s) has %d entries, want 1", existing, len(got))
			}
		})
	}
}

func TestDefineAccepts(t *testing.T) {
	tests := []struct {
		name     string
		opt      xmlOpt
		wantUUID string // "" = any valid generated UUID
		wantMem  uint64
		wantCPUs int
	}{
		{"defaults", func(*libvirtxml.Domain) {}, uuidFor("vm"), 512 << 20, 2},
		{"qemu type", func(d *libvirtxml.Domain) { d.Type = "qemu" }, uuidFor("vm"), 512 << 20, 2},
		{"default unit KiB", func(d *libvirtxml.Domain) { d.Memory.Value, d.Memory.Unit = 1024, "" }, uuidFor("vm"), 1 << 20, 2},
		{"unit GB is decimal", func(d *libvirtxml.Domain) { d.Memory.Value, d.Memory.Unit = 2, "GB" }, uuidFor("vm"), 2e9, 2},
		{"unit G is binary", func(d *libvirtxml.Domain) { d.Memory.Value, d.Memory.Unit = 2, "G" }, uuidFor("vm"), 2 << 30, 2},
		{"unit bytes", func(d *libvirtxml.Domain) { d.Memory.Value, d.Memory.Unit = 4096, "bytes" }, uuidFor("vm"), 4096, 2},
		{"no vcpu element", func(d *libvirtxml.Domain) { d.VCPU = nil }, uuidFor("vm"), 512 << 20, 1},
		{"uuid without dashes", func(d *libvirtxml.Domain) { d.UUID = "0123456789ABCDEF0123456789abcdef" }, "01234567-89ab-cdef-0123-456789abcdef", 512 << 20, 2},
		{"no uuid", func(d *libvirtxml.Domain) { d.UUID = "" }, "", 512 << 20, 2},
		{"no devices", func(d *libvirtxml.Domain) { d.Devices = nil }, uuidFor("vm"), 512 << 20, 2},
		{"disk bus implied by name", withDisk("sdb", "", "/b"), uuidFor("vm"), 512 << 20, 2},
	}
	for _, bus := range acceptedDiskBuses {
		tests = append(tests, struct {
			name     string
			opt      xmlOpt
			wantUUID string
			wantMem  uint64
			wantCPUs int
		}{"bus " + bus, withDisk("xdb", bus, "/b"), uuidFor("vm"), 512 << 20, 2})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			st, err := f.hv.Define(f.ctx, domainXML(t, "vm", tt.opt))
			if err != nil {
				t.Fatalf("Define: %v", err)
			}
			if st.Name != "vm" || st.State != hypervisor.StateShutoff || st.Reason != hypervisor.ReasonDefined || st.PID != 0 {
				t.Errorf("Define returned %+v, want vm shut off (defined), no PID", st)
			}
			if tt.wantUUID != "" && st.UUID != tt.wantUUID {
				t.Errorf("UUID %q, want %q", st.UUID, tt.wantUUID)
			}
			if _, ok := parseUUID(st.UUID); !ok {
				t.Errorf("UUID %q is not valid", st.UUID)
			}
			x, err := f.hv.XML(f.ctx, "vm")
			if err != nil {
				t.Fatal(err)
			}
			var dom libvirtxml.Domain
			if err := dom.Unmarshal(x); err != nil {
				t.Fatalf("XML() is not a domain: %v", err)
			}
			if dom.UUID != st.UUID {
				t.Errorf("XML() has uuid %q, status %q", dom.UUID, st.UUID)
			}
			if err := f.hv.Start(f.ctx, "vm"); err != nil {
				t.Fatal(err)
			}
			stats, err := f.hv.Stats(f.ctx, "vm")
			if err != nil {
				t.Fatal(err)
			}
			if stats.MemoryBytes != tt.wantMem/4 || stats.MemoryLimitBytes != tt.wantMem {
				t.Errorf("memory %d/%d, want %d", stats.MemoryBytes, stats.MemoryLimitBytes, tt.wantMem)
			}
			f.clock.Advance(10 * 1e9)
			stats, err = f.hv.Stats(f.ctx, "vm")
			if err != nil {
				t.Fatal(err)
			}
			if want := time.Duration(tt.wantCPUs) * 1e9; stats.CPUTime != want {
				t.Errorf("CPU time after 10s on %d vCPUs = %v, want %v", tt.wantCPUs, stats.CPUTime, want)
			}
		})
	}
}

func TestRedefineUpdatesDefinition(t *testing.T) {
	f := newFixture(t, Options{})
	first := domainXML(t, "vm")
	second := domainXML(t, "vm", func(d *libvirtxml.Domain) { d.Memory.Value = 1024 })
	if _, err := f.hv.Define(f.ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := f.hv.Start(f.ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	before := f.status("vm")
	st, err := f.hv.Define(f.ctx, second)
	if err != nil {
		t.Fatalf("redefining with the same UUID: %v", err)
	}
	if st != before {
		t.Errorf("redefining a running domain changed its status: %+v -> %+v", before, st)
	}
	x, err := f.hv.XML(f.ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	if dom.Memory.Value != 1024 {
		t.Errorf("XML() memory %d, want the new definition's 1024", dom.Memory.Value)
	}
	// The running domain keeps the configuration it started with.
	stats, err := f.hv.Stats(f.ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	if stats.MemoryLimitBytes != 512<<20 {
		t.Errorf("running domain memory %d, want the started 512 MiB", stats.MemoryLimitBytes)
	}
	if err := f.hv.Destroy(f.ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	if err := f.hv.Start(f.ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	if stats, err = f.hv.Stats(f.ctx, "vm"); err != nil || stats.MemoryLimitBytes != 1024<<20 {
		t.Errorf("after restart memory %d (%v), want 1 GiB", stats.MemoryLimitBytes, err)
	}
	if got := f.hv.DefinedXML("vm"); len(got) != 2 || got[0] != first || got[1] != second {
		t.Errorf("DefinedXML = %d documents, want the two defined in order", len(got))
	}
}
