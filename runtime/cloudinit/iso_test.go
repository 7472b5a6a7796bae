package cloudinit

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// requireTool finds a program the test needs. CI must really run these
// tests, so a missing tool fails unless PODVISOR_ALLOW_SKIP=1.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := name + " not found: install the Debian package " + pkg + " (listed in ci/deps-cloudinit.txt)"
	if os.Getenv("PODVISOR_ALLOW_SKIP") == "1" {
		t.Skip(msg)
	}
	t.Fatal(msg)
	return ""
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// xorrisoFiles lists the regular files of the image as seen through one
// directory tree: "norock" reads Joliet names, "nojoliet" Rock Ridge names.
// Without the extension the names come out as upper-case 8.3 ISO names.
func xorrisoFiles(t *testing.T, iso, readFS string) []string {
	t.Helper()
	out := run(t, "xorriso", "-read_fs", readFS, "-indev", iso, "-find", "/", "-type", "f")
	var r []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l = strings.Trim(l, "'"); l != "" {
			r = append(r, strings.TrimPrefix(l, "/"))
		}
	}
	sort.Strings(r)
	return r
}

// TestWriteISOReadBack writes drives with genisoimage and reads them back
// with xorriso (a different ISO implementation) and isoinfo.
func TestWriteISOReadBack(t *testing.T) {
	requireTool(t, "genisoimage", "genisoimage")
	requireTool(t, "xorriso", "xorriso")
	requireTool(t, "isoinfo", "genisoimage")
	for _, name := range []string{"everything_nocloud", "everything_nocloud_v2", "everything_configdrive", "userdata_script"} {
		t.Run(name, func(t *testing.T) {
			var in Input
			for _, tc := range goldenCases {
				if tc.name == name {
					in = tc.in
				}
			}
			c, err := Generate(context.Background(), in, testDS())
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			iso := filepath.Join(dir, "sub", "config.iso")
			if err := WriteISO(context.Background(), c, iso); err != nil {
				t.Fatalf("WriteISO: %v", err)
			}

			want := map[string]string{}
			var paths []string
			for _, f := range c.Files {
				want[f.Path] = string(f.Data)
				paths = append(paths, f.Path)
			}
			sort.Strings(paths)

			// Contents and modes through Rock Ridge.
			out := filepath.Join(dir, "extract")
			run(t, "xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", out)
			got := map[string]string{}
			err = filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				st, err := os.Stat(p)
				if err != nil {
					return err
				}
				rel, _ := filepath.Rel(out, p)
				// -r: readable by all, write bits cleared (a read-only medium).
				if st.Mode().Perm() != 0o444 {
					t.Errorf("%s has mode %v in the image, want 0444", rel, st.Mode().Perm())
				}
				data, err := os.ReadFile(p)
				got[filepath.ToSlash(rel)] = string(data)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("files read back with xorriso differ (-want +got):\n%s", diff)
			}

			// Both name trees hold the exact names.
			if diff := cmp.Diff(paths, xorrisoFiles(t, iso, "norock")); diff != "" {
				t.Errorf("Joliet tree (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(paths, xorrisoFiles(t, iso, "nojoliet")); diff != "" {
				t.Errorf("Rock Ridge tree (-want +got):\n%s", diff)
			}

			pvd := run(t, "xorriso", "-indev", iso, "-pvd_info")
			if !strings.Contains(pvd, "Volume Id    : "+c.Label+"\n") {
				t.Errorf("volume label is not %q:\n%s", c.Label, pvd)
			}

			// A second reader for one file, through Rock Ridge.
			first := c.Files[0]
			if got := run(t, "isoinfo", "-i", iso, "-R", "-x", "/"+first.Path); got != string(first.Data) {
				t.Errorf("isoinfo -x /%s = %q, want %q", first.Path, got, first.Data)
			}
			info := run(t, "isoinfo", "-d", "-i", iso)
			for _, w := range []string{"Joliet", "Rock Ridge", "Volume id: " + c.Label} {
				if !strings.Contains(info, w) {
					t.Errorf("isoinfo -d lacks %q:\n%s", w, info)
				}
			}
			assertNoTempFiles(t, filepath.Dir(iso), "config.iso")
		})
	}
}

func assertNoTempFiles(t *testing.T, dir string, keep ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff(keep, names); diff != "" {
		t.Errorf("directory %s holds unexpected entries (-want +got):\n%s", dir, diff)
	}
}

func TestWriteISOReplacesAndFailsAtomically(t *testing.T) {
	requireTool(t, "genisoimage", "genisoimage")
	requireTool(t, "xorriso", "xorriso")
	dir := t.TempDir()
	iso := filepath.Join(dir, "config.iso")
	first := &Contents{Label: LabelNoCloud, Files: []DriveFile{{Path: "user-data", Data: []byte("#cloud-config\n")}}}
	second := &Contents{Label: LabelNoCloud, Files: []DriveFile{{Path: "user-data", Data: []byte("#cloud-config\nhostname: two\n")}}}
	if err := WriteISO(context.Background(), first, iso); err != nil {
		t.Fatal(err)
	}
	if err := WriteISO(context.Background(), second, iso); err != nil {
		t.Fatal(err)
	}
	readUserData := func() string {
		out := filepath.Join(t.TempDir(), "ud")
		run(t, "xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/user-data", out)
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	if got := readUserData(); got != string(second.Files[0].Data) {
		t.Errorf("after the second write user-data = %q, want %q", got, second.Files[0].Data)
	}

	// A failing write (cancelled) leaves the previous image and no debris.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WriteISO(ctx, first, iso); err == nil {
		t.Fatal("WriteISO with a cancelled context succeeded")
	}
	if got := readUserData(); got != string(second.Files[0].Data) {
		t.Errorf("after a failed write user-data = %q, want the previous %q", got, second.Files[0].Data)
	}
	assertNoTempFiles(t, dir, "config.iso")
}

func TestWriteISORejectsBadContents(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		c    *Contents
		want string
	}{
		{"nil", nil, "no contents"},
		{"label", &Contents{Label: "CDROM"}, `label "CDROM"`},
		{"absolute path", &Contents{Label: LabelNoCloud, Files: []DriveFile{{Path: "/etc/x"}}}, `"/etc/x"`},
		{"escaping path", &Contents{Label: LabelNoCloud, Files: []DriveFile{{Path: "../x"}}}, `"../x"`},
		{"unclean path", &Contents{Label: LabelNoCloud, Files: []DriveFile{{Path: "a//b"}}}, `"a//b"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteISO(context.Background(), tc.c, filepath.Join(dir, "x.iso"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("WriteISO error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	assertNoTempFiles(t, dir)
}
