package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// netnsPrefix starts the name of every network namespace podvisor makes.
const netnsPrefix = "podvisor-"

// netnsName is the name of sandbox id's network namespace.
func netnsName(sandboxID string) string {
	id := sandboxID
	if len(id) > 12 {
		id = id[:12]
	}
	return netnsPrefix + id
}

// createNetNS makes a new network namespace and bind-mounts it at path, so
// it outlives every process in it (and podvisor itself).
func createNetNS(path string) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating the network namespace directory: %w", err)
	}
	if err := sharedMountDir(filepath.Dir(path)); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("creating network namespace file %s: %w", path, err)
	}
	f.Close()
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	tmp, err := ns.TempNetNS()
	if err != nil {
		return fmt.Errorf("creating a network namespace: %w", err)
	}
	// The bind mount holds the namespace; the temporary handle can go.
	defer tmp.Close()
	src := fmt.Sprintf("/proc/self/fd/%d", tmp.Fd())
	if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mounting the network namespace at %s: %w", path, err)
	}
	return nil
}

// sharedMountDir makes dir a mount point with shared propagation, as
// `ip netns add` does: namespace mounts made in it then reach other mount
// namespaces (a podvisor container with a bidirectional mount), and a later
// `ip netns add` does not bind dir over itself, which would stack a copy of
// every existing namespace mount and make their files impossible to remove.
func sharedMountDir(dir string) error {
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("making %s a shared mount: %w", dir, err)
	}
	// Not a mount point yet.
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mounting %s on itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("making %s a shared mount: %w", dir, err)
	}
	return nil
}

// removeNetNS unmounts and removes the namespace file at path. A missing or
// unmounted file is not an error, so it can be retried.
func removeNetNS(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// Unmount until nothing is mounted there: a namespace can be mounted
	// more than once (propagation from a bind of its directory).
	for i := 0; ; i++ {
		err := unix.Unmount(path, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			return fmt.Errorf("unmounting network namespace %s: %w", path, err)
		}
		if i == 100 {
			return fmt.Errorf("unmounting network namespace %s: still mounted after %d unmounts", path, i+1)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing network namespace file %s: %w", path, err)
	}
	return nil
}

// netnsExists tells whether path is a mounted network namespace.
func netnsExists(path string) bool {
	return ns.IsNSorErr(path) == nil
}
