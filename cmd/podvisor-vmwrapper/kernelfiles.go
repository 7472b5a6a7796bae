package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// readOnlyKernelPaths are made read-only in QEMU's mount namespace: the
// paths an unprivileged container gets read-only (containerd's and runc's
// readonlyPaths) and /sys with everything mounted below it. Writing most of
// them takes no capability, only root's file modes: a sysctl such as
// kernel.core_pattern (a program the kernel runs as root), sysrq-trigger,
// cgroup files (moving QEMU out of its device-limited cgroup). QEMU runs as
// root without CAP_SYS_ADMIN, so it cannot mount them writable again.
var readOnlyKernelPaths = []string{"/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", "/sys"}

// readOnlyKernelFiles moves the calling thread into a mount namespace of
// its own, a copy of the current one whose mounts receive later mounts as
// before (slave) but send none back, and makes readOnlyKernelPaths
// read-only there, recursively. The caller keeps the thread locked until
// execve. A process that is not root skips it: it cannot write those files
// anyway, and cannot make a mount namespace.
func readOnlyKernelFiles() error {
	if os.Geteuid() != 0 {
		return nil
	}
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("making QEMU's mount namespace: %w", err)
	}
	// Before any bind mount: a bind of a shared mount would show on the
	// node too.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("making QEMU's mounts receive-only: %w", err)
	}
	for _, p := range readOnlyKernelPaths {
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("binding %s onto itself: %w", p, err)
		}
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(unix.AT_FDCWD, p, unix.AT_RECURSIVE, &attr); err != nil {
			return fmt.Errorf("making %s read-only: %w", p, err)
		}
	}
	return nil
}
