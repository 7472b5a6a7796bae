package cloudinit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func writeFile(t *testing.T, p, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func TestFileDataSource(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "ns/configmap/ud/users"), "- name: a\n", 0o644)
	writeFile(t, filepath.Join(root, "ns/configmap/ud/runcmd"), "- x\n", 0o644)
	writeFile(t, filepath.Join(root, "ns/configmap/ud/..data/users"), "bookkeeping", 0o644)
	writeFile(t, filepath.Join(root, "ns/secret/keys/authorized_keys"), key1+"\n", 0o600)
	ds := &FileDataSource{Root: root}
	ctx := context.Background()

	cm, err := ds.ConfigMap(ctx, "ns", "ud")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"users": "- name: a\n", "runcmd": "- x\n"}, cm); diff != "" {
		t.Errorf("ConfigMap (-want +got):\n%s", diff)
	}
	sec, err := ds.Secret(ctx, "ns", "keys")
	if err != nil {
		t.Fatal(err)
	}
	if string(sec["authorized_keys"]) != key1+"\n" || len(sec) != 1 {
		t.Errorf("Secret = %q", sec)
	}
	if _, err := ds.Secret(ctx, "ns", "ud"); !errors.Is(err, ErrNotFound) {
		t.Errorf("secret ns/ud (only a configmap exists): error %v, want ErrNotFound", err)
	}
	if _, err := ds.ConfigMap(ctx, "ns", "../secret"); err == nil {
		t.Errorf("a name with a slash was accepted")
	}

	// Through Generate: the same directory serves a pod's annotations.
	in := with(func(in *Input) {
		in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "ud"}
		in.SSHKeySource = &SourceRef{Kind: SourceSecret, Name: "keys"}
	})
	c, err := Generate(ctx, in, ds)
	if err != nil {
		t.Fatal(err)
	}
	ud, _ := c.File(PathNoCloudUserData)
	if want := "#cloud-config\nruncmd:\n- x\nusers:\n- name: a\n"; string(ud) != want {
		t.Errorf("user-data = %q, want %q", ud, want)
	}
	md, _ := c.File(PathNoCloudMetaData)
	if want := "instance-id: vm.ns\nlocal-hostname: vm\npublic-keys:\n- " + key1 + "\n"; string(md) != want {
		t.Errorf("meta-data = %q, want %q", md, want)
	}
}

func TestStaticDataSourceNotFound(t *testing.T) {
	ds := &StaticDataSource{}
	if _, err := ds.ConfigMap(context.Background(), "ns", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ConfigMap error %v, want ErrNotFound", err)
	}
	if _, err := ds.Secret(context.Background(), "ns", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Secret error %v, want ErrNotFound", err)
	}
}

// FilesFromDir on kubelet's atomic-writer layout: keys are symlinks into
// ..data, which points at a timestamped directory; each key must appear once
// with the mode of its file.
func TestFilesFromDir(t *testing.T) {
	vol := t.TempDir()
	ts := filepath.Join(vol, "..2026_01_01_00_00_00.000000001")
	writeFile(t, filepath.Join(ts, "password"), "pw", 0o400)
	writeFile(t, filepath.Join(ts, "config/app.conf"), "a=1\n", 0o644)
	if err := os.Symlink(filepath.Base(ts), filepath.Join(vol, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"password", "config"} {
		if err := os.Symlink(filepath.Join("..data", k), filepath.Join(vol, k)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := FilesFromDir(context.Background(), vol, "/etc/secret", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := []GuestFile{
		{Path: "/etc/secret/config/app.conf", Content: []byte("a=1\n"), Mode: 0o644},
		{Path: "/etc/secret/password", Content: []byte("pw"), Mode: 0o400},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FilesFromDir (-want +got):\n%s", diff)
	}

	if _, err := FilesFromDir(context.Background(), vol, "etc/secret", 1<<20); err == nil {
		t.Errorf("a relative guest directory was accepted")
	}
	if _, err := FilesFromDir(context.Background(), filepath.Join(vol, "missing"), "/x", 1<<20); err == nil {
		t.Errorf("a missing volume directory was accepted")
	}
}

// A symbolic link leading out of the volume directory is refused, whether
// it is a key, a directory on the way or kubelet's ..data itself.
func TestFilesFromDirRefusesLinksOutOfTheVolume(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "shadow"), "root:x:0:0", 0o600)
	for name, link := range map[string]func(vol string) error{
		"key": func(vol string) error {
			return os.Symlink(filepath.Join(outside, "shadow"), filepath.Join(vol, "key"))
		},
		"relative key": func(vol string) error {
			rel, _ := filepath.Rel(vol, filepath.Join(outside, "shadow"))
			return os.Symlink(rel, filepath.Join(vol, "key"))
		},
		"directory": func(vol string) error {
			return os.Symlink(outside, filepath.Join(vol, "dir"))
		},
		"..data": func(vol string) error {
			if err := os.Symlink(outside, filepath.Join(vol, "..data")); err != nil {
				return err
			}
			return os.Symlink("..data/shadow", filepath.Join(vol, "shadow"))
		},
	} {
		vol := t.TempDir()
		writeFile(t, filepath.Join(vol, "fine"), "ok", 0o644)
		if err := link(vol); err != nil {
			t.Fatal(err)
		}
		got, err := FilesFromDir(context.Background(), vol, "/etc/secret", 1<<20)
		if err == nil || !strings.Contains(err.Error(), "a symbolic link leads out of the volume directory "+vol) {
			t.Errorf("%s: files %v, error %v: want the link refused", name, got, err)
		}
		if err != nil && strings.Contains(err.Error(), "root:x") {
			t.Errorf("%s: the error shows the content: %v", name, err)
		}
	}
}

// The total size is bounded before a file is read whole; a file at the
// bound fits.
func TestFilesFromDirBound(t *testing.T) {
	vol := t.TempDir()
	writeFile(t, filepath.Join(vol, "a"), strings.Repeat("a", 600), 0o644)
	writeFile(t, filepath.Join(vol, "b"), strings.Repeat("b", 400), 0o644)
	if got, err := FilesFromDir(context.Background(), vol, "/x", 1000); err != nil || len(got) != 2 {
		t.Fatalf("1000 bytes in a bound of 1000: %v %v", got, err)
	}
	_, err := FilesFromDir(context.Background(), vol, "/x", 999)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), filepath.Join(vol, "b")) || !strings.Contains(err.Error(), "999 bytes") {
		t.Errorf("1000 bytes in a bound of 999: %v, want ErrTooLarge naming b", err)
	}
	if strings.Contains(err.Error(), "bbbb") {
		t.Errorf("the error shows the content: %v", err)
	}
}
