package libvirt

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"
)

// kvmProbeBoot is a 512-byte boot sector (kvmprobe/boot.S) that enters
// 64-bit long mode and writes kvmProbeMarker to COM1.
//
//go:embed kvmprobe/boot.bin
var kvmProbeBoot []byte

const kvmProbeMarker = "PODVISOR-KVM-PROBE-OK"

// kvmHost names the files chooseAccelerator reads to judge the host.
type kvmHost struct {
	dev, cpuinfo, pvmModule string
}

var defaultKVMHost = kvmHost{dev: "/dev/kvm", cpuinfo: "/proc/cpuinfo", pvmModule: "/sys/module/kvm_pvm"}

// chooseAccelerator sets domainType and accelerator from the KVM mode. In
// auto mode a node that has /dev/kvm but cannot use it logs why at warning
// level: VMs there run under TCG, many times slower, and the operator
// likely expected KVM. A node without /dev/kvm says so at info level.
func (h *Hypervisor) chooseAccelerator(ctx context.Context, mode string, timeout time.Duration) error {
	useKVM := func(why string) { h.domainType, h.accelerator, h.accelWhy = "kvm", "kvm", why }
	useTCG := func(why string) { h.domainType, h.accelerator, h.accelWhy = "qemu", "tcg", why }
	switch mode {
	case KVMOn:
		useKVM("KVM forced on by configuration")
		return nil
	case KVMOff:
		useTCG("KVM turned off by configuration")
		return nil
	}
	if _, err := os.Stat(h.kvmHost.dev); errors.Is(err, os.ErrNotExist) {
		useTCG(fmt.Sprintf("this node has no %s (no KVM module loaded, or not passed to the container)", h.kvmHost.dev))
		h.log.Info("KVM not available: VMs run under TCG (software emulation), which is slow", "why", h.accelWhy)
		return nil
	}
	if why := kvmHostProblem(h.kvmHost.dev, h.kvmHost.cpuinfo, h.kvmHost.pvmModule); why != "" {
		useTCG(why)
	} else if err := h.ProbeDomainType(ctx, "kvm", timeout); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("probing KVM: %w", ctx.Err())
		}
		useTCG(fmt.Sprintf("a trial KVM domain failed: %v", err))
	} else {
		useKVM("a trial KVM domain ran 64-bit guest code")
		return nil
	}
	h.log.Warn(h.kvmHost.dev+" is present but KVM does not work: VMs run under TCG (software emulation), which is slow; --kvm on forces KVM", "why", h.accelWhy)
	return nil
}

var hwVirtFlag = regexp.MustCompile(`(?m)^flags\s*:.*\b(vmx|svm)\b`)

// kvmHostProblem returns why KVM cannot serve stock guests on this host,
// or "" when a trial is worth making. A /dev/kvm without the CPU's vmx/svm
// (a PVM host, where kvm_pvm provides it) accepts simple guest code but hangs
// or fails on stock kernels, so no trial small enough to be quick can
// clear it.
func kvmHostProblem(dev, cpuinfo, pvmModule string) string {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return fmt.Sprintf("cannot open %s: %v", dev, err)
	}
	_ = f.Close()
	if _, err := os.Stat(pvmModule); err == nil {
		return fmt.Sprintf("%s is provided by PVM (%s is loaded), which does not run stock guest kernels", dev, pvmModule)
	}
	b, err := os.ReadFile(cpuinfo)
	if err != nil {
		return fmt.Sprintf("cannot read %s: %v", cpuinfo, err)
	}
	if !hwVirtFlag.Match(b) {
		return fmt.Sprintf("the CPU has no vmx or svm flag in %s, so %s is not hardware virtualization", cpuinfo, dev)
	}
	return ""
}

// ProbeDomainType starts a throwaway transient domain of the given libvirt
// type ("kvm" or "qemu") that boots a 512-byte long-mode boot sector, and
// returns nil when the guest's serial output shows it ran. The domain is
// destroyed (and so gone) before it returns.
func (h *Hypervisor) ProbeDomainType(ctx context.Context, domainType string, timeout time.Duration) error {
	boot, serial, cleanup, err := probeFiles(h.probeDir)
	if err != nil {
		return err
	}
	defer cleanup()
	name := fmt.Sprintf("podvisor-probe-%s-%d", domainType, os.Getpid())
	x, err := probeDomainXML(name, domainType, boot, serial)
	if err != nil {
		return err
	}

	var dom *lv.Domain
	err = h.do(ctx, func(c *lv.Connect) error {
		if old, err := c.LookupDomainByName(name); err == nil {
			_ = old.Destroy() // left over by a crashed predecessor
			_ = old.Free()
		}
		d, err := c.DomainCreateXML(x, 0)
		if err != nil {
			return err
		}
		dom = d
		return nil
	})
	if err != nil {
		return wrapErr(fmt.Sprintf("starting the %s probe domain", domainType), err)
	}
	defer func() {
		_ = dom.Destroy()
		_ = dom.Free()
	}()

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if out, _ := os.ReadFile(serial); bytes.Contains(out, []byte(kvmProbeMarker)) {
			return nil
		}
		state, reason, err := dom.GetState()
		if err != nil {
			return wrapErr("reading the probe domain's state", err)
		}
		if state != lv.DOMAIN_RUNNING && state != lv.DOMAIN_BLOCKED {
			st, r := mapState(state, reason)
			return fmt.Errorf("the probe domain is %s (%s) instead of running", st, r)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return errors.New("the probe guest printed nothing within " + timeout.String())
		case <-tick.C:
		}
	}
}

// probeFiles writes the trial's boot sector into a fresh directory under
// parent (Options.ProbeDir, created if missing) and names its serial log
// there; cleanup removes the directory.
func probeFiles(parent string) (boot, serial string, cleanup func(), err error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", "", nil, fmt.Errorf("creating the KVM probe directory %s: %w", parent, err)
	}
	dir, err := os.MkdirTemp(parent, "podvisor-probe-")
	if err != nil {
		return "", "", nil, fmt.Errorf("creating a directory for the KVM probe under %s: %w", parent, err)
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	// QEMU may run as an unprivileged user: let it read and write here.
	if err := os.Chmod(dir, 0o777); err != nil {
		cleanup()
		return "", "", nil, fmt.Errorf("opening up the probe directory: %w", err)
	}
	boot = filepath.Join(dir, "boot.img")
	if err := os.WriteFile(boot, kvmProbeBoot, 0o644); err != nil {
		cleanup()
		return "", "", nil, fmt.Errorf("writing the probe boot sector: %w", err)
	}
	return boot, filepath.Join(dir, "serial.log"), cleanup, nil
}

func probeDomainXML(name, domainType, boot, serial string) (string, error) {
	dom := libvirtxml.Domain{
		Type:   domainType,
		Name:   name,
		Memory: &libvirtxml.DomainMemory{Value: 32, Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: 1},
		OS: &libvirtxml.DomainOS{
			Type:        &libvirtxml.DomainOSType{Arch: "x86_64", Type: "hvm"},
			BootDevices: []libvirtxml.DomainBootDevice{{Dev: "hd"}},
		},
		OnCrash: "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Disks: []libvirtxml.DomainDisk{{
				Device: "disk",
				Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: boot}},
				// A private copy: IDE cannot be read-only.
				Target: &libvirtxml.DomainDiskTarget{Dev: "hda", Bus: "ide"},
			}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: serial}},
			}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	x, err := dom.Marshal()
	if err != nil {
		return "", fmt.Errorf("building the probe domain XML: %w", err)
	}
	return x, nil
}
