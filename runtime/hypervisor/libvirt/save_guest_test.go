package libvirt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/cloudinit"
	"github.com/podvisor/podvisor/runtime/hypervisor"
	"github.com/podvisor/podvisor/runtime/volume"
)

// counterScript counts in the guest's memory, once a second, and writes
// the count where guest-exec can read it.
const counterScript = "#!/bin/sh\n(i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 1; done) &\necho COUNTER-STARTED\n"

// guestCount reads the guest's counter through its agent.
func guestCount(t *testing.T, h *Hypervisor, name string) int {
	t.Helper()
	out := strings.TrimSpace(guestExec(t, h, name, "cat", "/tmp/count"))
	n, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("the guest's count %q: %v", out, err)
	}
	return n
}

// TestLibvirtSaveRestore saves a guest whose process counts in memory and
// restores it twice: as a copy under a new name and UUID with its console
// elsewhere (what a restore as a new pod does), then as itself. The count
// goes on from where it was each time, which a fresh boot would not do.
func TestLibvirtSaveRestore(t *testing.T) {
	h := cloudInitTestHypervisor(t)
	ctx := context.Background()
	name := fmt.Sprintf("podvisor-ci-save-%d", os.Getpid())
	c, err := cloudinit.Generate(ctx, cloudinit.Input{PodName: name, PodNamespace: "default", Hostname: "ci-save", UserDataScript: counterScript}, nil)
	if err != nil {
		t.Fatal(err)
	}
	x := cloudInitDomain(t, h, name, c, "52:54:00:5a:17:21")
	con, _ := bootGuest(ctx, t, h, name, x, "COUNTER-STARTED")
	con.Close()
	for guestCount(t, h, name) < 3 {
		time.Sleep(time.Second)
	}
	before := guestCount(t, h, name)

	save := filepath.Join(sharedDir(t), "vm.save")
	if err := h.Save(ctx, name, save); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if st, _ := h.Status(ctx, name); st.State != hypervisor.StateShutoff || st.Reason != hypervisor.ReasonSaved {
		t.Errorf("after Save: %v/%s, want shutoff/saved", st.State, st.Reason)
	}
	saved, err := h.SavedXML(ctx, save)
	if err != nil {
		t.Fatalf("SavedXML: %v", err)
	}

	copyName := name + "-copy"
	if err := h.Restore(ctx, save, renamedDomain(t, h, saved, copyName)); err != nil {
		t.Fatalf("Restore as %s: %v", copyName, err)
	}
	if after := guestCount(t, h, copyName); after < before {
		t.Errorf("the copy counts %d, below the %d saved: it did not continue the saved guest", after, before)
	}
	copied := guestCount(t, h, copyName)
	if err := h.Destroy(ctx, copyName); err != nil {
		t.Fatal(err)
	}

	// The saved file restores the original too, still defined.
	if err := h.Restore(ctx, save, saved); err != nil {
		t.Fatalf("Restore as itself: %v", err)
	}
	if after := guestCount(t, h, name); after < before || after > copied+60 {
		t.Errorf("the original counts %d after restore, want from %d on", after, before)
	}
	if st, _ := h.Status(ctx, name); st.State != hypervisor.StateRunning {
		t.Errorf("after Restore: %v, want running", st.State)
	}
}

// renamedDomain is saved with a new name and UUID, the console socket in
// a new directory and the agent socket left to libvirt; the transient copy
// is destroyed at the end of the test.
func renamedDomain(t *testing.T, h *Hypervisor, saved, name string) string {
	t.Helper()
	var d libvirtxml.Domain
	if err := d.Unmarshal(saved); err != nil {
		t.Fatal(err)
	}
	d.Name, d.UUID = name, uuid.NewString()
	dir := sharedDir(t)
	for i := range d.Devices.Serials {
		if s := d.Devices.Serials[i].Source; s != nil && s.UNIX != nil {
			s.UNIX.Path = filepath.Join(dir, "console.sock")
		}
	}
	for i := range d.Devices.Channels {
		if s := d.Devices.Channels[i].Source; s != nil && s.UNIX != nil {
			s.UNIX.Path = filepath.Join(dir, "agent.sock")
		}
	}
	x, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = h.Destroy(ctx, name)
	})
	return x
}

// TestLibvirtSaveRefusesMountedShare: QEMU refuses to save a guest with a
// 9p share mounted; Save says so naming the share, leaves no file and the
// guest running.
func TestLibvirtSaveRefusesMountedShare(t *testing.T) {
	h := cloudInitTestHypervisor(t)
	ctx := context.Background()
	share := sharedDir(t)
	plan, err := volume.PlanMounts([]volume.Mount{{ContainerPath: "/mnt/data", HostPath: share}}, os.Stat)
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.ChooseMetadata(volume.UserXattrs); err != nil {
		t.Fatal(err)
	}
	g := plan.Guest(nil)
	name := fmt.Sprintf("podvisor-ci-save9p-%d", os.Getpid())
	c, err := cloudinit.Generate(ctx, cloudinit.Input{PodName: name, PodNamespace: "default", Hostname: "ci-save9p",
		Mounts: g.Mounts, MountScript: g.MountScript, Files: g.Files, RunCmd: g.RunCmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	x := cloudInitDomainWith(t, h, name, c, "52:54:00:5a:17:22", plan.Filesystems())
	con, _ := bootGuest(ctx, t, h, name, x, "cloud-config: mounted data on /mnt/data")
	con.Close()
	save := filepath.Join(sharedDir(t), "vm.save")
	err = h.Save(ctx, name, save)
	if !errors.Is(err, hypervisor.ErrNotSavable) || !strings.Contains(err.Error(), share) || !strings.Contains(err.Error(), "tag data") {
		t.Errorf("Save with a mounted share: %v, want ErrNotSavable naming %s (tag data)", err, share)
	}
	if _, serr := os.Stat(save); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("the refused save left %s: %v", save, serr)
	}
	if st, _ := h.Status(ctx, name); st.State != hypervisor.StateRunning {
		t.Errorf("after the refused save: %v, want running", st.State)
	}
}
