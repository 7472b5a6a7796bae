package simhv

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

var _ hypervisor.Saver = (*Hypervisor)(nil)

// saveFormat marks the simulation's save files.
const saveFormat = "simhv-save-1"

// ReasonRestored is the reason of a domain running after Restore, as
// libvirt names it.
const ReasonRestored hypervisor.Reason = "restored"

// saveFile is what Save writes: the definition and the guest's state, as
// libvirt's save file holds the definition and QEMU's migration stream.
type saveFile struct {
	Format string `json:"format"`
	XML    string `json:"xml"`
	// Uptime is the guest time when the state was saved: a restored guest
	// continues from it, its boot long done.
	Uptime   time.Duration `json:"uptime"`
	BootTime time.Duration `json:"bootTime"`
	BootStep int           `json:"bootStep"`
	// Memory and VCPUs are the saved hardware a restore must match.
	Memory uint64 `json:"memory"`
	VCPUs  int    `json:"vcpus"`
}

// Save writes the running domain's state to path and shuts it off with
// ReasonSaved. A domain with a <filesystem> (a 9p share) is refused with
// hypervisor.ErrNotSavable as QEMU refuses it while the share is mounted;
// the simulated guest always mounts its shares.
func (h *Hypervisor) Save(ctx context.Context, name, path string) error {
	return h.call(ctx, OpSave, name, func() error { return h.saveState(name, path) })
}

func (h *Hypervisor) saveState(name, path string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.runningLocked(name)
	if err != nil {
		return err
	}
	if p, perr := parseDefinition(d.rec.XML); perr == nil && p.dom.Devices != nil {
		for _, fs := range p.dom.Devices.Filesystems {
			if fs.Target != nil && fs.Source != nil && fs.Source.Mount != nil {
				return fmt.Errorf("saving domain '%s': %w: Migration is disabled when VirtFS export path '%s' is mounted in the guest using mount_tag '%s'",
					name, hypervisor.ErrNotSavable, fs.Source.Mount.Dir, fs.Target.Dir)
			}
		}
	}
	now := h.clock.Now()
	sf := saveFile{Format: saveFormat, XML: d.rec.XML, Uptime: d.uptime(now), BootTime: d.rec.Run.BootTime,
		BootStep: d.bootStep, Memory: d.rec.Run.MemoryBytes, VCPUs: d.rec.Run.VCPUs}
	data, err := json.Marshal(sf)
	if err != nil {
		return fmt.Errorf("saving domain '%s': %w", name, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("saving domain '%s': %w", name, err)
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return fmt.Errorf("saving domain '%s' to %s: %w", name, path, werr)
	}
	return h.stopLocked(d, hypervisor.StateShutoff, hypervisor.ReasonSaved, 0, now, true)
}

// SavedXML returns the definition in a save file.
func (h *Hypervisor) SavedXML(ctx context.Context, path string) (string, error) {
	var x string
	err := h.call(ctx, OpSavedXML, "", func() error {
		sf, err := readSaveFile(path)
		x = sf.XML
		return err
	})
	return x, err
}

func readSaveFile(path string) (saveFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return saveFile{}, fmt.Errorf("reading save file: %w", err)
	}
	var sf saveFile
	if err := json.Unmarshal(data, &sf); err != nil || sf.Format != saveFormat {
		return saveFile{}, errdefs.InvalidArgumentf("operation failed: image file '%s' is not a save file (%v)", path, err)
	}
	return sf, nil
}

// Restore starts a domain from a save file with domainXML as its
// definition. Memory and vCPUs must match the saved ones (libvirt's ABI
// check); the name, UUID, paths and environment may differ. A defined,
// shut off domain of that name is started from the file; without one the
// domain is defined first (the simulation has no transient domains).
func (h *Hypervisor) Restore(ctx context.Context, path, domainXML string) error {
	p, perr := parseDefinition(domainXML)
	name := ""
	if p != nil {
		name = p.name
	}
	return h.call(ctx, OpRestore, name, func() error {
		if perr != nil {
			return perr
		}
		sf, err := readSaveFile(path)
		if err != nil {
			return err
		}
		if p.cfg.memoryBytes != sf.Memory || p.cfg.vcpus != sf.VCPUs {
			return errdefs.InvalidArgumentf("unsupported configuration: target domain '%s' (memory %d, %d vCPUs) does not match the saved one (memory %d, %d vCPUs)",
				name, p.cfg.memoryBytes, p.cfg.vcpus, sf.Memory, sf.VCPUs)
		}
		if err := h.defineForRestore(p, domainXML); err != nil {
			return err
		}
		return h.resume(name, sf)
	})
}

// defineForRestore makes sure a shut off domain of p's name exists with
// p's definition.
func (h *Hypervisor) defineForRestore(p *definition, raw string) error {
	h.mu.Lock()
	d := h.domains[p.name]
	h.mu.Unlock()
	if d != nil && p.uuid == "" {
		p.uuid = d.rec.UUID
		if err := p.marshal(); err != nil {
			return err
		}
	}
	h.mu.Lock()
	active := d != nil && d.active()
	h.mu.Unlock()
	if active {
		return fmt.Errorf("%w: domain '%s' is already running", hypervisor.ErrInvalidState, p.name)
	}
	_, err := h.define(p, raw)
	return err
}

// resume starts the named domain as the saved guest: no boot, the guest's
// clock where it was.
func (h *Hypervisor) resume(name string, sf saveFile) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.lookupLocked(name)
	if err != nil {
		return err
	}
	pid := h.nextPID
	if err := h.saveMeta(pid + 1); err != nil {
		return err
	}
	h.nextPID = pid + 1
	now := h.clock.Now()
	rec := d.rec
	rec.State, rec.Reason = hypervisor.StateRunning, ReasonRestored
	rec.PID = pid
	rec.StartedAt, rec.FinishedAt, rec.ExitCode = now, time.Time{}, 0
	rec.Run = runState{
		MemoryBytes: d.cfg.memoryBytes, VCPUs: d.cfg.vcpus,
		Agent: d.cfg.agent, Serial: d.cfg.serial, Display: d.cfg.display,
		BootTime: sf.BootTime, UptimeBase: sf.Uptime, ResumedAt: now,
	}
	if err := h.apply(d, rec); err != nil {
		return err
	}
	d.newRun()
	d.bootStep = sf.BootStep
	h.replan(d, now)
	return nil
}
