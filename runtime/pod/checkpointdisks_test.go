package pod

import (
	"errors"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/snapshot"
)

// checkpointDisks captures the disks in the VM's directory, lists the
// block volumes and 9p shares it leaves out, and refuses a VM whose root
// is a persistent volume, naming it.
func TestCheckpointDisks(t *testing.T) {
	const dir = "/var/lib/podvisor/vms/pv-1"
	file := func(dev, path string, ro bool) libvirtxml.DomainDisk {
		d := libvirtxml.DomainDisk{Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: path}}, Target: &libvirtxml.DomainDiskTarget{Dev: dev}}
		if ro {
			d.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
		}
		return d
	}
	block := func(dev, path string) libvirtxml.DomainDisk {
		return libvirtxml.DomainDisk{Source: &libvirtxml.DomainDiskSource{Block: &libvirtxml.DomainDiskSourceBlock{Dev: path}}, Target: &libvirtxml.DomainDiskTarget{Dev: dev}}
	}
	share := libvirtxml.DomainFilesystem{Source: &libvirtxml.DomainFilesystemSource{Mount: &libvirtxml.DomainFilesystemSourceMount{Dir: "/var/lib/kubelet/pods/u/volumes/data"}},
		Target: &libvirtxml.DomainFilesystemTarget{Dir: "data"}}
	tests := []struct {
		name    string
		disks   []libvirtxml.DomainDisk
		fs      []libvirtxml.DomainFilesystem
		members []string
		not     []string // substrings, one per entry
		err     string   // FailedPrecondition naming this
	}{
		{name: "overlay, cloud-init drive and a disk of podvisor's",
			disks:   []libvirtxml.DomainDisk{file("vda", dir+"/root.qcow2", false), file("vdb", dir+"/cloudinit.iso", true), file("vdc", dir+"/data.qcow2", false)},
			members: []string{snapshot.MemberRoot, snapshot.MemberCloudInit, snapshot.DiskPrefix + "data.qcow2"}},
		{name: "a block PV and a 9p share are named, not captured",
			disks:   []libvirtxml.DomainDisk{file("vda", dir+"/root.qcow2", false), block("vdb", "/dev/loop7")},
			fs:      []libvirtxml.DomainFilesystem{share},
			members: []string{snapshot.MemberRoot},
			not:     []string{"disk vdb (/dev/loop7): not podvisor's", "9p share /var/lib/kubelet/pods/u/volumes/data (tag data)"}},
		{name: "a persistent root volume is refused",
			disks: []libvirtxml.DomainDisk{block("sda", "/dev/loop3"), file("sdb", dir+"/cloudinit.iso", true)},
			err:   "root disk sda is /dev/loop3, a persistent root volume"},
		{name: "a root file outside the VM's directory is refused",
			disks: []libvirtxml.DomainDisk{file("vda", "/srv/other/root.qcow2", false)},
			err:   "root disk vda is /srv/other/root.qcow2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := (&libvirtxml.Domain{Type: "qemu", Name: "pv-1", Devices: &libvirtxml.DomainDeviceList{Disks: tt.disks, Filesystems: tt.fs}}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			files, not, err := checkpointDisks(dir, x)
			if tt.err != "" {
				if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("checkpointDisks: %v, want FailedPrecondition naming %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range files {
				names = append(names, f.Name)
			}
			if strings.Join(names, " ") != strings.Join(tt.members, " ") {
				t.Errorf("members %v, want %v", names, tt.members)
			}
			if len(not) != len(tt.not) {
				t.Fatalf("not captured %q, want %d entries", not, len(tt.not))
			}
			for i, w := range tt.not {
				if !strings.Contains(not[i], w) {
					t.Errorf("not captured[%d] = %q, want it to name %q", i, not[i], w)
				}
			}
		})
	}
}
