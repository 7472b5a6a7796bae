package image

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/cenkalti/backoff/v4"

	"github.com/podvisor/podvisor/fakes/imageserver"
)

// TestFileModes: nothing of the store is readable by other local users
// (issue 18 finding 7): directories 0700, images 0400, partial downloads
// and their descriptions 0600, overlays 0600; a store an older version
// left 0755 with 0444 images is tightened when opened.
func TestFileModes(t *testing.T) {
	srv := startServer(t)
	data := fakeQcow2(imgSize, 1<<30, 60)
	srv.AddImage("img", data)
	srv.AddImage("cut", fakeQcow2(imgSize, 1<<30, 61))
	srv.SetMode("cut", imageserver.Mode{CutAfter: 300_000})
	tr := staticTranslator{"img": {URL: srv.URL() + "/img"}, "cut": {URL: srv.URL() + "/cut"}}
	noRetry := WithBackOff(func() backoff.BackOff { return &backoff.StopBackOff{} })
	s := newStore(t, tr, noRetry)
	ctx := context.Background()
	if _, err := s.Pull(ctx, "img"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx, "cut"); err == nil {
		t.Fatal("the cut download succeeded")
	}
	if len(partials(t, s)) != 1 {
		t.Fatal("no partial download kept")
	}
	overlay := filepath.Join(t.TempDir(), "root.qcow2")
	path, _, err := s.Resolve(ctx, "img")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CreateOverlay(ctx, path, overlay, 0); err != nil {
		t.Skipf("no qemu-img: %v", err)
	}
	checkModes(t, s.dir, overlay)

	// An older version's modes.
	for _, d := range []string{s.dir, s.dataDir(), s.tmpDir()} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(path, 0o444); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(s.dir, tr); err != nil {
		t.Fatal(err)
	}
	checkModes(t, s.dir, overlay)
}

func checkModes(t *testing.T, dir, overlay string) {
	t.Helper()
	want := func(p string, mode fs.FileMode) {
		t.Helper()
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", p, st.Mode().Perm(), mode)
		}
	}
	want(overlay, 0o600)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			want(p, 0o700)
		case d.Type()&fs.ModeSymlink != 0:
		case filepath.Base(filepath.Dir(p)) == "data":
			want(p, 0o400)
		default:
			want(p, 0o600)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
