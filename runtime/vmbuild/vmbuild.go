// Package vmbuild assembles a container's VM from its parts: the validated
// annotations, the root overlay of the image, the cloud-init drive and the
// domain definition. It implements pod.VMAssembler; the parts themselves are
// the pure packages annotations, cloudinit and domain.
package vmbuild

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/annotations"
	"github.com/podvisor/podvisor/runtime/cloudinit"
	"github.com/podvisor/podvisor/runtime/domain"
	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/image"
	"github.com/podvisor/podvisor/runtime/podtypes"
	"github.com/podvisor/podvisor/runtime/volume"
)

// File names inside a container's directory.
const (
	RootDiskFile      = "root.qcow2"
	CloudInitFile     = "cloudinit.iso"
	ConsoleSocketFile = "console.sock"
	// DisplaySocketFile is the VNC display's socket (domain.Input.DisplaySocket).
	DisplaySocketFile = "vnc.sock"
)

// NICProvider is the network seam: it returns the NICs of the VM of c in sb
// and the environment its emulator needs (for a wrapper that enters the
// pod's network namespace).
type NICProvider interface {
	NICs(ctx context.Context, sb *podtypes.Sandbox, c *podtypes.Container) ([]libvirtxml.DomainInterface, map[string]string, error)
}

// PodLimits reads what CRI does not carry from the pod's spec;
// kube.DataSource implements it.
type PodLimits interface {
	// EphemeralStorageLimit is the container's ephemeral-storage limit in
	// bytes, 0 when it has none.
	EphemeralStorageLimit(ctx context.Context, namespace, pod, container string) (int64, error)
}

// Config wires an Assembler.
type Config struct {
	// DomainType is domain.TypeKVM or domain.TypeQEMU.
	DomainType string
	// Emulator is the QEMU binary or wrapper ("" = libvirt's default).
	Emulator string
	// TCGTranslationCacheMiB bounds TCG's translation cache (0: QEMU's
	// default); see domain.Input.
	TCGTranslationCacheMiB uint
	// Overlay makes the root disk; default image.CreateOverlay.
	Overlay func(ctx context.Context, base, path string, minSize int64) (int64, error)
	// PrepareRoot readies a persistent root volume (a device at "/");
	// default volume.PrepareRoot.
	PrepareRoot func(ctx context.Context, dev string, img volume.RootImage) (volume.RootDecision, error)
	// Rebase points a restored root overlay at this node's base image;
	// default image.RebaseOverlay.
	Rebase func(ctx context.Context, overlay, base string) error
	// WriteISO writes the cloud-init drive; default cloudinit.WriteISO.
	WriteISO func(ctx context.Context, c *cloudinit.Contents, path string) error
	// DataSource reads ConfigMaps and Secrets (nil: none configured).
	DataSource cloudinit.DataSource
	// UUIDKey keys the domain UUIDs derived from pod UIDs (the node's
	// secret, domain.KeyedUUIDFor); nil: the public derivation.
	UUIDKey []byte
	// NICs provides the network devices (nil: the VM gets no NIC).
	NICs NICProvider
	// Cgroups, when set, places each VM in a cgroup below its pod's
	// (CgroupPath) with its container's limits (Limits); the emulator
	// wrapper joins it. Nil: libvirt's <cputune> holds the CPU limits.
	Cgroups CgroupFS
	// PodLimits reads the container's ephemeral-storage limit from the
	// pod's spec (nil: not checked).
	PodLimits PodLimits
	// MaxVCPUs is the most vCPUs a VM can grow to in place (the node's
	// CPUs, say); 0: no vCPU hot-plug.
	MaxVCPUs int
	Logger   *slog.Logger
}

// Assembler implements pod.VMAssembler.
type Assembler struct {
	cfg Config
}

// New returns an Assembler.
func New(cfg Config) (*Assembler, error) {
	if cfg.DomainType != domain.TypeKVM && cfg.DomainType != domain.TypeQEMU {
		return nil, fmt.Errorf("vm assembler: domain type %q: want %q or %q", cfg.DomainType, domain.TypeKVM, domain.TypeQEMU)
	}
	if cfg.Overlay == nil {
		cfg.Overlay = image.CreateOverlay
	}
	if cfg.PrepareRoot == nil {
		cfg.PrepareRoot = volume.PrepareRoot
	}
	if cfg.WriteISO == nil {
		cfg.WriteISO = cloudinit.WriteISO
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Assembler{cfg: cfg}, nil
}

// Assemble prepares the VM of c and returns its domain XML. On error the
// container's directory is removed.
func (a *Assembler) Assemble(ctx context.Context, sb *podtypes.Sandbox, c *podtypes.Container, imagePath string) (xml string, err error) {
	vm, err := ParseVMConfig(sb, c)
	if err != nil {
		return "", err
	}
	if len(vm.Unknown) > 0 {
		a.cfg.Logger.Warn("unknown Virtlet annotations ignored (typo?)", "pod", sb.ID, "annotations", vm.Unknown)
	}
	vols, err := a.planVolumes(ctx, sb, c)
	if err != nil {
		return "", err
	}
	devs, err := planDevices(sb, c)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return "", fmt.Errorf("creating VM directory %s: %w", c.Dir, err)
	}
	defer func() {
		if err != nil {
			if rerr := os.RemoveAll(c.Dir); rerr != nil {
				a.cfg.Logger.Error("removing the directory of a VM that failed to assemble", "dir", c.Dir, "err", rerr)
			}
		}
	}()

	root := domain.Disk{Path: filepath.Join(c.Dir, RootDiskFile), Format: domain.FormatQCOW2}
	if devs.Root != nil {
		// A persistent root volume is the user's PV, not ephemeral storage.
		if root, err = a.persistentRoot(ctx, sb, devs.Root, vm, imagePath); err != nil {
			return "", err
		}
	} else {
		size, err := a.cfg.Overlay(ctx, imagePath, root.Path, vm.RootVolumeSize)
		if err != nil {
			return "", fmt.Errorf("creating the root disk: %w", err)
		}
		if err := a.checkEphemeralStorage(ctx, sb, c, vm, size); err != nil {
			return "", err
		}
	}

	iso, err := a.writeCloudInit(ctx, sb, c, vm, vols, devs)
	if err != nil {
		return "", err
	}
	return a.domainXML(ctx, sb, c, vm, vols, devs, root, iso)
}

// checkEphemeralStorage refuses a root disk that can grow beyond the
// container's ephemeral-storage limit: kubelet would evict the pod once the
// guest filled it. An API server that cannot answer only costs the check.
func (a *Assembler) checkEphemeralStorage(ctx context.Context, sb *podtypes.Sandbox, c *podtypes.Container, vm *annotations.VMConfig, size int64) error {
	if a.cfg.PodLimits == nil {
		return nil
	}
	limit, err := a.cfg.PodLimits.EphemeralStorageLimit(ctx, sb.Config.Namespace, sb.Config.Name, c.Config.Name)
	if err != nil {
		a.cfg.Logger.Warn("ephemeral-storage limit not checked: the pod's spec could not be read", "pod", sb.Config.Namespace+"/"+sb.Config.Name, "err", err)
		return nil
	}
	if limit <= 0 || size <= limit {
		return nil
	}
	what := fmt.Sprintf("the image's virtual size %d bytes (%d MiB)", size, size>>20)
	if vm.RootVolumeSize > 0 {
		what = fmt.Sprintf("%s %s (%d bytes, at least the image's size)", annotations.KeyRootVolumeSize, quantityOr(sb.Config.Annotations[annotations.KeyRootVolumeSize]), size)
	}
	return errdefs.InvalidArgumentf("pod %s/%s: the root volume, %s, is larger than container %q's ephemeral-storage limit %d bytes (%d MiB): raise the limit or lower %s",
		sb.Config.Namespace, sb.Config.Name, what, c.Config.Name, limit, limit>>20, annotations.KeyRootVolumeSize)
}

func quantityOr(v string) string {
	if v == "" {
		return "(unset)"
	}
	return strings.TrimSpace(v)
}

// writeCloudInit writes the container's cloud-init drive, with the
// volumes' mounts and files, into its directory and returns its path.
func (a *Assembler) writeCloudInit(ctx context.Context, sb *podtypes.Sandbox, c *podtypes.Container, vm *annotations.VMConfig, vols *volume.Plan, devs *volume.DevicePlan) (string, error) {
	ciIn := cloudInitInput(sb, c, vm)
	if devs.Root != nil {
		a.persistentRootDHCP(sb, &ciIn)
	}
	var owner *volume.Owner
	if vm.Chown9pfsMounts {
		owner = &volume.DefaultOwner
	}
	guest := vols.Guest(owner)
	ciIn.Mounts, ciIn.MountScript, ciIn.RunCmd = guest.Mounts, guest.MountScript, guest.RunCmd
	// The block volumes' device links: at every boot, before the mounts;
	// and in a user-data script's mount script, before its mounts.
	// Under TCG, the vCPUs above the count go offline at boot, before
	// anything runs on them (domain.GuestOnlinedVCPUs).
	ciIn.BootCmd = devs.GuestLinks()
	if domain.GuestOnlinedVCPUs(a.cfg.DomainType, vm, a.maxVCPUs()) {
		ciIn.BootCmd = append(ciIn.BootCmd, GuestVCPUsBootCmd(vm.VCPUCount))
	}
	for i := len(ciIn.BootCmd) - 1; i >= 0; i-- {
		ciIn.MountScript = strings.TrimSuffix(ciIn.BootCmd[i], "\n") + "\n" + ciIn.MountScript
	}
	// The volumes' files first, then the mount script: write_files order.
	ciIn.Files = append(ciIn.Files, vols.GuestFiles()...)
	ciIn.Files = append(ciIn.Files, guest.Files...)
	contents, err := cloudinit.Generate(ctx, ciIn, a.cfg.DataSource)
	if err != nil {
		return "", errdefs.InvalidArgumentf("building the cloud-init drive of pod %s/%s: %w", sb.Config.Namespace, sb.Config.Name, err)
	}
	for _, w := range contents.Warnings {
		a.cfg.Logger.Warn("cloud-init drive: input not used", "pod", sb.Config.Namespace+"/"+sb.Config.Name, "why", w)
	}
	iso := filepath.Join(c.Dir, CloudInitFile)
	if err := a.cfg.WriteISO(ctx, contents, iso); err != nil {
		return "", fmt.Errorf("writing the cloud-init drive: %w", err)
	}
	return iso, nil
}

// persistentRootDHCP leaves a persistent root's network to DHCP, as Virtlet
// did: cloud-init applies network-config once per instance-id
// (name.namespace, the same for the next pod of a StatefulSet), so the next
// pod on the volume would keep the first pod's static address while its
// own differs. podvisor's DHCP servers give each pod's addresses at every
// boot instead.
func (a *Assembler) persistentRootDHCP(sb *podtypes.Sandbox, in *cloudinit.Input) {
	if in.ForceDHCP || in.Network == nil || len(in.Network.Interfaces) == 0 {
		return
	}
	in.ForceDHCP = true
	pod := sb.Config.Namespace + "/" + sb.Config.Name
	if n := len(in.Network.Interfaces); n > 1 {
		a.cfg.Logger.Warn("persistent root filesystem: no cloud-init network-config, the guest's DHCP configures its NICs; the extra networks' NICs get addresses only if the image runs DHCP on them",
			"pod", pod, "extraNICs", n-1)
		return
	}
	a.cfg.Logger.Info("persistent root filesystem: no cloud-init network-config, the guest gets its address by DHCP", "pod", pod)
}

// domainXML builds the container's domain around its root disk and drive.
func (a *Assembler) domainXML(ctx context.Context, sb *podtypes.Sandbox, c *podtypes.Container, vm *annotations.VMConfig, vols *volume.Plan, devs *volume.DevicePlan, root domain.Disk, iso string) (string, error) {
	in := domain.Input{
		Name:                   c.DomainName,
		PodUID:                 sb.Config.UID,
		PodName:                sb.Config.Name,
		PodNamespace:           sb.Config.Namespace,
		ContainerName:          c.Config.Name,
		Attempt:                c.Config.Attempt,
		UUIDKey:                a.cfg.UUIDKey,
		DomainType:             a.cfg.DomainType,
		VM:                     vm,
		RootDisk:               root,
		VolumeDisks:            devs.VolumeDisks(),
		Filesystems:            vols.Filesystems(),
		CloudInitISO:           iso,
		ConsoleSocket:          filepath.Join(c.Dir, ConsoleSocketFile),
		DisplaySocket:          filepath.Join(c.Dir, DisplaySocketFile),
		Emulator:               a.cfg.Emulator,
		MaxVCPUs:               a.maxVCPUs(),
		TCGTranslationCacheMiB: a.cfg.TCGTranslationCacheMiB,
	}
	if a.cfg.Cgroups != nil {
		p, err := CgroupPath(sb, c)
		if err != nil {
			return "", err
		}
		in.Cgroup = p
	}
	if a.cfg.NICs != nil {
		nics, env, err := a.cfg.NICs.NICs(ctx, sb, c)
		if err != nil {
			return "", fmt.Errorf("preparing the VM's network devices: %w", err)
		}
		in.NICs, in.QEMUEnv = nics, env
	}
	d, err := domain.Build(in)
	if err != nil {
		return "", errdefs.InvalidArgumentf("building the domain of pod %s/%s: %w", sb.Config.Namespace, sb.Config.Name, err)
	}
	out, err := domain.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("marshalling the domain: %w", err)
	}
	return out, nil
}

// planVolumes sorts the container's mounts into 9p shares, file volumes
// (read now, for cloud-init write_files) and skipped mounts (logged). A
// mount that cannot be passed as asked, such as a host path that does not
// exist, a link out of a secret's directory or file volumes over
// volume.MaxFileBytes, is an InvalidArgument naming it, before anything is
// made. The files' contents are never logged.
func (a *Assembler) planVolumes(ctx context.Context, sb *podtypes.Sandbox, c *podtypes.Container) (*volume.Plan, error) {
	mounts := make([]volume.Mount, 0, len(c.Config.Mounts))
	for _, m := range c.Config.Mounts {
		mounts = append(mounts, volume.Mount{ContainerPath: m.ContainerPath, HostPath: m.HostPath, ReadOnly: m.Readonly})
	}
	plan, err := volume.PlanMounts(mounts, os.Stat)
	if err == nil {
		err = plan.ChooseMetadata(volume.UserXattrs)
	}
	if err != nil {
		return nil, errdefs.InvalidArgumentf("pod %s/%s: %w", sb.Config.Namespace, sb.Config.Name, err)
	}
	if err := plan.ReadFiles(ctx, volume.MaxFileBytes); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, errdefs.InvalidArgumentf("pod %s/%s: %w", sb.Config.Namespace, sb.Config.Name, err)
	}
	for _, f := range plan.FileMounts {
		size := 0
		for _, g := range f.Files {
			size += len(g.Content)
		}
		a.cfg.Logger.Debug("volume files written into the VM by cloud-init", "pod", sb.Config.Namespace+"/"+sb.Config.Name,
			"containerPath", f.ContainerPath, "hostPath", f.HostPath, "kind", f.Kind, "files", len(f.Files), "bytes", size)
	}
	for _, s := range plan.Skipped {
		log := a.cfg.Logger.Warn
		if s.Expected {
			log = a.cfg.Logger.Debug
		}
		log("volume mount not passed to the VM", "pod", sb.Config.Namespace+"/"+sb.Config.Name,
			"containerPath", s.ContainerPath, "hostPath", s.HostPath, "why", s.Reason)
	}
	for _, s := range plan.Shares {
		a.cfg.Logger.Debug("volume shared with the VM over 9p", "pod", sb.Config.Namespace+"/"+sb.Config.Name,
			"containerPath", s.ContainerPath, "hostPath", s.HostPath, "tag", s.Tag, "readonly", s.ReadOnly)
	}
	return plan, nil
}

// ParseVMConfig validates the pod's annotations with the container's
// resources and environment. Errors are InvalidArgument and name the
// annotation, the value and what is accepted.
func ParseVMConfig(sb *podtypes.Sandbox, c *podtypes.Container) (*annotations.VMConfig, error) {
	res := annotations.Resources{
		MemoryLimitBytes: c.Config.Resources.MemoryLimitBytes,
		CPUShares:        c.Config.Resources.CPUShares,
		CPUPeriod:        c.Config.Resources.CPUPeriod,
		CPUQuota:         c.Config.Resources.CPUQuota,
	}
	var env []annotations.EnvVar
	for _, e := range c.Config.Envs {
		env = append(env, annotations.EnvVar{Name: e.Key, Value: e.Value})
	}
	vm, err := annotations.Parse(sb.Config.Annotations, res, env)
	if err != nil {
		var aerr *annotations.Error
		if errors.As(err, &aerr) {
			return nil, errdefs.InvalidArgumentf("pod %s/%s: %w", sb.Config.Namespace, sb.Config.Name, err)
		}
		return nil, fmt.Errorf("pod %s/%s: reading annotations: %w", sb.Config.Namespace, sb.Config.Name, err)
	}
	return vm, nil
}

func cloudInitInput(sb *podtypes.Sandbox, c *podtypes.Container, vm *annotations.VMConfig) cloudinit.Input {
	ci := vm.CloudInit
	in := cloudinit.Input{
		PodName:           sb.Config.Name,
		PodNamespace:      sb.Config.Namespace,
		Hostname:          guestHostname(sb),
		Type:              cloudinit.DriveType(ci.ImageType),
		MetaData:          ci.MetaData,
		UserData:          ci.UserData,
		UserDataOverwrite: ci.UserDataOverwrite,
		UserDataScript:    ci.UserDataScript,
		SSHKeys:           ci.SSHKeys,
		ForceDHCP:         ci.ForceDHCPNetworkConfig,
	}
	if r := ci.UserDataSource; r != nil {
		in.UserDataSource = &cloudinit.SourceRef{Kind: cloudinit.SourceKind(r.Kind), Name: r.Name, Key: ci.UserDataSourceKey, Encoding: string(ci.UserDataSourceEncoding)}
	}
	if r := ci.SSHKeySource; r != nil {
		in.SSHKeySource = &cloudinit.SourceRef{Kind: cloudinit.SourceKind(r.Kind), Name: r.Name, Key: r.Key}
	}
	if r := ci.FilesFromDataSource; r != nil {
		in.FilesFrom = &cloudinit.SourceRef{Kind: cloudinit.SourceKind(r.Kind), Name: r.Name, Key: r.Key}
	}
	for _, e := range vm.Env {
		in.Env = append(in.Env, cloudinit.EnvVar{Name: e.Name, Value: e.Value})
	}
	// The pod's sysctls (validated by the pod manager), sorted: the same
	// pod gives the same drive.
	names := make([]string, 0, len(sb.Config.Sysctls))
	for k := range sb.Config.Sysctls {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		in.Sysctls = append(in.Sysctls, cloudinit.Sysctl{Name: k, Value: sb.Config.Sysctls[k]})
	}
	if n := sb.Network; n != nil && len(n.Interfaces) > 0 {
		in.Network = &cloudinit.NetworkInfo{}
		for _, ifc := range n.Interfaces {
			ci := cloudinit.Interface{Name: ifc.Name, MAC: ifc.MAC, MTU: ifc.MTU}
			for _, ip := range ifc.IPs {
				ci.Addresses = append(ci.Addresses, cloudinit.Address{CIDR: ip.CIDR, Gateway: ip.Gateway})
			}
			for _, r := range ifc.Routes {
				if r.Dst == "0.0.0.0/0" || r.Dst == "::/0" {
					continue // the default route comes from the address's gateway
				}
				ci.Routes = append(ci.Routes, cloudinit.Route{Dst: r.Dst, Gateway: r.GW})
			}
			in.Network.Interfaces = append(in.Network.Interfaces, ci)
		}
	}
	dns := sb.Config.DNS
	if len(dns.Servers) > 0 || len(dns.Searches) > 0 {
		in.DNS = &cloudinit.DNSConfig{Servers: dns.Servers, Searches: dns.Searches, Options: dns.Options}
	}
	return in
}

// guestHostname is the pod's hostname, or its name, cut to a DNS label's 63
// characters: longer names make the guest's sethostname fail.
func guestHostname(sb *podtypes.Sandbox) string {
	h := sb.Config.Hostname
	if h == "" {
		h = sb.Config.Name
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

// maxVCPUs is the most vCPUs a VM of this node can grow to in place.
func (a *Assembler) maxVCPUs() int { return min(a.cfg.MaxVCPUs, annotations.MaxVCPUCount) }

// GuestVCPUsBootCmd is the cloud-init bootcmd entry that leaves the guest
// n vCPUs online: the others, present from boot under TCG
// (domain.GuestOnlinedVCPUs), go offline at every boot, and a resize
// onlines them through the guest agent. A CPU without an online file (the
// boot CPU) stays.
func GuestVCPUsBootCmd(n int) string {
	return fmt.Sprintf(`for c in /sys/devices/system/cpu/cpu[0-9]*; do i=${c##*/cpu}; if [ "$i" -ge %d ] && [ -f "$c/online" ]; then echo 0 >"$c/online"; fi; done; echo "podvisor: %d vCPUs online"
`, n, n)
}
