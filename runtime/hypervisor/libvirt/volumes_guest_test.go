package libvirt

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/podvisor/podvisor/runtime/cloudinit"
	"github.com/podvisor/podvisor/runtime/domain"
	"github.com/podvisor/podvisor/runtime/volume"
)

// TestVolumesInGuest boots the test guest on libvirt with two host
// directories planned by runtime/volume as the pod layer does (one
// read-write, one read-only), shared by runtime/domain's <filesystem>
// elements and mounted by the cloud-init drive runtime/cloudinit writes,
// with VirtletChown9pfsMounts' chown. Through the guest agent it checks
// that the guest reads what the host wrote, the host reads what the guest
// wrote, a write to the read-only share fails (also when the guest mounts
// it read-write: QEMU refuses), and that ownership set in the guest is the
// host's (accessmode squash, QEMU running as root). The script case mounts
// through @virtlet-mount-script@ instead of cloud-config.
func TestVolumesInGuest(t *testing.T) {
	h := cloudInitTestHypervisor(t)

	for _, tc := range []struct {
		name   string
		script bool
	}{{"cloud-config", false}, {"mount-script", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			rw, ro := sharedDir(t), sharedDir(t)
			writeFile(t, filepath.Join(rw, "from-host.txt"), "hello from the host\n")
			writeFile(t, filepath.Join(ro, "config.txt"), "read-only config\n")
			plan, err := volume.PlanMounts([]volume.Mount{
				{ContainerPath: "/etc/hosts", HostPath: filepath.Join(ro, "config.txt")}, // kubelet's: skipped
				{ContainerPath: "/mnt/data", HostPath: rw},
				{ContainerPath: "/etc/app", HostPath: ro, ReadOnly: true},
			}, os.Stat)
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Shares) != 2 || plan.Shares[0].Tag != "app" || plan.Shares[1].Tag != "data" {
				t.Fatalf("plan: %+v", plan.Shares)
			}
			g := plan.Guest(&volume.DefaultOwner)
			name := fmt.Sprintf("podvisor-ci-9p-%s-%d", tc.name, os.Getpid())
			in := cloudinit.Input{PodName: name, PodNamespace: "default", Hostname: "ci-9p",
				Mounts: g.Mounts, MountScript: g.MountScript, Files: g.Files, RunCmd: g.RunCmd}
			if tc.script {
				in.UserDataScript = "#!/bin/sh\n" + cloudinit.MountScriptPlaceholder + "\necho SCRIPT-SAYS $(cat /mnt/data/from-host.txt)\n"
			}
			c, err := cloudinit.Generate(ctx, in, nil)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			x := cloudInitDomainWith(t, h, name, c, "52:54:00:5a:17:09", domain.FilesystemDevices(plan.Filesystems()))
			if _, err := h.Define(ctx, x); err != nil {
				t.Fatalf("Define: %v", err)
			}
			if err := h.Start(ctx, name); err != nil {
				t.Fatalf("Start: %v", err)
			}
			con, err := h.Console(ctx, name)
			if err != nil {
				t.Fatalf("Console: %v", err)
			}
			defer con.Close()
			out := readConsole(con)
			out.waitFor(t, "PODVISOR-GUEST: ready", bootDeadline)
			want := []string{"cloud-config: mounted data on /mnt/data", "cloud-config: mounted app on /etc/app", "cloud-config: ran sh -c chown -R 1000:1000 '/mnt/data'"}
			if tc.script {
				want = []string{"SCRIPT-SAYS hello from the host"}
			}
			for _, w := range want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("console lacks %q:\n%s", w, out.String())
				}
			}

			mounts := guestExec(t, h, name, "cat", "/proc/mounts")
			for _, w := range []string{"data /mnt/data 9p rw,", "app /etc/app 9p ro,"} {
				if !strings.Contains(mounts, w) {
					t.Errorf("the guest's /proc/mounts lacks %q:\n%s", w, mounts)
				}
			}
			// Host → guest, both shares.
			if got := guestExec(t, h, name, "cat", "/mnt/data/from-host.txt"); got != "hello from the host\n" {
				t.Errorf("the guest reads %q from the read-write share", got)
			}
			if got := guestExec(t, h, name, "cat", "/etc/app/config.txt"); got != "read-only config\n" {
				t.Errorf("the guest reads %q from the read-only share", got)
			}
			// Guest → host.
			guestExec(t, h, name, "sh", "-c", "echo written in the guest >/mnt/data/from-guest.txt && mkdir -p /mnt/data/sub && echo deep >/mnt/data/sub/f")
			if b, err := os.ReadFile(filepath.Join(rw, "from-guest.txt")); err != nil || string(b) != "written in the guest\n" {
				t.Errorf("the host reads %q, %v from what the guest wrote", b, err)
			}
			if b, err := os.ReadFile(filepath.Join(rw, "sub", "f")); err != nil || string(b) != "deep\n" {
				t.Errorf("the host reads %q, %v from the guest's subdirectory", b, err)
			}
			// The read-only share refuses writes, even mounted read-write
			// (a 9p share is mounted once at a time: remount it).
			got := guestExec(t, h, name, "sh", "-c", "{ echo x >/etc/app/nope || echo WRITE-REFUSED; } 2>&1; "+
				"umount /etc/app && mount -t 9p -o trans=virtio,version=9p2000.L,rw app /etc/app && grep ' /etc/app ' /proc/mounts && "+
				"{ echo x >/etc/app/nope || echo RW-MOUNT-WRITE-REFUSED; } 2>&1")
			for _, w := range []string{"Read-only file system", "WRITE-REFUSED", "app /etc/app 9p rw,", "RW-MOUNT-WRITE-REFUSED"} {
				if !strings.Contains(got, w) {
					t.Errorf("writing to the read-only share: %q lacks %q", got, w)
				}
			}
			if _, err := os.Stat(filepath.Join(ro, "nope")); !os.IsNotExist(err) {
				t.Errorf("a file appeared in the read-only host directory: %v", err)
			}
			// Ownership: VirtletChown9pfsMounts' chown in the guest is the
			// host's; a file the guest's root makes is root's, one its user
			// 1000 makes is 1000's; a chown in the guest reaches the host.
			wantOwner(t, filepath.Join(rw, "from-host.txt"), 1000, 1000)
			wantOwner(t, filepath.Join(rw, "from-guest.txt"), 0, 0)
			wantOwner(t, filepath.Join(ro, "config.txt"), 0, 0)
			// The chowned share is the default user's to write: a file it
			// makes is 1000's on the host.
			guestExec(t, h, name, "sh", "-c", "echo 'pvuser:x:1000:1000::/tmp:/bin/sh' >>/etc/passwd && echo 'pvuser:x:1000:' >>/etc/group && "+
				"su pvuser -c 'echo mine >/mnt/data/by-user.txt'")
			wantOwner(t, filepath.Join(rw, "by-user.txt"), 1000, 1000)
			guestExec(t, h, name, "chown", "4321:4322", "/mnt/data/from-guest.txt")
			wantOwner(t, filepath.Join(rw, "from-guest.txt"), 4321, 4322)
			if got := guestExec(t, h, name, "stat", "-c", "%u:%g", "/mnt/data/from-host.txt"); strings.TrimSpace(got) != "1000:1000" {
				t.Errorf("the guest sees from-host.txt owned by %q", got)
			}
		})
	}
}

// sharedDir is a temporary directory QEMU can reach.
func sharedDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func wantOwner(t *testing.T, p string, uid, gid uint32) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Error(err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uid || st.Gid != gid {
		t.Errorf("%s is owned by %d:%d on the host, want %d:%d", p, st.Uid, st.Gid, uid, gid)
	}
}
