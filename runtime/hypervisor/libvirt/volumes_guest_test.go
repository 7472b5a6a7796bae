package libvirt

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podvisor/podvisor/runtime/cloudinit"
	"github.com/podvisor/podvisor/runtime/volume"
)

// TestVolumesInGuest boots the test guest on libvirt with three host
// directories planned by runtime/volume as the pod layer does (a read-write
// one on the test's filesystem, one read-only, and a read-write ramfs,
// which takes no user extended attributes like tmpfs before Linux 6.6),
// shared by runtime/domain's <filesystem> elements and mounted by the
// cloud-init drive runtime/cloudinit writes, with VirtletChown9pfsMounts'
// chown. Through the guest agent it checks that the guest reads what the
// host wrote, the host reads what the guest wrote, a write to the
// read-only share fails (also when the guest mounts it read-write: QEMU
// refuses), and that ownership and modes set in the guest stay the
// guest's (accessmode mapped: xattrs, and metadata files on the ramfs):
// the guest's root makes device nodes, setuid and setgid files and a
// symbolic link that the guest sees as such and the host as plain files
// and directories of QEMU's user. The script case mounts through
// @virtlet-mount-script@ instead of cloud-config.
func TestVolumesInGuest(t *testing.T) {
	h := cloudInitTestHypervisor(t)

	for _, tc := range []struct {
		name   string
		script bool
	}{{"cloud-config", false}, {"mount-script", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			rw, ro, mem := sharedDir(t), sharedDir(t), ramfsDir(t)
			writeFile(t, filepath.Join(rw, "from-host.txt"), "hello from the host\n")
			writeFile(t, filepath.Join(ro, "config.txt"), "read-only config\n")
			writeFile(t, filepath.Join(mem, "from-host.txt"), "hello from the ramfs\n")
			plan, err := volume.PlanMounts([]volume.Mount{
				{ContainerPath: "/etc/hosts", HostPath: filepath.Join(ro, "config.txt")}, // kubelet's: skipped
				{ContainerPath: "/mnt/data", HostPath: rw},
				{ContainerPath: "/etc/app", HostPath: ro, ReadOnly: true},
				{ContainerPath: "/mnt/scratch", HostPath: mem},
			}, os.Stat)
			if err != nil {
				t.Fatal(err)
			}
			if err := plan.ChooseMetadata(volume.UserXattrs); err != nil {
				t.Fatal(err)
			}
			var shares []string
			for _, s := range plan.Shares {
				shares = append(shares, fmt.Sprintf("%s files=%v", s.Tag, s.MetadataInFiles))
			}
			if got, want := strings.Join(shares, ", "), "app files=false, data files=false, scratch files=true"; got != want {
				t.Fatalf("plan: %s, want %s", got, want)
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
			x := cloudInitDomainWith(t, h, name, c, "52:54:00:5a:17:09", plan.Filesystems())
			con, out := bootGuest(ctx, t, h, name, x, "PODVISOR-GUEST: ready")
			defer con.Close()
			want := []string{"cloud-config: mounted data on /mnt/data", "cloud-config: mounted app on /etc/app", "cloud-config: mounted scratch on /mnt/scratch",
				"cloud-config: ran sh -c chown -R 1000:1000 '/mnt/data'", "cloud-config: ran sh -c chown -R 1000:1000 '/mnt/scratch'"}
			if tc.script {
				want = []string{"SCRIPT-SAYS hello from the host"}
			}
			for _, w := range want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("console lacks %q:\n%s", w, out.String())
				}
			}

			mounts := guestExec(t, h, name, "cat", "/proc/mounts")
			for _, w := range []string{"data /mnt/data 9p rw,", "app /etc/app 9p ro,", "scratch /mnt/scratch 9p rw,"} {
				if !strings.Contains(mounts, w) {
					t.Errorf("the guest's /proc/mounts lacks %q:\n%s", w, mounts)
				}
			}
			checkExchange(t, h, name, rw, ro, mem)
			checkReadOnly(t, h, name, ro)
			checkOwnership(t, h, name, rw, mem)
			checkNoHostPrivileges(t, h, name, "/mnt/data", rw)
			checkNoHostPrivileges(t, h, name, "/mnt/scratch", mem)
			checkMapping(t, rw, mem)
			// mapped-file keeps its metadata beside the files, out of the
			// guest's sight.
			if fi, err := os.Stat(filepath.Join(mem, ".virtfs_metadata")); err != nil || !fi.IsDir() {
				t.Errorf("the ramfs share has no .virtfs_metadata directory on the host: %v", err)
			}
			if got := guestExec(t, h, name, "ls", "-a", "/mnt/scratch"); strings.Contains(got, "virtfs") {
				t.Errorf("the guest sees QEMU's metadata files: %q", got)
			}
		})
	}
}

// checkExchange: host → guest on every share, guest → host on the
// read-write ones.
func checkExchange(t *testing.T, h *Hypervisor, name, rw, ro, mem string) {
	t.Helper()
	for p, want := range map[string]string{"/mnt/data/from-host.txt": "hello from the host\n", "/etc/app/config.txt": "read-only config\n",
		"/mnt/scratch/from-host.txt": "hello from the ramfs\n"} {
		if got := guestExec(t, h, name, "cat", p); got != want {
			t.Errorf("the guest reads %q from %s, want %q", got, p, want)
		}
	}
	guestExec(t, h, name, "sh", "-c", "for d in /mnt/data /mnt/scratch; do echo written in the guest >$d/from-guest.txt && mkdir -p $d/sub && echo deep >$d/sub/f || exit 1; done")
	for _, dir := range []string{rw, mem} {
		if b, err := os.ReadFile(filepath.Join(dir, "from-guest.txt")); err != nil || string(b) != "written in the guest\n" {
			t.Errorf("the host reads %q, %v from what the guest wrote in %s", b, err, dir)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "sub", "f")); err != nil || string(b) != "deep\n" {
			t.Errorf("the host reads %q, %v from the guest's subdirectory in %s", b, err, dir)
		}
	}
}

// checkReadOnly: the read-only share refuses writes, even mounted
// read-write (a 9p share is mounted once at a time: remount it).
func checkReadOnly(t *testing.T, h *Hypervisor, name, ro string) {
	t.Helper()
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
	wantOwner(t, filepath.Join(ro, "config.txt"), 0, 0)
}

// checkOwnership: VirtletChown9pfsMounts' chown and every chown in the
// guest change what the guest sees, not the host's files, which belong to
// whoever made them on the host and otherwise to QEMU's user (root); the
// chowned share is the guest's default user's to write.
func checkOwnership(t *testing.T, h *Hypervisor, name string, dirs ...string) {
	t.Helper()
	guestExec(t, h, name, "sh", "-c", "echo 'pvuser:x:1000:1000::/tmp:/bin/sh' >>/etc/passwd && echo 'pvuser:x:1000:' >>/etc/group && "+
		"su pvuser -c 'echo mine >/mnt/data/by-user.txt && echo mine >/mnt/scratch/by-user.txt' && "+
		"chown 4321:4322 /mnt/data/from-guest.txt /mnt/scratch/from-guest.txt")
	for i, d := range []string{"/mnt/data", "/mnt/scratch"} {
		got := guestExec(t, h, name, "stat", "-c", "%n %u:%g", d, d+"/from-host.txt", d+"/from-guest.txt", d+"/by-user.txt")
		want := fmt.Sprintf("%[1]s 1000:1000\n%[1]s/from-host.txt 1000:1000\n%[1]s/from-guest.txt 4321:4322\n%[1]s/by-user.txt 1000:1000\n", d)
		if got != want {
			t.Errorf("the guest sees owners\n%s\nwant\n%s", got, want)
		}
		for _, f := range []string{"", "from-host.txt", "from-guest.txt", "by-user.txt"} {
			wantOwner(t, filepath.Join(dirs[i], f), 0, 0)
		}
	}
}

// checkNoHostPrivileges: the guest's root makes character and block
// devices, a setuid and setgid file, a setgid directory and a symbolic
// link to /etc/shadow in the share at guestDir; the guest sees them as it
// made them, the host (hostDir) sees regular files and a directory with
// no setuid, setgid or sticky bit.
func checkNoHostPrivileges(t *testing.T, h *Hypervisor, name, guestDir, hostDir string) {
	t.Helper()
	// Each step on its own: one that fails does not hide the others.
	got := guestExec(t, h, name, "sh", "-c", "cd "+guestDir+" || exit 1; mknod -m 644 null c 1 3; mknod -m 644 disk b 8 0; "+
		"echo '#!/bin/sh' >suid && chmod 6755 suid; mkdir sgid && chmod 3777 sgid; ln -s /etc/shadow link; "+
		"stat -c '%n|%F|%a|%t,%T' null disk suid sgid link 2>&1; true")
	for _, w := range []string{"null|character special file|644|1,3", "disk|block special file|644|8,0", "suid|regular file|6755|",
		"sgid|directory|3777|", "link|symbolic link|777|"} {
		if !strings.Contains(got, w) {
			t.Errorf("in the guest, %s: %q lacks %q", guestDir, got, w)
		}
	}
	ls, _ := exec.Command("ls", "-la", hostDir).CombinedOutput()
	t.Logf("on the host, ls -la %s:\n%s", hostDir, ls)
	for _, f := range []string{"null", "disk", "suid", "sgid", "link"} {
		fi, err := os.Lstat(filepath.Join(hostDir, f))
		if err != nil {
			t.Errorf("on the host: %v", err)
			continue
		}
		if fi.Mode()&(os.ModeType&^os.ModeDir) != 0 || fi.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != 0 {
			t.Errorf("on the host, %s is %v: want a plain file or directory without setuid, setgid or sticky bits", fi.Name(), fi.Mode())
		}
		if fi.IsDir() != (f == "sgid") {
			t.Errorf("on the host, %s is %v", fi.Name(), fi.Mode())
		}
	}
}

// checkMapping: what the guest asked for the setuid file and the
// character device (after checkNoHostPrivileges) is QEMU's mapping on the
// host: user.virtfs.mode (a native-endian mode_t) on the xattr share,
// "virtfs.mode=" in .virtfs_metadata on the mapped-file share.
func checkMapping(t *testing.T, xattrDir, fileDir string) {
	t.Helper()
	for f, mode := range map[string]uint32{"suid": syscall.S_IFREG | 0o6755, "null": syscall.S_IFCHR | 0o644} {
		buf := make([]byte, 4)
		n, err := unix.Lgetxattr(filepath.Join(xattrDir, f), "user.virtfs.mode", buf)
		if err != nil || n != 4 || binary.NativeEndian.Uint32(buf) != mode {
			t.Errorf("on the host, %s's user.virtfs.mode is %x (%d bytes), %v; want %#o", f, buf[:max(n, 0)], n, err, mode)
		}
		meta, err := os.ReadFile(filepath.Join(fileDir, ".virtfs_metadata", f))
		if want := fmt.Sprintf("virtfs.mode=%d\n", mode); err != nil || !strings.Contains(string(meta), want) {
			t.Errorf("on the host, .virtfs_metadata/%s is %q, %v; want it to hold %q", f, meta, err, want)
		}
		t.Logf("on the host, .virtfs_metadata/%s: %q", f, meta)
	}
}

// ramfsDir is a ramfs mounted on a temporary directory: a filesystem
// without user extended attributes.
func ramfsDir(t *testing.T) string {
	t.Helper()
	d := sharedDir(t)
	run(t, "mount", "-t", "ramfs", "-o", "mode=0755", "ramfs", d)
	t.Cleanup(func() { _ = exec.Command("umount", "-l", d).Run() })
	return d
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
