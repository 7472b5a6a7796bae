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
// "mapped" (QEMU's security_model=mapped-xattr). QEMU creates the guest's
// files, directories, device nodes and symbolic links on the host as
// regular files and directories of its own user (root) with modes 0600
// and 0700, and keeps the ownership, mode, file type and device number
// the guest asked for in user.virtfs.* extended attributes of each file,
// which the guest sees and cannot read or set itself. So the guest's root
// makes no setuid file, device node or link on the host, and a chown or
// chmod in the guest changes only what the guest sees. A host file
// without those attributes shows the guest its real owner and mode.
//
// "squash" (security_model=none, podvisor's mode until issue 18) applied
// the guest's chown, chmod and mknod to the host's files with QEMU's root
// credentials; "passthrough" does the same and fails when QEMU may not.
const FilesystemAccessMode = "mapped"

// MetadataFileModel is the QEMU security model of a share whose host
// directory takes no user extended attributes (tmpfs before Linux 6.6,
// ramfs, NFS before 4.2): "mapped-file", the same mapping kept in files
// of a .virtfs_metadata directory beside the files it describes (hidden
// from the guest). libvirt has no accessmode for it, so the share is
// declared "mapped" and a qemu:arg "-set" changes its fsdev's
// security_model (FilesystemArgs).
const MetadataFileModel = "mapped-file"

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
	// MetadataInFiles keeps the guest's ownership and modes in files
	// (MetadataFileModel) instead of extended attributes, for a host
	// directory that takes no user extended attributes.
	MetadataInFiles bool
}

// filesystemAlias is the libvirt device alias of share i (a user alias,
// "ua-" prefixed, so that it is stable); libvirt names its QEMU fsdev
// "fsdev-" + alias.
func filesystemAlias(i int) string { return fmt.Sprintf("ua-fs%d", i) }

// FilesystemArgs gives the qemu:arg values the shares fss need, in their
// order: "-set fsdev.<id>.security_model=mapped-file" for each share with
// MetadataInFiles. libvirt appends qemu:args after the devices it
// generates, so the -set follows the -fsdev it changes.
func FilesystemArgs(fss []Filesystem) []string {
	var args []string
	for i, f := range fss {
		if f.MetadataInFiles {
			args = append(args, "-set", fmt.Sprintf("fsdev.fsdev-%s.security_model=%s", filesystemAlias(i), MetadataFileModel))
		}
	}
	return args
}

// FilesystemDevices gives the <filesystem> elements of the shares fss, in
// their order (what Build puts in the domain, with FilesystemArgs).
func FilesystemDevices(fss []Filesystem) []libvirtxml.DomainFilesystem {
	if len(fss) == 0 {
		return nil
	}
	out := make([]libvirtxml.DomainFilesystem, 0, len(fss))
	for i, f := range fss {
		fs := libvirtxml.DomainFilesystem{
			AccessMode: FilesystemAccessMode,
			Alias:      &libvirtxml.DomainAlias{Name: filesystemAlias(i)},
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
