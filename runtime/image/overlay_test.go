package image

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// needQemuImg fails the test without qemu-img (Debian qemu-utils, listed in
// ci/deps-image.txt) unless PODVISOR_ALLOW_SKIP=1.
func needQemuImg(tb testing.TB) {
	tb.Helper()
	if _, err := exec.LookPath(QemuImg); err != nil {
		if os.Getenv("PODVISOR_ALLOW_SKIP") == "1" {
			tb.Skipf("qemu-img not found (apt-get install qemu-utils): %v", err)
		}
		tb.Fatalf("qemu-img not found: install qemu-utils (ci/deps-image.txt) or set PODVISOR_ALLOW_SKIP=1: %v", err)
	}
}

func header(version uint32, size, backing, incompat uint64, n int) []byte {
	b := make([]byte, n)
	copy(b, qcow2Magic)
	binary.BigEndian.PutUint32(b[4:], version)
	binary.BigEndian.PutUint64(b[qcow2OffBackingFile:], backing)
	binary.BigEndian.PutUint64(b[qcow2OffSize:], size)
	if n >= qcow2HeaderV3Len {
		binary.BigEndian.PutUint64(b[qcow2OffIncompatible:], incompat)
	}
	return b
}

func TestVirtualSizeHeaders(t *testing.T) {
	vdi := make([]byte, 512)
	copy(vdi[64:], "\x7f\x10\xda\xbe")
	tests := []struct {
		name       string
		data       []byte
		wantSize   int64
		wantFormat string
		wantErr    string
	}{
		{"qcow2 v3", header(3, 10<<30, 0, 0, 512), 10 << 30, FormatQCOW2, ""},
		{"qcow2 v2", header(2, 1<<20, 0, 0, 72), 1 << 20, FormatQCOW2, ""},
		{"backing file", header(3, 1<<20, 512, 0, 512), 0, "", "has a backing file"},
		{"external data file", header(3, 1<<20, 0, qcow2ExternalDataFile, 512), 0, "", "external data file"},
		{"version 4", header(4, 1<<20, 0, 0, 512), 0, "", "qcow2 version 4 is not supported"},
		{"truncated", header(3, 1<<20, 0, 0, 512)[:40], 0, "", "header truncated: 40 bytes"},
		{"v3 truncated", header(3, 1<<20, 0, 0, 512)[:80], 0, "", "v3 header truncated"},
		{"zero size", header(3, 0, 0, 0, 512), 0, "", "virtual size 0 is out of range"},
		{"vmdk", []byte("KDMV\x01\x00\x00\x00"), 0, "", "vmdk format"},
		{"vdi", vdi, 0, "", "vdi format"},
		{"raw", []byte("just some bytes of a raw disk"), 29, FormatRaw, ""},
		{"empty raw", nil, 0, FormatRaw, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "img")
			if err := os.WriteFile(p, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			size, format, err := VirtualSize(p)
			if tc.wantErr != "" {
				wantErrContains(t, err, p, tc.wantErr)
				return
			}
			if err != nil || size != tc.wantSize || format != tc.wantFormat {
				t.Fatalf("VirtualSize = %d, %q, %v; want %d, %q", size, format, err, tc.wantSize, tc.wantFormat)
			}
		})
	}
	if _, _, err := VirtualSize(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("VirtualSize of a missing file succeeded")
	}
}

// qemuInfo is the part of `qemu-img info --output=json` we check.
type qemuInfo struct {
	VirtualSize   int64  `json:"virtual-size"`
	Format        string `json:"format"`
	BackingFile   string `json:"backing-filename"`
	BackingFormat string `json:"backing-filename-format"`
	ActualSize    int64  `json:"actual-size"`
}

func info(t *testing.T, path string) qemuInfo {
	t.Helper()
	out, err := exec.Command(QemuImg, "info", "-U", "--output=json", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var i qemuInfo
	if err := json.Unmarshal(out, &i); err != nil {
		t.Fatal(err)
	}
	return i
}

func TestVirtualSizeMatchesQemuImg(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	for _, size := range []int64{1 << 20, 3<<30 + 512, 10 << 30} {
		p := filepath.Join(dir, "img-"+strconv.FormatInt(size, 10)+".qcow2")
		if out, err := exec.Command(QemuImg, "create", "-q", "-f", "qcow2", p, strconv.FormatInt(size, 10)).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img create: %v: %s", err, out)
		}
		got, format, err := VirtualSize(p)
		if err != nil || format != FormatQCOW2 || got != info(t, p).VirtualSize {
			t.Errorf("VirtualSize(%s) = %d, %s, %v; qemu-img says %d", p, got, format, err, info(t, p).VirtualSize)
		}
	}
}

func TestCreateOverlay(t *testing.T) {
	needQemuImg(t)
	ctx := context.Background()
	dir := t.TempDir()
	qcow := filepath.Join(dir, "base.qcow2")
	if out, err := exec.Command(QemuImg, "create", "-q", "-f", "qcow2", qcow, "2G").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	raw := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(raw, make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, base, format string
		minSize, wantSize  int64
	}{
		{"qcow2 base, image size wins", qcow, FormatQCOW2, 1 << 30, 2 << 30},
		{"qcow2 base, requested size wins", qcow, FormatQCOW2, 5 << 30, 5 << 30},
		{"raw base", raw, FormatRaw, 0, 3 << 20},
		{"raw base grown", raw, FormatRaw, 1 << 30, 1 << 30},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ov := filepath.Join(dir, "overlay-"+strconv.Itoa(i)+".qcow2")
			size, err := CreateOverlay(ctx, tc.base, ov, tc.minSize)
			if err != nil {
				t.Fatal(err)
			}
			if size != tc.wantSize {
				t.Errorf("CreateOverlay size = %d, want %d", size, tc.wantSize)
			}
			got := info(t, ov)
			want := qemuInfo{VirtualSize: tc.wantSize, Format: "qcow2", BackingFile: tc.base, BackingFormat: tc.format, ActualSize: got.ActualSize}
			if got != want {
				t.Errorf("overlay info %+v, want %+v", got, want)
			}
			// Backed, not copied: the overlay is far smaller than its base.
			st, err := os.Stat(ov)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() > 1<<20 {
				t.Errorf("overlay is %d bytes: looks like a copy", st.Size())
			}
			if _, err := os.Stat(ov + ".tmp"); !os.IsNotExist(err) {
				t.Errorf("temporary overlay left behind: %v", err)
			}
			// Replacing works, removing twice is fine.
			if _, err := CreateOverlay(ctx, tc.base, ov, tc.minSize); err != nil {
				t.Fatalf("re-creating the overlay: %v", err)
			}
			if err := RemoveOverlay(ov); err != nil {
				t.Fatal(err)
			}
			if err := RemoveOverlay(ov); err != nil {
				t.Errorf("second RemoveOverlay: %v", err)
			}
			if _, err := os.Stat(ov); !os.IsNotExist(err) {
				t.Errorf("overlay still there after RemoveOverlay")
			}
		})
	}
}

func TestCreateOverlayErrors(t *testing.T) {
	needQemuImg(t)
	ctx := context.Background()
	dir := t.TempDir()
	evil := filepath.Join(dir, "evil.qcow2")
	if err := os.WriteFile(evil, header(3, 1<<20, 512, 0, 512), 0o644); err != nil {
		t.Fatal(err)
	}
	ov := filepath.Join(dir, "ov.qcow2")
	_, err := CreateOverlay(ctx, evil, ov, 0)
	wantErrContains(t, err, "creating overlay "+ov, "backing file")
	_, err = CreateOverlay(ctx, filepath.Join(dir, "missing"), ov, 0)
	wantErrContains(t, err, "creating overlay", "no such file")
	_, err = CreateOverlay(ctx, evil, ov, -1)
	wantErrContains(t, err, "minimum size -1 is negative")
	// qemu-img failing (here: the overlay's directory does not exist)
	// leaves nothing.
	raw := filepath.Join(dir, "raw")
	if err := os.WriteFile(raw, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "nodir", "ov.qcow2")
	_, err = CreateOverlay(ctx, raw, bad, 0)
	wantErrContains(t, err, "creating overlay "+bad, QemuImg)
	for _, p := range []string{ov, ov + ".tmp", bad} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists after a failed CreateOverlay", p)
		}
	}
}
