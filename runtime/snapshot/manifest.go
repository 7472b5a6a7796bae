// Package snapshot is podvisor's checkpoint archive: one uncompressed tar
// whose first member, manifest.json, names every other member with its
// size and SHA-256, followed by the members (the VM's memory state, its
// root overlay and the other disks podvisor owns, the cloud-init drive,
// the domain definition). The package is pure file work: what goes in and
// what a restore does with it are runtime/pod's.
//
// An archive is written to a temporary file next to the target and renamed
// into place, so the target is either a whole archive or absent. Reading
// checks every member against the manifest before anything is created.
package snapshot

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"
)

// Format and Version identify the archive format. A reader refuses a
// version it does not know rather than guess.
const (
	Format  = "podvisor-checkpoint"
	Version = 1
)

// ManifestName is the first member of every archive.
const ManifestName = "manifest.json"

// Well-known member names.
const (
	MemberDomain    = "domain.xml"    // the domain definition at checkpoint time
	MemberMemory    = "memory.save"   // libvirt's save file (absent in a disk-only checkpoint)
	MemberRoot      = "root.qcow2"    // the root overlay; its backing image is named by BaseImage
	MemberCloudInit = "cloudinit.iso" // the cloud-init drive
	// DiskPrefix is the directory of the other disks podvisor owns.
	DiskPrefix = "disks/"
)

// Kind says what a checkpoint captured.
type Kind string

const (
	// KindMemory: the VM's memory and device state with its disks; a
	// restore continues the guest where it was.
	KindMemory Kind = "memory"
	// KindDiskOnly: the disks only, taken with the guest's file systems
	// frozen; a restore boots the guest from them.
	KindDiskOnly Kind = "disk-only"
)

// Manifest describes an archive.
type Manifest struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Kind    Kind   `json:"kind"`
	// CreatedAt is when the checkpoint was taken.
	CreatedAt time.Time `json:"createdAt"`
	// Podvisor is the version of the podvisor that wrote it.
	Podvisor string `json:"podvisor"`
	// Hypervisor names the hypervisor and its version ("libvirt 9.0.0").
	Hypervisor string `json:"hypervisor"`
	// Accelerator is what the memory state was made under ("kvm", "tcg"
	// or "sim"): a memory state does not cross between them.
	Accelerator string    `json:"accelerator,omitempty"`
	Pod         Pod       `json:"pod"`
	Container   Container `json:"container"`
	// BaseImage is the image the root overlay is backed by. It is not in
	// the archive: the restoring node must have it pulled.
	BaseImage BaseImage `json:"baseImage"`
	// NotCaptured lists what the VM used that the archive does not hold
	// (block volumes, 9p shares), one sentence each.
	NotCaptured []string `json:"notCaptured,omitempty"`
	Members     []Member `json:"members"`
}

// Pod is the checkpointed pod's identity and configuration.
type Pod struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace"`
	UID         string            `json:"uid"`
	Attempt     uint32            `json:"attempt"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// IPs are the pod's addresses at checkpoint time.
	IPs []string `json:"ips,omitempty"`
}

// Container is the checkpointed container.
type Container struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Image string `json:"image"`
	// Dir was the container's directory on the checkpointed node.
	Dir string `json:"dir,omitempty"`
	// Config is the container's configuration as podvisor recorded it
	// (runtime/podtypes.ContainerConfig), for a restore that has none.
	Config json.RawMessage `json:"config,omitempty"`
}

// BaseImage names the image behind the root overlay.
type BaseImage struct {
	// Ref is the image's content ref (sha256:<hex>).
	Ref string `json:"ref"`
	// Name is the name it was pulled under.
	Name string `json:"name"`
}

// Member is one file of the archive after the manifest.
type Member struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Source is where a disk was on the checkpointed node, for the
	// restore to find it in the domain definition.
	Source string `json:"source,omitempty"`
}

// Member returns the named member, if the manifest lists it.
func (m *Manifest) Member(name string) (Member, bool) {
	for _, mem := range m.Members {
		if mem.Name == name {
			return mem, true
		}
	}
	return Member{}, false
}

// validate checks what a reader relies on: format, version, and member
// names that stay inside the extraction directory, each listed once.
func (m *Manifest) validate() error {
	if m.Format != Format {
		return fmt.Errorf("manifest: format %q: want %q (is this a podvisor checkpoint?)", m.Format, Format)
	}
	if m.Version != Version {
		return fmt.Errorf("manifest: version %d: this podvisor reads version %d", m.Version, Version)
	}
	if m.Kind != KindMemory && m.Kind != KindDiskOnly {
		return fmt.Errorf("manifest: kind %q: want %q or %q", m.Kind, KindMemory, KindDiskOnly)
	}
	seen := map[string]bool{}
	for _, mem := range m.Members {
		if err := validMemberName(mem.Name); err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		if seen[mem.Name] {
			return fmt.Errorf("manifest: member %q is listed twice", mem.Name)
		}
		seen[mem.Name] = true
		if mem.Size < 0 || len(mem.SHA256) != 64 {
			return fmt.Errorf("manifest: member %q: size %d and sha256 %q are not a size and a SHA-256", mem.Name, mem.Size, mem.SHA256)
		}
	}
	for _, must := range []string{MemberDomain, MemberRoot} {
		if !seen[must] {
			return fmt.Errorf("manifest: member %q is missing", must)
		}
	}
	if m.Kind == KindMemory && !seen[MemberMemory] {
		return fmt.Errorf("manifest: a %s checkpoint without member %q", KindMemory, MemberMemory)
	}
	return nil
}

// validMemberName accepts the names this package writes: a well-known
// name or disks/<file>, never a path out of the directory.
func validMemberName(name string) error {
	switch name {
	case MemberDomain, MemberMemory, MemberRoot, MemberCloudInit:
		return nil
	}
	rest, ok := strings.CutPrefix(name, DiskPrefix)
	if !ok || rest == "" || strings.Contains(rest, "/") || path.Clean(name) != name || rest == "." || rest == ".." {
		return fmt.Errorf("member name %q: want one of %s, %s, %s, %s or %s<file>", name, MemberDomain, MemberMemory, MemberRoot, MemberCloudInit, DiskPrefix)
	}
	return nil
}
