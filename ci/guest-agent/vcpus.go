package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// vcpu is one element of guest-get-vcpus' answer and guest-set-vcpus'
// argument (qemu-ga's GuestLogicalProcessor).
type vcpu struct {
	LogicalID  int   `json:"logical-id"`
	Online     bool  `json:"online"`
	CanOffline *bool `json:"can-offline,omitempty"`
}

// getVCPUs lists the guest's CPUs under dir (/sys/devices/system/cpu) as
// qemu-ga does: a CPU without an online file (the boot CPU) is online and
// cannot be taken offline. libvirt's setvcpus --guest reads it.
func getVCPUs(dir string) ([]vcpu, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "cpu[0-9]*"))
	if err != nil {
		return nil, err
	}
	var out []vcpu
	for _, p := range paths {
		id, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(p), "cpu"))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(p, "online"))
		can := err == nil
		switch {
		case errors.Is(err, os.ErrNotExist):
			b = []byte("1")
		case err != nil:
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		out = append(out, vcpu{LogicalID: id, Online: strings.TrimSpace(string(b)) == "1", CanOffline: &can})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no CPUs under %s", dir)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LogicalID < out[j].LogicalID })
	return out, nil
}

// setVCPUs onlines and offlines the CPUs asked for, in order, as qemu-ga
// does: it answers how many it changed; a failure after the first change
// ends the list there, a failure of the first is the error.
func setVCPUs(dir string, args json.RawMessage) (any, error) {
	var p struct {
		VCPUs []vcpu `json:"vcpus"`
	}
	if err := strictArgs(args, &p); err != nil {
		return nil, err
	}
	if len(p.VCPUs) == 0 {
		return nil, genericErr("Parameter 'vcpus' is missing or empty")
	}
	for i, v := range p.VCPUs {
		if err := setVCPU(dir, v); err != nil {
			if i == 0 {
				return nil, genericErr("guest-set-vcpus: %v", err)
			}
			return i, nil
		}
	}
	return len(p.VCPUs), nil
}

func setVCPU(dir string, v vcpu) error {
	if v.LogicalID < 0 {
		return fmt.Errorf("logical-id %d is negative", v.LogicalID)
	}
	cpu := filepath.Join(dir, "cpu"+strconv.Itoa(v.LogicalID))
	if _, err := os.Stat(cpu); err != nil {
		return fmt.Errorf("CPU %d: %w", v.LogicalID, err)
	}
	f := filepath.Join(cpu, "online")
	b, err := os.ReadFile(f)
	if errors.Is(err, os.ErrNotExist) {
		if v.Online {
			return nil
		}
		return fmt.Errorf("CPU %d cannot be taken offline", v.LogicalID)
	}
	if err != nil {
		return err
	}
	want := "0"
	if v.Online {
		want = "1"
	}
	if strings.TrimSpace(string(b)) == want {
		return nil
	}
	if err := os.WriteFile(f, []byte(want), 0o644); err != nil {
		return fmt.Errorf("CPU %d online=%s: %w", v.LogicalID, want, err)
	}
	return nil
}
