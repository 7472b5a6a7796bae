package libvirt

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/podvisor/podvisor/runtime/cloudinit"
	"github.com/podvisor/podvisor/runtime/domain"
	"github.com/podvisor/podvisor/runtime/image"
	"github.com/podvisor/podvisor/runtime/volume"
)

// loopDevice attaches a sparse file of size bytes to a free loop device:
// a block PV as a local PV on a loop device gives it. Detached at the end.
func loopDevice(t *testing.T, size int64) string {
	t.Helper()
	needTool(t, "losetup")
	f := filepath.Join(t.TempDir(), "pv.img")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", f).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

// TestPersistentRootInGuest boots the test guest from a loop device as a
// persistent root volume (devicePath "/"): volume.PrepareRoot writes the
// image after its marker, the guest sees exactly the slice after it and
// writes on its root disk (in the image's last sector: the guest's root
// file system is its initramfs), the domain is destroyed, and a second
// domain on the same device — prepared again, with another image named —
// boots what the first left and reads it. With it, a block volume
// at /dev/testpvc: its disk serial and the cloud-init bootcmd of
// volume.DevicePlan.GuestLinks make /dev/testpvc in the guest a link to
// that disk, through which the guest writes what the host reads on the
// device (virtio-blk's sysfs serial in the first domain, the SCSI disk's
// VPD page in the second: the test guest has no udev). The guest's disk
// names are not asserted: Linux probes SCSI disks asynchronously, so the
// volume and the cloud-init drive take sdb and sdc in either order from
// one boot to the next (the first failure of this test); the link must
// lead to the disk with the volume's serial, whatever its name.
func TestPersistentRootInGuest(t *testing.T) {
	h := cloudInitTestHypervisor(t)
	ctx := context.Background()
	base := testGuest(t)
	size, format, err := image.VirtualSize(base)
	if err != nil {
		t.Fatal(err)
	}
	rootDev := loopDevice(t, size+volume.RootHeaderSize+8<<20)
	dataDev := loopDevice(t, 16<<20)
	plan, err := volume.PlanDevices([]volume.Device{{ContainerPath: "/dev/testpvc", HostPath: dataDev}, {ContainerPath: "/", HostPath: rootDev}})
	if err != nil || plan.Root == nil {
		t.Fatalf("PlanDevices: %v, %+v", err, plan)
	}

	boot := func(name string, virtio bool, img volume.RootImage) {
		t.Helper()
		d, err := volume.PrepareRoot(ctx, plan.Root.HostPath, img)
		if err != nil {
			t.Fatalf("PrepareRoot: %v", err)
		}
		t.Logf("%s: %+v", name, d)
		c, err := cloudinit.Generate(ctx, cloudinit.Input{PodName: name, PodNamespace: "default", Hostname: "ci-root", BootCmd: plan.GuestLinks()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		iso := filepath.Join(dir, "cloud-init.iso")
		if err := cloudinit.WriteISO(ctx, c, iso); err != nil {
			t.Fatal(err)
		}
		root := domain.Disk{Path: rootDev, Format: domain.FormatRaw, Block: true, Offset: d.Offset, Size: d.Size}
		x := buildTestDomain(t, h, testDomainSpec{name: name, dir: dir, iso: iso, agent: true, root: &root, vols: plan.VolumeDisks(), virtio: virtio})
		con, out := bootGuest(ctx, t, h, name, x, "PODVISOR-GUEST: ready")
		defer con.Close()
		if !strings.Contains(out.String(), "podvisor: linked /dev/testpvc to ") {
			t.Errorf("%s: the console does not show /dev/testpvc linked:\n%s", name, out.String())
		}
		if got := strings.TrimSpace(guestExec(t, h, name, "cat", "/sys/block/"+guestRootDisk(t, h, name, virtio)+"/size")); got != strconv.FormatUint(d.Size/512, 10) {
			t.Errorf("%s: the guest's root disk has %s sectors, want the slice's %d", name, got, d.Size/512)
		}
		// The link leads to the disk whose serial is the volume's.
		link := strings.TrimSpace(guestExec(t, h, name, "readlink", "-f", "/dev/testpvc"))
		t.Logf("%s: /dev/testpvc links to %s", name, link)
		if got := guestDiskSerial(t, h, name, strings.TrimPrefix(link, "/dev/")); got != plan.Disks[0].Serial {
			t.Errorf("%s: /dev/testpvc leads to %s, whose serial is %q; want the volume's %q", name, link, got, plan.Disks[0].Serial)
		}
	}

	// First pod: the image is written, the guest leaves a file on its root.
	first := fmt.Sprintf("podvisor-ci-root1-%d", os.Getpid())
	boot(first, true, volume.RootImage{Path: base, Format: format, Size: size})
	// The test guest's root file system is its initramfs: it writes on
	// its root disk itself, in the image's last sector (free space of its
	// FAT), which a second write of the image would zero.
	sector := strconv.FormatInt(size/512-1, 10)
	guestExec(t, h, first, "sh", "-c", "echo left-by-the-first-pod | dd of=/dev/vda bs=512 seek="+sector+" conv=fsync 2>/dev/null")
	guestExec(t, h, first, "sh", "-c", "echo through-the-link | dd of=/dev/testpvc conv=fsync 2>/dev/null")
	if err := h.Destroy(ctx, first); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	// The second domain has the same UUID (buildTestDomain's pod).
	if err := h.Undefine(ctx, first); err != nil {
		t.Fatalf("Undefine: %v", err)
	}
	head := make([]byte, len("through-the-link"))
	f, err := os.Open(dataDev)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.ReadAt(head, 0)
	f.Close()
	if err != nil || string(head) != "through-the-link" {
		t.Errorf("the block volume holds %q (%v), want what the guest wrote through /dev/testpvc", head, err)
	}

	// Second pod, another image named: the volume is booted as left.
	other := filepath.Join(t.TempDir(), "other.raw")
	if err := os.WriteFile(other, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	second := fmt.Sprintf("podvisor-ci-root2-%d", os.Getpid())
	boot(second, false, volume.RootImage{Path: other, Format: "raw", Size: 1 << 20})
	got := guestExec(t, h, second, "sh", "-c", "dd if=/dev/"+guestRootDisk(t, h, second, false)+" bs=512 skip="+sector+" count=1 2>/dev/null | head -n1")
	if strings.TrimSpace(got) != "left-by-the-first-pod" {
		t.Errorf("the second pod reads %q from its root, want what the first left", got)
	}
}

// guestRootDisk is the name of the guest's root disk: vda (virtio-blk
// disks are named in PCI order, the root's slot first), or the SCSI disk
// at LUN 0 (domain.Build's unit 0), whichever name Linux gave it.
func guestRootDisk(t *testing.T, h *Hypervisor, name string, virtio bool) string {
	t.Helper()
	if virtio {
		return "vda"
	}
	out := strings.TrimSpace(guestExec(t, h, name, "sh", "-c", `for b in /sys/block/sd*; do case "$(readlink -f "$b/device")" in *:0:0:0) echo "${b##*/}";; esac; done`))
	if out == "" || strings.ContainsAny(out, " \n") {
		t.Fatalf("%s: the SCSI disk at LUN 0: %q", name, out)
	}
	return out
}

// guestDiskSerial is the serial the guest reads of disk dev (vdb, sdc):
// virtio-blk's sysfs serial or the SCSI disk's VPD page 0x80, as
// volume.DevicePlan.GuestLinks reads them.
func guestDiskSerial(t *testing.T, h *Hypervisor, name, dev string) string {
	t.Helper()
	b := "/sys/block/" + dev
	return strings.TrimSpace(guestExec(t, h, name, "sh", "-c", "cat "+b+"/serial 2>/dev/null || tail -c +5 "+b+"/device/vpd_pg80 | tr -d '\\000'"))
}
