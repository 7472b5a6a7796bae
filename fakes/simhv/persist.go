package simhv

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// State directory layout:
//
//	<StateDir>/sim.json            {"nextPID": N}
//	<StateDir>/domains/<uuid>.json one record per domain
//
// Files are replaced atomically (temporary file + rename), which is what a
// process killed at any instant needs; they are not fsynced, as the model is
// a crashing daemon, not a failing machine.

const recordVersion = 1

type domainFile struct {
	Version int    `json:"version"`
	Domain  record `json:"domain"`
}

type metaFile struct {
	Version int `json:"version"`
	NextPID int `json:"nextPID"`
}

func (h *Hypervisor) domainsDir() string { return filepath.Join(h.opts.StateDir, "domains") }

func (h *Hypervisor) recordPath(uuid string) string {
	return filepath.Join(h.domainsDir(), uuid+".json")
}

// save persists a domain record (no-op without a state dir).
func (h *Hypervisor) save(rec record) error {
	if h.opts.StateDir == "" || h.closed {
		return nil
	}
	data, err := json.MarshalIndent(domainFile{Version: recordVersion, Domain: rec}, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding state of domain '%s': %w", rec.Name, err)
	}
	if err := writeAtomic(h.recordPath(rec.UUID), data); err != nil {
		return fmt.Errorf("saving state of domain '%s': %w", rec.Name, err)
	}
	return nil
}

func (h *Hypervisor) remove(rec record) error {
	if h.opts.StateDir == "" {
		return nil
	}
	if err := os.Remove(h.recordPath(rec.UUID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing state of domain '%s': %w", rec.Name, err)
	}
	return nil
}

func (h *Hypervisor) saveMeta(nextPID int) error {
	if h.opts.StateDir == "" {
		return nil
	}
	data, err := json.Marshal(metaFile{Version: recordVersion, NextPID: nextPID})
	if err != nil {
		return fmt.Errorf("encoding simulator state: %w", err)
	}
	if err := writeAtomic(filepath.Join(h.opts.StateDir, "sim.json"), data); err != nil {
		return fmt.Errorf("saving simulator state: %w", err)
	}
	return nil
}

func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// readDomainFile reads one domain's record and parses its definition,
// refusing a record that disagrees with its XML or repeats a domain.
func (h *Hypervisor) readDomainFile(path string) (record, *definition, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return record{}, nil, fmt.Errorf("reading domain state %s: %w", path, err)
	}
	var df domainFile
	if err := json.Unmarshal(data, &df); err != nil {
		return record{}, nil, fmt.Errorf("reading domain state %s: %w", path, err)
	}
	if df.Version != recordVersion {
		return record{}, nil, fmt.Errorf("reading domain state %s: version %d, want %d", path, df.Version, recordVersion)
	}
	rec := df.Domain
	p, err := parseDefinition(rec.XML)
	if err != nil {
		return record{}, nil, fmt.Errorf("reading domain state %s: %w", path, err)
	}
	if p.name != rec.Name || p.uuid != rec.UUID {
		return record{}, nil, fmt.Errorf("reading domain state %s: the XML names domain '%s' %s, the record '%s' %s",
			path, p.name, p.uuid, rec.Name, rec.UUID)
	}
	if h.domains[rec.Name] != nil || h.byUUID[rec.UUID] != nil {
		return record{}, nil, fmt.Errorf("reading domain state %s: domain '%s' (%s) is defined twice", path, rec.Name, rec.UUID)
	}
	return rec, p, nil
}

// load reads the state dir. Leftover temporary files are removed.
func (h *Hypervisor) load() error {
	dir := h.domainsDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating simulator state dir: %w", err)
	}
	if data, err := os.ReadFile(filepath.Join(h.opts.StateDir, "sim.json")); err == nil {
		var m metaFile
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("reading %s: %w", filepath.Join(h.opts.StateDir, "sim.json"), err)
		}
		if m.NextPID > h.nextPID {
			h.nextPID = m.NextPID
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading simulator state: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reading simulator state dir: %w", err)
	}
	now := h.clock.Now()
	var loaded []*domain
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), ".tmp-") {
			os.Remove(path)
			continue
		}
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		rec, p, err := h.readDomainFile(path)
		if err != nil {
			return err
		}
		d := newDomain(rec, p.cfg, &h.mu)
		if rec.Behavior != nil {
			h.behaviors[rec.Name] = rec.Behavior.behavior()
		}
		if rec.PID >= h.nextPID {
			h.nextPID = rec.PID + 1
		}
		h.domains[rec.Name] = d
		h.byUUID[rec.UUID] = d
		loaded = append(loaded, d)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, d := range loaded {
		if !d.active() {
			continue
		}
		// The guest went on while nobody watched: what it printed then
		// is gone, and events that fell due are applied now.
		d.runGen++
		up := d.uptime(now)
		for d.bootStep < bootLines && bootLineAt(d.rec.Run.BootTime, d.bootStep) <= up {
			d.bootStep++
		}
		h.progress(d, now)
	}
	return nil
}
