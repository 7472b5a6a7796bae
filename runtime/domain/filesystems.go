package domain

import (
	"fmt"

	"libvirt.org/go/libvirtxml"
)

// MaxTagLen is the longest virtio-9p mount tag QEMU accepts: QEMU 7.2
// refuses a 32-byte tag ("mount tag ... (32 bytes) is longer than maximum
// (31 bytes)"), and the guest kernel reads the tag from the device's
// configuration space.
const MaxTagLen = 31

// FilesystemAccessMode is the <filesystem accessmode> of every share:
// "squash" (QEMU's security_model=none). Files are created and chowned as
// the guest asks, with QEMU's own credentials: with QEMU running as root
// (podvisor's qemu.conf) that is the guest's ownership, seen as such on
// the host; a QEMU running as another user cannot chown, and squash then
// ignores the failure instead of failing the guest's chown, cp -a or tar.
// "mapped" would keep ownership in xattrs and leave the host's files
// root-owned with mode 0600 (and tmpfs-backed emptyDirs have no user
// xattrs before Linux 6.6); "passthrough" fails whenever QEMU is not root.
const FilesystemAccessMode = "squash"

// Filesystem is a host directory shared with the guest over virtio-9p
// (<filesystem type='mount'>, QEMU's local fsdev), mounted in the guest by
// its tag.
type Filesystem struct {
	// HostPath is the absolute path of the host directory.
	HostPath string
	// Tag names the share in the guest (mount -t 9p TAG DIR): 1 to 31
	// letters, digits, '-', '_', '.' and '+', unique in the domain.
	Tag string
	// ReadOnly makes QEMU refuse every write (<readonly/>), whatever the
	// guest's mount options.
	ReadOnly bool
}

// FilesystemDevices gives the <filesystem> elements of the shares fss, in
// their order (what Build puts in the domain).
func FilesystemDevices(fss []Filesystem) []libvirtxml.DomainFilesystem {
	if len(fss) == 0 {
		return nil
	}
	out := make([]libvirtxml.DomainFilesystem, 0, len(fss))
	for _, f := range fss {
		fs := libvirtxml.DomainFilesystem{
			AccessMode: FilesystemAccessMode,
			Driver:     &libvirtxml.DomainFilesystemDriver{Type: "path"},
			Source:     &libvirtxml.DomainFilesystemSource{Mount: &libvirtxml.DomainFilesystemSourceMount{Dir: f.HostPath}},
			Target:     &libvirtxml.DomainFilesystemTarget{Dir: f.Tag},
		}
		if f.ReadOnly {
			fs.ReadOnly = &libvirtxml.DomainFilesystemReadOnly{}
		}
		out = append(out, fs)
	}
	return out
}

// ValidTag reports whether tag can name a share: 1 to MaxTagLen letters,
// digits, '-', '_', '.' or '+', and neither "." nor "..". These survive
// an fstab line, a shell word and a libvirt attribute unchanged.
func ValidTag(tag string) bool {
	if tag == "" || len(tag) > MaxTagLen || tag == "." || tag == ".." {
		return false
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '+') {
			return false
		}
	}
	return true
}

func validateFilesystems(bad func(string, string, ...any), fss []Filesystem) {
	seen := map[string]int{}
	for i, f := range fss {
		field := fmt.Sprintf("Filesystems[%d]", i)
		checkPath(bad, field+".HostPath", f.HostPath, true)
		if !ValidTag(f.Tag) {
			bad(field+".Tag", "%q is not 1 to %d letters, digits, '-', '_', '.', '+'", f.Tag, MaxTagLen)
		} else if j, dup := seen[f.Tag]; dup {
			bad(field+".Tag", "%q is also the tag of Filesystems[%d]", f.Tag, j)
		} else {
			seen[f.Tag] = i
		}
	}
}
