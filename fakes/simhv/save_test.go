package simhv

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// A saved guest is shut off with reason saved; restored under another
// name and UUID it runs on with its guest time where it was, without
// booting again.
func TestSaveRestore(t *testing.T) {
	f := newFixture(t, Options{})
	f.start("vm", withAgent)
	f.clock.Advance(testBoot + 5*time.Second)
	before, err := f.hv.Stats(f.ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "vm.save")
	if err := f.hv.Save(f.ctx, "vm", path); err != nil {
		t.Fatalf("Save: %v", err)
	}
	f.wantState("vm", hypervisor.StateShutoff, hypervisor.ReasonSaved)
	saved, err := f.hv.SavedXML(f.ctx, path)
	if err != nil || !strings.Contains(saved, "<name>vm</name>") {
		t.Fatalf("SavedXML = %q, %v", saved, err)
	}
	f.clock.Advance(time.Hour) // time off does not count as guest time
	if err := f.hv.Restore(f.ctx, path, domainXML(t, "copy", withAgent)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	f.wantState("copy", hypervisor.StateRunning, ReasonRestored)
	after, err := f.hv.Stats(f.ctx, "copy")
	if err != nil {
		t.Fatal(err)
	}
	if after.CPUTime != before.CPUTime {
		t.Errorf("guest CPU time after restore = %v, want %v (the saved guest's)", after.CPUTime, before.CPUTime)
	}
	// Booted long ago: the agent answers at once.
	if _, err := f.hv.AgentCommand(f.ctx, "copy", `{"execute":"guest-set-time"}`, time.Second); err != nil {
		t.Errorf("agent of the restored guest: %v", err)
	}
	if g, _ := f.hv.Guest("copy"); len(g.TimeSet) != 1 {
		t.Errorf("guest-set-time not recorded: %+v", g)
	}
	// The original restores too (the same file, its own name).
	if err := f.hv.Restore(f.ctx, path, domainXML(t, "vm", withAgent)); err != nil {
		t.Fatalf("Restore into the defined original: %v", err)
	}
	f.wantState("vm", hypervisor.StateRunning, ReasonRestored)
}

func withShare(d *libvirtxml.Domain) {
	d.Devices.Filesystems = append(d.Devices.Filesystems, libvirtxml.DomainFilesystem{
		Source: &libvirtxml.DomainFilesystemSource{Mount: &libvirtxml.DomainFilesystemSourceMount{Dir: "/var/lib/kubelet/pods/x/volumes/data"}},
		Target: &libvirtxml.DomainFilesystemTarget{Dir: "pv9p0"},
	})
}

func withMemory(mib uint) xmlOpt {
	return func(d *libvirtxml.Domain) { d.Memory.Value = mib }
}

func TestSaveRestoreRefusals(t *testing.T) {
	f := newFixture(t, Options{})
	f.start("shares", withShare)
	f.define("off")
	f.start("vm")
	f.clock.Advance(testBoot)
	dir := t.TempDir()
	err := f.hv.Save(f.ctx, "shares", filepath.Join(dir, "shares.save"))
	if !errors.Is(err, hypervisor.ErrNotSavable) || !strings.Contains(err.Error(), "mount_tag 'pv9p0'") {
		t.Errorf("Save with a 9p share: %v, want ErrNotSavable naming the tag", err)
	}
	f.wantState("shares", hypervisor.StateRunning, hypervisor.ReasonBooted)
	if _, err := os.Stat(filepath.Join(dir, "shares.save")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused Save left its file: %v", err)
	}
	if err := f.hv.Save(f.ctx, "off", filepath.Join(dir, "off.save")); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Errorf("Save of a shut off domain: %v, want ErrInvalidState", err)
	}
	if err := f.hv.Save(f.ctx, "nope", filepath.Join(dir, "nope.save")); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Save of a missing domain: %v, want ErrNotFound", err)
	}
	path := filepath.Join(dir, "vm.save")
	if err := f.hv.Save(f.ctx, "vm", path); err != nil {
		t.Fatal(err)
	}
	if err := f.hv.Restore(f.ctx, path, domainXML(t, "bigger", withMemory(1024))); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "does not match the saved one") {
		t.Errorf("Restore with other memory: %v, want InvalidArgument", err)
	}
	if _, err := f.hv.Status(f.ctx, "bigger"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("a refused Restore defined the domain: %v", err)
	}
	junk := filepath.Join(dir, "junk.save")
	os.WriteFile(junk, []byte("not a save file"), 0o600)
	if err := f.hv.Restore(f.ctx, junk, domainXML(t, "vm")); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Restore of junk: %v, want InvalidArgument", err)
	}
	f.start("other")
	if err := f.hv.Restore(f.ctx, path, domainXML(t, "other")); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Errorf("Restore into a running domain: %v, want ErrInvalidState", err)
	}
}
