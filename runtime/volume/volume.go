// Package volume decides what each of a container's mounts (CRI
// ContainerConfig.mounts: kubelet's host_path → container_path) becomes in
// the container's VM, and gives the pieces the domain and the cloud-init
// drive need for it.
//
// A mount of a host directory (emptyDir, hostPath, a filesystem PVC, a
// subPath of one) is shared with the guest over virtio-9p and mounted there
// at its container path by cloud-init `mounts`. The file-like volumes
// (secret, configMap, projected — which includes the service account
// token —, downwardAPI) are copied: their files are written at the
// container path by cloud-init `write_files` when the VM is created.
// Kubelet's own files (/etc/hosts, /etc/hostname, /etc/resolv.conf, the
// termination log) are not passed; a host path that is a file and not a
// directory cannot be (9p shares directories). Block volumes arrive as CRI
// devices, not mounts, and are disks.
//
// PlanMounts reads nothing but the host paths' file types (through the
// stat function it is given); Plan.ChooseMetadata asks whether each shared
// directory takes user extended attributes; Plan.ReadFiles reads the file
// volumes; the rest is pure.
package volume

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/podvisor/podvisor/runtime/cloudinit"
	"github.com/podvisor/podvisor/runtime/domain"
)

// Mount is one CRI mount.
type Mount struct {
	// ContainerPath is where the container (the guest) sees it.
	ContainerPath string
	// HostPath is the host file or directory kubelet prepared.
	HostPath string
	ReadOnly bool
}

func (m Mount) String() string {
	return fmt.Sprintf("mount at %q (host path %q)", m.ContainerPath, m.HostPath)
}

// Share is a mount shared with the guest over virtio-9p.
type Share struct {
	Mount
	// Tag is the 9p mount tag (see Plan for how it is chosen).
	Tag string
	// MetadataInFiles is true when the host directory takes no user
	// extended attributes: QEMU then keeps the guest's ownership and modes
	// in files (domain.MetadataFileModel). Set by Plan.ChooseMetadata.
	MetadataInFiles bool
}

// FileMount is a secret, configMap, projected or downwardAPI volume: its
// files are written into the guest below its container path by cloud-init
// write_files.
type FileMount struct {
	Mount
	// Kind is kubelet's volume plugin: "secret", "configmap", "projected"
	// or "downward-api".
	Kind string
	// Files are the volume's files in the guest, set by Plan.ReadFiles.
	Files []cloudinit.GuestFile
}

// ServiceAccountToken is true for the projected volume kubelet gives every
// pod for its service account token (kube-api-access-*), unless the pod
// sets automountServiceAccountToken: false.
func (f FileMount) ServiceAccountToken() bool {
	return f.Kind == "projected" && strings.HasPrefix(path.Base(f.HostPath), "kube-api-access-")
}

// Skip is a mount that is not passed to the VM, and why.
type Skip struct {
	Mount
	Reason string
	// Expected is true for kubelet's own files, which no VM needs: not
	// worth a warning.
	Expected bool
}

// Plan is what becomes of a container's mounts.
type Plan struct {
	// Shares in mount order: a parent directory before what is mounted
	// below it.
	Shares []Share
	// FileMounts in the same order as Shares (by depth, then path).
	FileMounts []FileMount
	Skipped    []Skip
}

// kubeletFiles are the container paths of the files kubelet mounts into
// every container. A VM gets its hostname, /etc/hosts and DNS from
// cloud-init and the pod network, and nothing reads a VM's termination log.
var kubeletFiles = map[string]string{
	"/etc/hosts":           "kubelet's /etc/hosts: the guest keeps its own (cloud-init writes the hostname)",
	"/etc/hostname":        "kubelet's /etc/hostname: the guest gets its hostname from cloud-init meta-data",
	"/etc/resolv.conf":     "kubelet's /etc/resolv.conf: the guest gets DNS from the pod network config",
	"/dev/termination-log": "the termination message file: podvisor does not read one from a VM",
}

// fileVolumeKinds are kubelet's volume plugins whose contents are files for
// the guest rather than a directory to share (SPEC §6: cloud-init writes
// them).
var fileVolumeKinds = []string{"secret", "configmap", "projected", "downward-api"}

// fileVolumeKind returns the plugin name when hostPath is inside a
// secret, configMap, projected or downwardAPI volume directory
// (.../volumes/kubernetes.io~KIND/NAME).
func fileVolumeKind(hostPath string) string {
	for _, k := range fileVolumeKinds {
		if strings.Contains(hostPath+"/", "/volumes/kubernetes.io~"+k+"/") {
			return k
		}
	}
	return ""
}

// PlanMounts sorts mounts into shares, file mounts and skipped mounts.
// stat is os.Stat in production (it follows symbolic links, as QEMU does
// when it opens the share). A mount that cannot be passed as asked — a
// relative or odd path, a host path that does not exist — is an error
// naming it; all such errors are returned together. The file mounts'
// files are read by Plan.ReadFiles.
//
// Tags: the last element of the container path (Virtlet's tag, so that a
// Virtlet user's explicit 9p entries in user-data keep working) when it is
// a valid tag (domain.ValidTag) not taken by an earlier share; otherwise up
// to 22 characters of it made safe, '-' and 8 hex digits of the SHA-256 of
// the container path. Shares are ordered by the depth of their container
// path (then by path), so tags do not depend on the order kubelet used.
func PlanMounts(mounts []Mount, stat func(string) (fs.FileInfo, error)) (*Plan, error) {
	p := &Plan{}
	var errs []error
	seen := map[string]bool{}
	for _, m := range mounts {
		if why, ok := kubeletFiles[m.ContainerPath]; ok {
			p.Skipped = append(p.Skipped, Skip{Mount: m, Reason: why, Expected: true})
			continue
		}
		if err := virtletFlexVolume(m); err != nil {
			errs = append(errs, err)
			continue
		}
		if k := fileVolumeKind(m.HostPath); k != "" {
			if err := checkGuestPath(m.ContainerPath, false); err != nil {
				errs = append(errs, fmt.Errorf("volume %s: %w", m, err))
				continue
			}
			if !filepath.IsAbs(m.HostPath) || hasControl(m.HostPath) {
				errs = append(errs, fmt.Errorf("volume %s: the host path is not an absolute path without control characters", m))
				continue
			}
			if seen[m.ContainerPath] {
				errs = append(errs, fmt.Errorf("volume %s: another mount has the same container path", m))
				continue
			}
			seen[m.ContainerPath] = true
			p.FileMounts = append(p.FileMounts, FileMount{Mount: m, Kind: k})
			continue
		}
		if err := checkGuestPath(m.ContainerPath, true); err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", m, err))
			continue
		}
		if !filepath.IsAbs(m.HostPath) || hasControl(m.HostPath) {
			errs = append(errs, fmt.Errorf("volume %s: the host path is not an absolute path without control characters", m))
			continue
		}
		if seen[m.ContainerPath] {
			errs = append(errs, fmt.Errorf("volume %s: another mount has the same container path", m))
			continue
		}
		seen[m.ContainerPath] = true
		fi, err := stat(m.HostPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			errs = append(errs, fmt.Errorf("volume %s: the host path does not exist", m))
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("volume %s: %w", m, err))
			continue
		case fi.Mode().IsRegular():
			p.Skipped = append(p.Skipped, Skip{Mount: m, Reason: "a file, not a directory: 9p shares directories"})
			continue
		case !fi.IsDir():
			p.Skipped = append(p.Skipped, Skip{Mount: m, Reason: fmt.Sprintf("not a directory (%s): 9p shares directories", fi.Mode().Type())})
			continue
		}
		p.Shares = append(p.Shares, Share{Mount: m})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sort.SliceStable(p.Shares, func(i, j int) bool { return mountOrder(p.Shares[i].ContainerPath, p.Shares[j].ContainerPath) })
	sort.SliceStable(p.FileMounts, func(i, j int) bool {
		return mountOrder(p.FileMounts[i].ContainerPath, p.FileMounts[j].ContainerPath)
	})
	tags := map[string]bool{}
	for i := range p.Shares {
		s := &p.Shares[i]
		s.Tag = tagFor(s.ContainerPath, tags)
		tags[s.Tag] = true
	}
	return p, nil
}

func depth(p string) int { return strings.Count(p, "/") }

// mountOrder: by depth, then by path, so a parent comes before what is
// mounted below it and kubelet's order does not matter.
func mountOrder(a, b string) bool {
	if da, db := depth(a), depth(b); da != db {
		return da < db
	}
	return a < b
}

func tagFor(containerPath string, taken map[string]bool) string {
	base := path.Base(containerPath)
	if domain.ValidTag(base) && !taken[base] {
		return base
	}
	safe := []byte(base)
	for i, c := range safe {
		if !domain.ValidTag(string(c)) {
			safe[i] = '_'
		}
	}
	if len(safe) > 22 {
		safe = safe[:22]
	}
	if len(safe) == 0 || string(safe) == "." || string(safe) == ".." {
		safe = []byte("vol")
	}
	for n := 0; ; n++ {
		in := containerPath
		if n > 0 {
			in = fmt.Sprintf("%s#%d", containerPath, n)
		}
		sum := sha256.Sum256([]byte(in))
		tag := string(safe) + "-" + hex.EncodeToString(sum[:4])
		if !taken[tag] {
			return tag
		}
	}
}

// checkGuestPath accepts an absolute, clean container path other than "/"
// without control characters. A share's path must also fit the guest's
// fstab: no whitespace or backslashes (fstab's escape character); a file
// volume's goes to write_files, a YAML string, which takes them.
func checkGuestPath(p string, share bool) error {
	verb := "written"
	if share {
		verb = "mounted"
	}
	switch {
	case !strings.HasPrefix(p, "/"):
		return errors.New("the container path is not absolute")
	case p == "/":
		return fmt.Errorf("a volume cannot be %s over the guest's root", verb)
	case path.Clean(p) != p:
		return fmt.Errorf("the container path is not clean (%q)", path.Clean(p))
	case share && strings.ContainsAny(p, " \t\n\r\v\f\\"):
		return errors.New("the container path has whitespace, control characters or backslashes, which the guest's fstab cannot hold")
	case hasControl(p):
		return errors.New("the container path has control characters")
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f || r == 0xfffd {
			return true
		}
	}
	return false
}

// Filesystems are the domain's 9p shares, in mount order.
func (p *Plan) Filesystems() []domain.Filesystem {
	var out []domain.Filesystem
	for _, s := range p.Shares {
		out = append(out, domain.Filesystem{HostPath: s.HostPath, Tag: s.Tag, ReadOnly: s.ReadOnly, MetadataInFiles: s.MetadataInFiles})
	}
	return out
}

// ChooseMetadata decides, for each share, where QEMU keeps the guest's
// ownership and modes: in user extended attributes of the host's files
// when userXattrs (UserXattrs on a node) says the directory takes them, in
// files otherwise (MetadataInFiles). A failed probe fails the mount.
func (p *Plan) ChooseMetadata(userXattrs func(dir string) (bool, error)) error {
	var errs []error
	for i := range p.Shares {
		s := &p.Shares[i]
		ok, err := userXattrs(s.HostPath)
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %s: asking whether the host directory takes user extended attributes: %w", s.Mount, err))
			continue
		}
		s.MetadataInFiles = !ok
	}
	return errors.Join(errs...)
}

// UserXattrs reports whether the directory dir takes user extended
// attributes (ext4, xfs, btrfs, overlayfs on them, tmpfs since Linux 6.6)
// or not (tmpfs before 6.6, ramfs, NFS before 4.2). It reads an attribute
// nobody sets: "no such attribute" means yes, "not supported" no. Nothing
// is written. A symbolic link is followed, as QEMU follows it to the
// directory it shares (a link itself always answers "no such attribute").
func UserXattrs(dir string) (bool, error) {
	_, err := unix.Getxattr(dir, "user.podvisor.probe", nil)
	switch {
	case err == nil, errors.Is(err, unix.ENODATA), errors.Is(err, unix.ERANGE):
		return true, nil
	case errors.Is(err, unix.EOPNOTSUPP):
		return false, nil
	}
	return false, &fs.PathError{Op: "getxattr", Path: dir, Err: err}
}

// MountOptions are the 9p mount options of every share: the virtio
// transport, the 9P2000.L dialect (POSIX semantics: ownership, modes,
// symbolic links, locks), a 256 KiB message size (kernels before 5.15
// default to 8 KiB, which QEMU warns is slow). Read-only shares add "ro";
// QEMU refuses their writes anyway.
const MountOptions = "trans=virtio,version=9p2000.L,msize=262144"

// MountScriptPath is where the mount script is written in the guest
// (Virtlet's path): it mounts every share that is not mounted yet.
const MountScriptPath = "/etc/cloud/mount-volumes.sh"

// Owner is a guest user and group, numeric.
type Owner struct {
	UID, GID int
}

// DefaultOwner is what VirtletChown9pfsMounts gives the shares: 1000:1000,
// the first user an image creates, which is what cloud-init's default
// user (ubuntu, debian, fedora, ...) gets.
var DefaultOwner = Owner{UID: 1000, GID: 1000}

// Guest is what cloud-init needs to mount the shares in the guest.
type Guest struct {
	// Mounts are cloud-init `mounts` entries:
	// [tag, container path, "9p", options, "0", "0"]. cloud-init creates
	// the mount point, writes the entry to /etc/fstab and mounts it.
	// "nofail": a guest without 9p support still boots.
	Mounts [][]string
	// MountScript is the shell text that replaces @virtlet-mount-script@
	// in a user-data script: for each share, mkdir and mount unless
	// mounted (then the chown, if asked).
	MountScript string
	// Files is the same script as MountScriptPath, 0755.
	Files []cloudinit.GuestFile
	// RunCmd are the `runcmd` entries: with an owner, a recursive chown of
	// each read-write share after it is mounted.
	RunCmd []string
}

// Guest returns the cloud-init parts for the shares; chown, when not nil,
// is the owner every read-write share is recursively given in the guest
// (VirtletChown9pfsMounts). Nothing when there are no shares.
func (p *Plan) Guest(chown *Owner) Guest {
	var g Guest
	if len(p.Shares) == 0 {
		return g
	}
	var lines []string
	for _, s := range p.Shares {
		opts := MountOptions
		if s.ReadOnly {
			opts += ",ro"
		}
		g.Mounts = append(g.Mounts, []string{s.Tag, s.ContainerPath, "9p", opts + ",nofail", "0", "0"})
		q := shellQuote(s.ContainerPath)
		lines = append(lines, fmt.Sprintf("if ! mountpoint -q %s; then mkdir -p %s && mount -t 9p -o %s %s %s; fi", q, q, opts, s.Tag, q))
		if chown != nil && !s.ReadOnly {
			c := fmt.Sprintf("chown -R %d:%d %s", chown.UID, chown.GID, q)
			lines = append(lines, c)
			g.RunCmd = append(g.RunCmd, c)
		}
	}
	g.MountScript = strings.Join(lines, "\n")
	g.Files = []cloudinit.GuestFile{{Path: MountScriptPath, Content: []byte("#!/bin/sh\n" + g.MountScript + "\n"), Mode: 0o755}}
	return g
}

// shellQuote quotes s as one word for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// MaxFileBytes bounds the total size of the files of a container's
// secret, configMap, projected and downwardAPI volumes. They travel in
// user-data on the cloud-init drive (base64, a third larger) and cloud-init
// holds user-data in memory; a Secret or ConfigMap is at most 1 MiB
// anyway.
const MaxFileBytes = 1 << 20

// ReadFiles reads the files of the file mounts, in order, through
// cloudinit.FilesFromDir: the host files' permission bits (kubelet applied
// the volume's defaultMode or the item's mode to them), symbolic links
// only inside the volume directory. Their total size is at most maxBytes;
// the mount whose files pass it is named in the error. Errors name mounts
// and host paths, never contents.
func (p *Plan) ReadFiles(ctx context.Context, maxBytes int64) error {
	var (
		errs  []error
		total int64
	)
	for i := range p.FileMounts {
		f := &p.FileMounts[i]
		files, err := cloudinit.FilesFromDir(ctx, f.HostPath, f.ContainerPath, maxBytes-total)
		if errors.Is(err, cloudinit.ErrTooLarge) {
			errs = append(errs, fmt.Errorf("volume %s: the files of the container's secret, configMap, projected and downwardAPI volumes exceed %d bytes together, the most podvisor writes with cloud-init: %w",
				f.Mount, maxBytes, err))
			break
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", f.Mount, err))
			continue
		}
		for _, g := range files {
			total += int64(len(g.Content))
		}
		f.Files = files
	}
	return errors.Join(errs...)
}

// GuestFiles are the files of all file mounts, in mount order, for
// cloud-init write_files (as root, with their host permission bits).
func (p *Plan) GuestFiles() []cloudinit.GuestFile {
	var out []cloudinit.GuestFile
	for _, f := range p.FileMounts {
		out = append(out, f.Files...)
	}
	return out
}
