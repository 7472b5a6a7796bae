package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podvisor/podvisor/runtime/errdefs"
)

// sources writes the member files of a typical memory checkpoint and
// returns them with their contents.
func sources(t *testing.T) ([]File, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	contents := map[string][]byte{
		MemberDomain:        []byte("<domain type='qemu'><name>pv-0123456789abcdef</name></domain>"),
		MemberMemory:        bytes.Repeat([]byte("memory state "), 50000),
		MemberRoot:          append([]byte("QFI\xfb"), bytes.Repeat([]byte{0}, 70000)...),
		MemberCloudInit:     []byte("CD001 cidata"),
		DiskPrefix + "data": []byte("a disk podvisor made"),
	}
	var files []File
	for _, name := range []string{MemberDomain, MemberMemory, MemberRoot, MemberCloudInit, DiskPrefix + "data"} {
		p := filepath.Join(dir, strings.ReplaceAll(name, "/", "_"))
		if err := os.WriteFile(p, contents[name], 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, File{Name: name, Path: p})
	}
	return files, contents
}

func testManifest() *Manifest {
	return &Manifest{
		Kind:        KindMemory,
		CreatedAt:   time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC),
		Podvisor:    "0.1.0",
		Hypervisor:  "libvirt 9.0.0",
		Accelerator: "tcg",
		Pod:         Pod{Name: "vm", Namespace: "default", UID: "uid-1", IPs: []string{"10.1.0.5"}},
		Container:   Container{ID: "c1", Name: "vm", Image: "cirros"},
		BaseImage:   BaseImage{Ref: "sha256:" + strings.Repeat("ab", 32), Name: "cirros"},
	}
}

// writeArchive writes a good archive and returns its path and bytes.
func writeArchive(t *testing.T) (string, []byte, map[string][]byte) {
	t.Helper()
	files, contents := sources(t)
	target := filepath.Join(t.TempDir(), "checkpoint.tar")
	if err := Write(context.Background(), target, testManifest(), files); err != nil {
		t.Fatalf("Write: %v", err)
	}
	b, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	return target, b, contents
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestWriteThenExtract(t *testing.T) {
	archive, _, contents := writeArchive(t)
	if got := listDir(t, filepath.Dir(archive)); !cmp.Equal(got, []string{"checkpoint.tar"}) {
		t.Errorf("beside the archive: %v, want only checkpoint.tar (no temporary file)", got)
	}
	dir := t.TempDir()
	m, err := Extract(context.Background(), archive, dir)
	if err != nil {
		t.Fatalf("Extract: %v", err)
	}
	want := testManifest()
	if m.Format != Format || m.Version != Version || m.Kind != want.Kind || !cmp.Equal(m.Pod, want.Pod) || m.BaseImage != want.BaseImage {
		t.Errorf("manifest read back = %+v", m)
	}
	if len(m.Members) != len(contents) {
		t.Errorf("manifest lists %d members, want %d", len(m.Members), len(contents))
	}
	for name, c := range contents {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("member %s: %v", name, err)
			continue
		}
		if !bytes.Equal(got, c) {
			t.Errorf("member %s: %d bytes differ from the %d written", name, len(got), len(c))
		}
	}
}

// rewrite rebuilds an archive from b with edit applied to each member
// (the manifest included): nil from edit drops the member.
func rewrite(t *testing.T, b []byte, edit func(hdr *tar.Header, data []byte) []byte) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		data = edit(hdr, data)
		if data == nil {
			continue
		}
		hdr.Size = int64(len(data))
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	tw.Close()
	return out.Bytes()
}

func editManifest(t *testing.T, b []byte, f func(m *Manifest)) []byte {
	return rewrite(t, b, func(hdr *tar.Header, data []byte) []byte {
		if hdr.Name != ManifestName {
			return data
		}
		var m Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		f(&m)
		out, _ := json.Marshal(&m)
		return out
	})
}

// memberOffset is where member name's content starts in archive b.
func memberOffset(t *testing.T, b []byte, name string) int64 {
	t.Helper()
	r := bytes.NewReader(b)
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("member %s not found: %v", name, err)
		}
		if hdr.Name == name {
			return int64(len(b)) - int64(r.Len())
		}
	}
}

func TestBadArchives(t *testing.T) {
	_, good, _ := writeArchive(t)
	memOff := memberOffset(t, good, MemberMemory)
	rootOff := memberOffset(t, good, MemberRoot)
	flip := func(off int64) []byte {
		b := bytes.Clone(good)
		b[off+100] ^= 0xff
		return b
	}
	tests := []struct {
		name  string
		data  []byte
		wants []string // substrings of the error
	}{
		{"empty file", nil, []string{"not a tar archive"}},
		{"not a tar", []byte(strings.Repeat("hello ", 200)), []string{"not a tar archive"}},
		{"cut in the manifest", good[:700], []string{ManifestName}},
		{"cut in the memory state", good[:memOff+1000], []string{`member "memory.save"`, "truncated"}},
		{"cut after the memory state", good[:rootOff-512], []string{`member "root.qcow2" is missing`, "truncated"}},
		{"cut before the end blocks", good[:len(good)-1024-512], []string{"truncated"}},
		{"a flipped byte in the memory state", flip(memOff), []string{`member "memory.save"`, "does not match the manifest"}},
		{"a flipped byte in the root disk", flip(rootOff), []string{`member "root.qcow2"`, "does not match the manifest"}},
		{"a wrong checksum in the manifest", editManifest(t, good, func(m *Manifest) {
			for i := range m.Members {
				if m.Members[i].Name == MemberCloudInit {
					m.Members[i].SHA256 = strings.Repeat("0", 64)
				}
			}
		}), []string{`member "cloudinit.iso"`, "does not match the manifest's 0000"}},
		{"a member not in the manifest", editManifest(t, good, func(m *Manifest) { m.Members = m.Members[:len(m.Members)-1] }), []string{`member "disks/data" is not in the manifest`}},
		{"a member dropped", rewrite(t, good, func(hdr *tar.Header, data []byte) []byte {
			if hdr.Name == MemberCloudInit {
				return nil
			}
			return data
		}), []string{`member "cloudinit.iso" is missing`}},
		{"manifest not first", rewrite(t, good, func(hdr *tar.Header, data []byte) []byte {
			if hdr.Name == ManifestName {
				hdr.Name = "other.json"
			}
			return data
		}), []string{`first member is "other.json"`}},
		{"a future version", editManifest(t, good, func(m *Manifest) { m.Version = 2 }), []string{"version 2", "reads version 1"}},
		{"another format", editManifest(t, good, func(m *Manifest) { m.Format = "criu" }), []string{`format "criu"`}},
		{"a member out of the directory", editManifest(t, good, func(m *Manifest) { m.Members[1].Name = "disks/../../etc/passwd" }), []string{`member name "disks/../../etc/passwd"`}},
		{"memory kind without memory", editManifest(t, good, func(m *Manifest) {
			var keep []Member
			for _, mem := range m.Members {
				if mem.Name != MemberMemory {
					keep = append(keep, mem)
				}
			}
			m.Members = keep
		}), []string{`without member "memory.save"`}},
		{"a size that differs", editManifest(t, good, func(m *Manifest) { m.Members[0].Size++ }), []string{`member "domain.xml" is`, "the manifest says"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			archive := filepath.Join(t.TempDir(), "bad.tar")
			if err := os.WriteFile(archive, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Verify(context.Background(), archive); !matches(err, tt.wants) {
				t.Errorf("Verify: %v; want ErrCorrupt (InvalidArgument) with %q", err, tt.wants)
			}
			dir := t.TempDir()
			_, err := Extract(context.Background(), archive, dir)
			if !matches(err, tt.wants) {
				t.Errorf("Extract: %v; want ErrCorrupt with %q", err, tt.wants)
			}
			if got := listDir(t, dir); len(got) != 0 {
				t.Errorf("Extract of a bad archive left %v", got)
			}
		})
	}
}

func matches(err error, wants []string) bool {
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, errdefs.ErrInvalidArgument) {
		return false
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			return false
		}
	}
	return true
}

// fullFile fails with ENOSPC once limit bytes were written.
type fullFile struct {
	*os.File
	limit int
}

func (f *fullFile) Write(p []byte) (int, error) {
	if len(p) > f.limit {
		n, _ := f.File.Write(p[:f.limit])
		f.limit = 0
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	f.limit -= len(p)
	return f.File.Write(p)
}

func TestWriteFailures(t *testing.T) {
	files, _ := sources(t)
	missing := append([]File(nil), files...)
	missing[2].Path = filepath.Join(t.TempDir(), "gone.qcow2")
	noRoot := []File{files[0], files[1]}
	badName := append([]File{{Name: "../escape", Path: files[0].Path}}, files...)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		files  []File
		full   int // >0: the disk fills after so many bytes
		wants  []string
		nospac bool
	}{
		{"disk full in the manifest", context.Background(), files, 100, []string{"writing the manifest", "no space left"}, true},
		{"disk full in the memory state", context.Background(), files, 300000, []string{"member memory.save", "no space left"}, true},
		{"a member file missing", context.Background(), missing, 0, []string{"member root.qcow2", "gone.qcow2"}, false},
		{"no root disk", context.Background(), noRoot, 0, []string{`member "root.qcow2" is missing`}, false},
		{"a bad member name", context.Background(), badName, 0, []string{`member name "../escape"`}, false},
		{"canceled", canceled, files, 0, []string{"context canceled"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.full > 0 {
				old := createTemp
				createTemp = func(dir, pattern string) (tempFile, error) {
					f, err := os.CreateTemp(dir, pattern)
					if err != nil {
						return nil, err
					}
					return &fullFile{File: f, limit: tt.full}, nil
				}
				defer func() { createTemp = old }()
			}
			dir := t.TempDir()
			target := filepath.Join(dir, "checkpoint.tar")
			err := Write(tt.ctx, target, testManifest(), tt.files)
			if err == nil {
				t.Fatal("Write succeeded")
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Write: %v; want %q in it", err, w)
				}
			}
			if tt.nospac != errors.Is(err, ErrNoSpace) {
				t.Errorf("Write: %v; errors.Is(ErrNoSpace) = %v, want %v", err, !tt.nospac, tt.nospac)
			}
			if got := listDir(t, dir); len(got) != 0 {
				t.Errorf("a failed Write left %v", got)
			}
		})
	}
}

// A target that exists is replaced only by a complete archive: a failed
// write leaves the old one as it was.
func TestFailedWriteKeepsTheOldArchive(t *testing.T) {
	archive, good, _ := writeArchive(t)
	files, _ := sources(t)
	files[1].Path = "/nonexistent/memory.save"
	if err := Write(context.Background(), archive, testManifest(), files); err == nil {
		t.Fatal("Write succeeded")
	}
	b, err := os.ReadFile(archive)
	if err != nil || !bytes.Equal(b, good) {
		t.Errorf("the old archive changed (%v)", err)
	}
}

func TestReadManifest(t *testing.T) {
	archive, _, _ := writeArchive(t)
	m, err := ReadManifest(archive)
	if err != nil {
		t.Fatal(err)
	}
	if mem, ok := m.Member(MemberMemory); !ok || mem.Size != int64(len("memory state "))*50000 {
		t.Errorf("memory member = %+v, %v", mem, ok)
	}
}
