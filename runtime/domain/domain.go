// Package domain turns one VM's inputs (pod identity, the validated
// annotations, disks, console paths and the network seam) into a libvirt
// domain definition. Everything here is a pure function of its input: the
// same Input always gives the same XML, which the golden tests pin down and
// libvirt's own schema checks.
package domain

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/uuid"
	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/annotations"
	"github.com/podvisor/podvisor/runtime/cgroups"
)

// Domain types: hardware virtualization, or QEMU's software emulation (TCG)
// where /dev/kvm does not work.
const (
	TypeKVM  = "kvm"
	TypeQEMU = "qemu"
)

// GuestAgentChannel is the virtio-serial port name the QEMU guest agent opens.
const GuestAgentChannel = "org.qemu.guest_agent.0"

// namespaceUUID seeds the name-based (v5) domain UUIDs. Never change it:
// existing domains would get new UUIDs.
var namespaceUUID = uuid.MustParse("9095753e-c7ce-4d4b-a242-b935ec6a5531")

// maxUnixSocketPath is sun_path's size less the terminating NUL.
const maxUnixSocketPath = 107

// DiskFormat is a disk image format QEMU reads.
type DiskFormat string

const (
	FormatQCOW2 DiskFormat = "qcow2"
	FormatRaw   DiskFormat = "raw"
)

// Disk is one disk image or block device given to the guest.
type Disk struct {
	// Path is an absolute path to an image file, or to a block device when Block.
	Path     string
	Format   DiskFormat
	ReadOnly bool
	Block    bool
	// Serial, when set, lets the guest find the disk by ID
	// (/dev/disk/by-id/...); letters, digits, '-', '_' and '.', at most 20.
	Serial string
	// Offset and Size, when Size is set, give the guest only those bytes
	// of a raw Path (a libvirt storage slice): a persistent root volume
	// keeps its marker before Offset, out of the guest's sight. Both are
	// multiples of 512.
	Offset, Size uint64
}

// Input is everything Build needs for one VM.
type Input struct {
	// Name is the libvirt domain name; use NameFor(containerID).
	Name string
	// Pod identity. PodUID seeds the domain UUID.
	PodUID       string
	PodName      string
	PodNamespace string
	// ContainerName and Attempt come from the CRI container metadata. Attempt
	// (the kubelet's restart count) seeds the UUID too, so a restarted
	// container's domain never collides with its exited predecessor.
	ContainerName string
	Attempt       uint32
	// UUIDKey, when set (the daemon always sets it), keys the derived UUID
	// (KeyedUUIDFor): a pod author cannot compute another pod's next UUID
	// and take it first with VirtletSystemUUID. Empty: UUIDFor.
	UUIDKey []byte
	// DomainType is TypeKVM or TypeQEMU.
	DomainType string
	// Machine is the QEMU machine type ("" = libvirt's default, e.g. pc).
	Machine string
	// VM is the validated annotations/resources/env configuration.
	VM *annotations.VMConfig
	// RootDisk is the VM's boot disk (usually the qcow2 overlay of the image).
	RootDisk Disk
	// VolumeDisks follow the root disk, in this order.
	VolumeDisks []Disk
	// Filesystems are host directories shared with the guest over
	// virtio-9p, in this order (see Filesystem).
	Filesystems []Filesystem
	// CloudInitISO is the cloud-init drive image ("" = none); attached
	// read-only after the volume disks.
	CloudInitISO string
	// ConsoleSocket is the unix socket libvirt binds for the serial console
	// ("" = a pty). At most 107 bytes.
	ConsoleSocket string
	// DisplaySocket is the unix socket QEMU's VNC server listens on ("" =
	// no display). The display never listens on TCP: podvisor reaches it
	// through the socket (CRI port-forward to the display port), so no
	// network, the node's or the pod's, can. At most 107 bytes.
	DisplaySocket string
	// ConsoleLog is a file that receives all console output ("" = none).
	ConsoleLog string
	// GuestAgentSocket is the unix socket for the guest agent channel
	// ("" = libvirt chooses one under its own state directory).
	GuestAgentSocket string
	// Emulator is the QEMU binary or a wrapper ("" = libvirt's default).
	Emulator string
	// NICs are appended to the devices as they are: the network seam.
	NICs []libvirtxml.DomainInterface
	// QEMUEnv sets environment variables of the QEMU process (qemu:env), for
	// an emulator wrapper that, e.g., enters the pod's network namespace.
	QEMUEnv map[string]string
	// QEMUArgs are extra QEMU command-line arguments (qemu:arg).
	QEMUArgs []string
	// Cgroup is the VM's cgroup (runtime/cgroups.VMPath) that the
	// emulator wrapper joins ("" = none). With it the CPU limits are the
	// cgroup's, not libvirt's <cputune>: libvirt then manages no cpu
	// cgroup (qemu.conf cgroup_controllers, docs/libvirt.md).
	Cgroup string
	// MaxVCPUs is the most vCPUs the VM can have by hot-plug (in-place
	// resize); 0 or below VM.VCPUCount means VM.VCPUCount. A <cpu>
	// topology (VirtletLibvirtCPUSetting) fixes it at VM.VCPUCount.
	MaxVCPUs int
	// TCGTranslationCacheMiB bounds TCG's translation cache of a TypeQEMU
	// domain (<features><tcg><tb-cache>, QEMU's -accel tcg,tb-size); 0 is
	// QEMU's default (1 GiB, resident as far as the guest's code filled
	// it). KVM domains have no such cache: ignored for TypeKVM.
	TCGTranslationCacheMiB uint
}

// tcgFeature is the TCG translation cache's bound, for TypeQEMU only.
func tcgFeature(in Input) *libvirtxml.DomainFeatureTCG {
	if in.DomainType != TypeQEMU || in.TCGTranslationCacheMiB == 0 {
		return nil
	}
	return &libvirtxml.DomainFeatureTCG{TBCache: &libvirtxml.DomainFeatureTCGTBCache{Unit: "MiB", Size: in.TCGTranslationCacheMiB}}
}

// DefaultTCGTranslationCacheMiB is podvisor's default bound of QEMU's TCG
// translation cache (QEMU's own is 1 GiB, touched as the guest runs): a
// VM's memory must fit its cgroup (--tcg-translation-cache-mib).
// Hardware virtualization has none.
const DefaultTCGTranslationCacheMiB = 64

// QEMUDefaultTCGTranslationCacheMiB is QEMU's own bound, what a domain
// without <tb-cache> gets.
const QEMUDefaultTCGTranslationCacheMiB = 1024

// NameFor returns the domain name for a container ID: "pv-" and 16 hex
// digits, short enough for libvirt's per-domain socket paths. Hex IDs (CRI
// container IDs) keep their first 16 digits so the name can be read back
// against `crictl ps`; anything else is hashed.
func NameFor(containerID string) string {
	hexDigits := strings.ToLower(strings.ReplaceAll(containerID, "-", ""))
	if len(hexDigits) >= 16 && isHex(hexDigits) {
		return "pv-" + hexDigits[:16]
	}
	sum := sha256.Sum256([]byte(containerID))
	return "pv-" + hex.EncodeToString(sum[:8])
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// UUIDFor returns the domain UUID derived from the pod UID and the
// container attempt: a name-based (SHA-1, version 5) UUID, the same on every
// node and every restart of podvisor.
func UUIDFor(podUID string, attempt uint32) string {
	name := podUID
	if attempt > 0 {
		name = fmt.Sprintf("%s/%d", podUID, attempt)
	}
	return uuid.NewSHA1(namespaceUUID, []byte(name)).String()
}

// KeyedUUIDFor is UUIDFor keyed by a secret: HMAC-SHA256 of the same name
// under key, as a version 8 (custom) UUID. Without the key it cannot be
// computed, so VirtletSystemUUID cannot name a UUID another pod will get.
func KeyedUUIDFor(key []byte, podUID string, attempt uint32) string {
	return uuid.NewHash(hmac.New(sha256.New, key), namespaceUUID, []byte(fmt.Sprintf("%s/%d", podUID, attempt)), 8).String()
}

// Build returns the domain definition for in. It checks its input and
// reports every problem, naming the field.
func Build(in Input) (*libvirtxml.Domain, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	vm := in.VM

	domUUID := UUIDFor(in.PodUID, in.Attempt)
	if len(in.UUIDKey) > 0 {
		domUUID = KeyedUUIDFor(in.UUIDKey, in.PodUID, in.Attempt)
	}
	if vm.SystemUUID != "" {
		domUUID = vm.SystemUUID
	}
	kib := uint(vm.MemoryBytes / 1024)
	meta, err := metadataFor(in)
	if err != nil {
		return nil, err
	}

	d := &libvirtxml.Domain{
		Type:          in.DomainType,
		Name:          in.Name,
		UUID:          domUUID,
		Title:         in.PodNamespace + "/" + in.PodName,
		Metadata:      meta,
		Memory:        &libvirtxml.DomainMemory{Value: kib, Unit: "KiB"},
		CurrentMemory: &libvirtxml.DomainCurrentMemory{Value: kib, Unit: "KiB"},
		VCPU:          vcpus(in),
		OS: &libvirtxml.DomainOS{
			Type: &libvirtxml.DomainOSType{Arch: "x86_64", Machine: in.Machine, Type: "hvm"},
		},
		Features: &libvirtxml.DomainFeatureList{
			ACPI: &libvirtxml.DomainFeature{},
			APIC: &libvirtxml.DomainFeatureAPIC{},
			TCG:  tcgFeature(in),
		},
		CPU:        cpuFor(vm),
		Clock:      &libvirtxml.DomainClock{Offset: "utc"},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices:    devices(in),
	}
	if in.Cgroup == "" {
		d.CPUTune = cpuTune(vm)
	}
	if vm.SystemUUID != "" {
		// The guest reads its identity from SMBIOS; libvirt requires the
		// sysinfo UUID to equal the domain's.
		d.SysInfo = []libvirtxml.DomainSysInfo{{SMBIOS: &libvirtxml.DomainSysInfoSMBIOS{
			System: &libvirtxml.DomainSysInfoSystem{Entry: []libvirtxml.DomainSysInfoEntry{{Name: "uuid", Value: vm.SystemUUID}}},
		}}}
		d.OS.SMBios = &libvirtxml.DomainSMBios{Mode: "sysinfo"}
	}
	qemuArgs := append(FilesystemArgs(in.Filesystems), in.QEMUArgs...)
	d.QEMUCommandline = qemuCommandline(in, qemuArgs)
	return d, nil
}

// vcpus is the <vcpu> element: VM.VCPUCount online, up to MaxVCPUs.
// Under KVM the others are hot-plugged later; under TCG all MaxVCPUs are
// present from boot and the guest takes those above VM.VCPUCount offline
// (GuestOnlinedVCPUs).
func vcpus(in Input) *libvirtxml.DomainVCPU {
	n := in.VM.VCPUCount
	v := &libvirtxml.DomainVCPU{Placement: "static", Value: uint(n)}
	switch {
	case GuestOnlinedVCPUs(in.DomainType, in.VM, in.MaxVCPUs):
		v.Value = uint(in.MaxVCPUs)
	case hotplug(in.VM, in.MaxVCPUs):
		v.Value, v.Current = uint(in.MaxVCPUs), uint(n)
	}
	return v
}

// hotplug says the domain can gain vCPUs: maxVCPUs above the count and no
// fixed <cpu> topology.
func hotplug(vm *annotations.VMConfig, maxVCPUs int) bool {
	return maxVCPUs > vm.VCPUCount && (vm.CPUSetting == nil || vm.CPUSetting.Topology == nil)
}

// GuestOnlinedVCPUs says a domain's vCPU count changes inside the guest
// rather than by hot-plug: a TCG domain that can gain vCPUs. QEMU 7.2's
// multi-threaded TCG aborts when a vCPU is hot-plugged once the running
// vCPUs have taken every translation cache region (tcg/region.c,
// tcg_region_initial_alloc__locked), and libvirt 9.0 refuses to hot-plug
// into single-threaded TCG, whose vCPUs share one thread ("qemu didn't
// report thread id for vcpu"). So all maxVCPUs are present from boot
// (each thread takes its region then), the guest boots with those above
// VM.VCPUCount taken offline (cloud-init bootcmd) and a resize onlines
// and offlines them through the guest agent (docs/libvirt.md).
func GuestOnlinedVCPUs(domainType string, vm *annotations.VMConfig, maxVCPUs int) bool {
	return domainType == TypeQEMU && hotplug(vm, maxVCPUs)
}

// MaxVCPUsOf reads the most vCPUs a domain can have and how many it has
// now from its XML.
func MaxVCPUsOf(d *libvirtxml.Domain) (current, maximum int) {
	if d.VCPU == nil {
		return 0, 0
	}
	maximum = int(d.VCPU.Value)
	current = maximum
	if d.VCPU.Current != 0 {
		current = int(d.VCPU.Current)
	}
	return current, maximum
}

func qemuCommandline(in Input, qemuArgs []string) *libvirtxml.DomainQEMUCommandline {
	env := make(map[string]string, len(in.QEMUEnv)+2)
	for k, v := range in.QEMUEnv {
		env[k] = v
	}
	if in.Cgroup != "" {
		env[cgroups.EnvCgroup] = in.Cgroup
	}
	if len(env) == 0 && len(qemuArgs) == 0 {
		return nil
	}
	cl := &libvirtxml.DomainQEMUCommandline{}
	for _, a := range qemuArgs {
		cl.Args = append(cl.Args, libvirtxml.DomainQEMUCommandlineArg{Value: a})
	}
	names := make([]string, 0, len(env))
	for n := range env {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		cl.Envs = append(cl.Envs, libvirtxml.DomainQEMUCommandlineEnv{Name: n, Value: env[n]})
	}
	return cl
}

// Marshal renders d as libvirt XML.
func Marshal(d *libvirtxml.Domain) (string, error) {
	if d == nil {
		return "", errors.New("marshalling domain: nil domain")
	}
	s, err := d.Marshal()
	if err != nil {
		return "", fmt.Errorf("marshalling domain %s: %w", d.Name, err)
	}
	return s, nil
}

// cpuShareCap keeps <shares> inside what libvirt accepts on cgroup v2
// (cpu.weight, 1..10000) as well as on v1; kubelet gives 1024 per CPU, so
// only requests above ~9.7 CPUs are capped.
const cpuShareCap = 10000

// defaultCPUPeriod is the CFS period kubelet uses when it sets a quota.
const defaultCPUPeriod = 100000

// cpuTune maps the container's CPU resources. CRI's quota caps the whole
// container, so it becomes libvirt's global_period/global_quota (the whole
// domain) rather than period/quota, which libvirt applies to each vCPU.
func cpuTune(vm *annotations.VMConfig) *libvirtxml.DomainCPUTune {
	if vm.CPUShares == 0 && vm.CPUQuota <= 0 {
		return nil
	}
	t := &libvirtxml.DomainCPUTune{}
	if vm.CPUShares > 0 {
		t.Shares = &libvirtxml.DomainCPUTuneShares{Value: uint(min(vm.CPUShares, cpuShareCap))}
	}
	if vm.CPUQuota > 0 {
		period := vm.CPUPeriod
		if period == 0 {
			period = defaultCPUPeriod
		}
		t.GlobalPeriod = &libvirtxml.DomainCPUTunePeriod{Value: uint64(period)}
		t.GlobalQuota = &libvirtxml.DomainCPUTuneQuota{Value: vm.CPUQuota}
	}
	return t
}

// cpuFor gives the <cpu> element: VirtletLibvirtCPUSetting verbatim when
// set, host-model for VirtletCPUModel=host-model, otherwise none (QEMU's
// default model, which every host and TCG can run).
func cpuFor(vm *annotations.VMConfig) *libvirtxml.DomainCPU {
	if vm.CPUSetting != nil {
		return copyCPU(vm.CPUSetting)
	}
	if vm.CPUModel == annotations.CPUModelHostModel {
		return &libvirtxml.DomainCPU{Mode: "host-model"}
	}
	return nil
}

// copyCPU deep-copies so that a caller mutating the domain cannot change
// the shared VMConfig.
func copyCPU(c *libvirtxml.DomainCPU) *libvirtxml.DomainCPU {
	out := *c
	if c.Model != nil {
		m := *c.Model
		out.Model = &m
	}
	if c.Topology != nil {
		t := *c.Topology
		out.Topology = &t
	}
	if c.Cache != nil {
		ca := *c.Cache
		out.Cache = &ca
	}
	if c.MaxPhysAddr != nil {
		mp := *c.MaxPhysAddr
		out.MaxPhysAddr = &mp
	}
	out.Features = append([]libvirtxml.DomainCPUFeature(nil), c.Features...)
	out.Numa = nil // refused by annotations; never shared
	return &out
}

func devices(in Input) *libvirtxml.DomainDeviceList {
	dev := &libvirtxml.DomainDeviceList{Emulator: in.Emulator}
	dev.Disks, dev.Controllers = disks(in)
	dev.Filesystems = FilesystemDevices(in.Filesystems)
	dev.Serials = []libvirtxml.DomainSerial{serial(in)}
	dev.Channels = []libvirtxml.DomainChannel{{
		Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind", Path: in.GuestAgentSocket}},
		Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: GuestAgentChannel}},
	}}
	dev.Interfaces = append(dev.Interfaces, in.NICs...)
	dev.Inputs = []libvirtxml.DomainInput{{Type: "tablet", Bus: "usb"}}
	if in.DisplaySocket != "" {
		dev.Graphics = []libvirtxml.DomainGraphic{{VNC: &libvirtxml.DomainGraphicVNC{
			Socket:    in.DisplaySocket,
			Listeners: []libvirtxml.DomainGraphicListener{{Socket: &libvirtxml.DomainGraphicListenerSocket{Socket: in.DisplaySocket}}},
		}}}
	}
	dev.Videos = []libvirtxml.DomainVideo{{Model: libvirtxml.DomainVideoModel{Type: "vga"}}}
	// Free page reporting: the guest hands its free pages back, so QEMU's
	// memory (what the pod's cgroup and kubelet see) follows what the guest
	// uses rather than the most it ever touched; kubelet refuses a memory
	// resize below the pod's current usage.
	dev.MemBalloon = &libvirtxml.DomainMemBalloon{Model: "virtio", FreePageReporting: "on", Stats: &libvirtxml.DomainMemBalloonStats{Period: 10}}
	dev.RNGs = []libvirtxml.DomainRNG{{
		Model:   "virtio",
		Backend: &libvirtxml.DomainRNGBackend{Random: &libvirtxml.DomainRNGBackendRandom{Device: "/dev/urandom"}},
	}}
	return dev
}

func serial(in Input) libvirtxml.DomainSerial {
	s := libvirtxml.DomainSerial{
		Target: &libvirtxml.DomainSerialTarget{Port: uintp(0)},
	}
	if in.ConsoleSocket != "" {
		s.Source = &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind", Path: in.ConsoleSocket}}
	} else {
		s.Source = &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}}
	}
	if in.ConsoleLog != "" {
		s.Log = &libvirtxml.DomainChardevLog{File: in.ConsoleLog, Append: "on"}
	}
	return s
}

func uintp(v uint) *uint { return &v }

// badFunc records that field is wrong and why.
type badFunc func(field, format string, args ...any)

// validate reports every wrong field of in, sorted, joined.
func (in Input) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("domain input %s: %s", field, fmt.Sprintf(format, args...)))
	}
	in.validateIdentity(bad)
	in.validateVM(bad)
	in.validateDevices(bad)
	in.validatePaths(bad)
	in.validateQEMU(bad)
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// validateIdentity checks the names the domain and its metadata carry.
func (in Input) validateIdentity(bad badFunc) {
	if !validName(in.Name) {
		bad("Name", "%q is not a domain name (1 to 64 letters, digits, '-', '_', '.'; use NameFor)", in.Name)
	}
	if in.PodUID == "" {
		bad("PodUID", "is empty")
	}
	for field, v := range map[string]string{"PodUID": in.PodUID, "PodName": in.PodName, "PodNamespace": in.PodNamespace, "ContainerName": in.ContainerName} {
		if hasControl(v) {
			bad(field, "%q has control characters", v)
		}
	}
	if in.DomainType != TypeKVM && in.DomainType != TypeQEMU {
		bad("DomainType", "%q is neither %q nor %q", in.DomainType, TypeKVM, TypeQEMU)
	}
	if in.Machine != "" && !validName(in.Machine) {
		bad("Machine", "%q is not a QEMU machine type", in.Machine)
	}
}

// validateVM checks the parsed annotations' resources and choices.
func (in Input) validateVM(bad badFunc) {
	if in.VM == nil {
		bad("VM", "is nil (annotations.Parse gives it)")
		return
	}
	if in.VM.VCPUCount < 1 || in.VM.VCPUCount > annotations.MaxVCPUCount {
		bad("VM.VCPUCount", "%d is outside 1..%d", in.VM.VCPUCount, annotations.MaxVCPUCount)
	}
	if in.VM.MemoryBytes < annotations.MinMemoryBytes {
		bad("VM.MemoryBytes", "%d is below %d", in.VM.MemoryBytes, annotations.MinMemoryBytes)
	}
	if in.VM.DiskDriver != annotations.DiskDriverSCSI && in.VM.DiskDriver != annotations.DiskDriverVirtio {
		bad("VM.DiskDriver", "%q is neither scsi nor virtio", in.VM.DiskDriver)
	}
	if in.VM.SystemUUID != "" {
		if _, err := uuid.Parse(in.VM.SystemUUID); err != nil {
			bad("VM.SystemUUID", "%q is not a UUID", in.VM.SystemUUID)
		}
	}
}

// validateDevices checks the disks, shared filesystems and NICs, and that
// they fit the disk count and the PCI slots below the wrapper's NIC.
func (in Input) validateDevices(bad badFunc) {
	checkDisk := func(field string, d Disk) {
		checkPath(bad, field+".Path", d.Path, true)
		if d.Format != FormatQCOW2 && d.Format != FormatRaw {
			bad(field+".Format", "%q is neither %q nor %q", d.Format, FormatQCOW2, FormatRaw)
		}
		if !validSerial(d.Serial) {
			bad(field+".Serial", "%q is not at most 20 letters, digits, '-', '_', '.'", d.Serial)
		}
		checkSlice(bad, field, d)
	}
	checkDisk("RootDisk", in.RootDisk)
	for i, d := range in.VolumeDisks {
		checkDisk(fmt.Sprintf("VolumeDisks[%d]", i), d)
	}
	nDisks := 1 + len(in.VolumeDisks) + btoi(in.CloudInitISO != "")
	if nDisks > maxDisks {
		bad("VolumeDisks", "%d disks in all, more than %d", nDisks, maxDisks)
	}
	pciDisks := 0
	if in.VM != nil && in.VM.DiskDriver == annotations.DiskDriverVirtio {
		pciDisks = nDisks
	}
	validateFilesystems(bad, in.Filesystems)
	if n := fixedPCIDevices + pciDisks + len(in.NICs) + len(in.Filesystems); n > WrapperNICPCISlot {
		bad("NICs", "%d NICs with %d virtio disks and %d shared filesystems need PCI slots up to %#x, but slot %#x is kept for the emulator wrapper's NIC",
			len(in.NICs), pciDisks, len(in.Filesystems), n-1, WrapperNICPCISlot)
	}
}

// validatePaths checks the files and sockets the domain names.
func (in Input) validatePaths(bad badFunc) {
	checkPath(bad, "CloudInitISO", in.CloudInitISO, false)
	checkPath(bad, "ConsoleLog", in.ConsoleLog, false)
	checkPath(bad, "Emulator", in.Emulator, false)
	for _, sock := range []struct{ field, path string }{
		{"ConsoleSocket", in.ConsoleSocket}, {"DisplaySocket", in.DisplaySocket}, {"GuestAgentSocket", in.GuestAgentSocket},
	} {
		checkPath(bad, sock.field, sock.path, false)
		if len(sock.path) > maxUnixSocketPath {
			bad(sock.field, "%q is %d bytes, longer than a unix socket path may be (%d)", sock.path, len(sock.path), maxUnixSocketPath)
		}
	}
}

// validateQEMU checks the environment and arguments passed to QEMU.
func (in Input) validateQEMU(bad badFunc) {
	for n, v := range in.QEMUEnv {
		if !validEnvName(n) {
			bad("QEMUEnv", "%q is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)", n)
		}
		if hasControl(v) {
			bad("QEMUEnv", "the value of %s has control characters", n)
		}
	}
	if in.Cgroup != "" && (!strings.HasPrefix(in.Cgroup, "/") || hasControl(in.Cgroup) || strings.Contains(in.Cgroup, "..")) {
		bad("Cgroup", "%q is not a cgroup path (runtime/cgroups.VMPath gives one)", in.Cgroup)
	}
	if in.MaxVCPUs < 0 || in.MaxVCPUs > annotations.MaxVCPUCount {
		bad("MaxVCPUs", "%d is outside 0..%d", in.MaxVCPUs, annotations.MaxVCPUCount)
	}
	for i, a := range in.QEMUArgs {
		if a == "" || hasControl(a) {
			bad(fmt.Sprintf("QEMUArgs[%d]", i), "%q is empty or has control characters", a)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func checkPath(bad badFunc, field, p string, required bool) {
	if p == "" {
		if required {
			bad(field, "is empty")
		}
		return
	}
	if !filepath.IsAbs(p) || hasControl(p) {
		bad(field, "%q is not an absolute path without control characters", p)
	}
}

// hasControl reports control characters and anything XML cannot carry
// unchanged (invalid UTF-8 decodes to U+FFFD).
func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r >= 0x7f && r <= 0x9f || r >= 0xfffd && r <= 0xffff {
			return true
		}
	}
	return false
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// checkSlice checks a disk's storage slice: raw only, sector-aligned, no
// offset without a size.
func checkSlice(bad badFunc, field string, d Disk) {
	switch {
	case d.Size == 0 && d.Offset != 0:
		bad(field+".Offset", "%d without a Size", d.Offset)
	case d.Size == 0:
	case d.Format != FormatRaw:
		bad(field+".Size", "a slice of a %s disk: only raw disks take one", d.Format)
	case d.Offset%512 != 0 || d.Size%512 != 0:
		bad(field+".Size", "offset %d and size %d are not multiples of 512", d.Offset, d.Size)
	}
}

func validSerial(s string) bool {
	return s == "" || len(s) <= 20 && validName(s)
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
