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

// removeNetNS unmounts and removes the namespace file at path. A missing or
// unmounted file is not an error, so it can be retried.
func removeNetNS(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting network namespace %s: %w", path, err)
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
