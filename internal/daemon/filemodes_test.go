package daemon

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestStateNotReadableByOthers: the state directory, the image store and
// everything a started VM leaves there (metadata, images, overlays,
// cloud-init drive) give other local users nothing:
// no permission bits for "other" anywhere, the top directories 0700
// (issue 18 finding 7). A state directory left 0755 by an older version
// (or by kubelet's DirectoryOrCreate) is tightened at start.
func TestStateNotReadableByOthers(t *testing.T) {
	h := newHarness(t)
	h.stop()
	for _, d := range []string{h.cfg.StateDir, filepath.Join(h.cfg.StateDir, "images"), filepath.Join(h.cfg.StateDir, "images", "data")} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.start()
	c := ctx(t)
	_, cr := h.createdVM(t, "modes")
	if _, err := h.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatal(err)
	}
	for _, top := range []string{h.cfg.StateDir, filepath.Join(h.cfg.StateDir, "images")} {
		st, err := os.Stat(top)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %v, want 0700", top, st.Mode().Perm())
		}
	}
	n := 0
	err := filepath.WalkDir(h.cfg.StateDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode()&fs.ModeSymlink != 0 || info.Mode()&fs.ModeSocket != 0 {
			return nil // symlinks have no mode of their own; sockets are guarded by their directory and SocketMode
		}
		n++
		if perm := info.Mode().Perm(); perm&0o007 != 0 {
			t.Errorf("%s has mode %v: other local users may %s it", p, perm, map[bool]string{true: "list or enter", false: "read"}[d.IsDir()])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Errorf("only %d entries under the state directory: the VM left less than expected", n)
	}
}
