package volume

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func podvisorHead(json string) []byte {
	b := make([]byte, markerBytes)
	copy(b, rootMagic+json+"\n")
	return b
}

func virtletHead(version uint16) []byte {
	b := make([]byte, markerBytes)
	binary.BigEndian.PutUint64(b, virtletRootMagic)
	binary.BigEndian.PutUint16(b[8:], version)
	return b
}

func TestDecideRoot(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name      string
		head      []byte
		dev, img  int64
		want      RootDecision
		wantErr   string
		unusable  bool
		wantImage string
	}{
		{name: "zeros: initialize", head: make([]byte, markerBytes), dev: 64 * mib, img: 32 * mib,
			want: RootDecision{Initialize: true, Offset: mib, Size: 63 * mib}},
		{name: "old data, no marker: initialize (as Virtlet did)", head: bytes.Repeat([]byte{0xeb}, markerBytes), dev: 64 * mib, img: 32 * mib,
			want: RootDecision{Initialize: true, Offset: mib, Size: 63 * mib}},
		{name: "exactly the image after the marker", head: nil, dev: 33 * mib, img: 32 * mib,
			want: RootDecision{Initialize: true, Offset: mib, Size: 32 * mib}},
		{name: "odd size: whole sectors", head: nil, dev: 64*mib + 700, img: 32 * mib,
			want: RootDecision{Initialize: true, Offset: mib, Size: 63*mib + 512}},
		{name: "too small for the image and the marker", head: nil, dev: 32 * mib, img: 32 * mib,
			wantErr: "the volume has 33554432 bytes; the image needs 33554432, plus 1048576 for podvisor's marker: give the claim at least 34603008 bytes", unusable: true},
		{name: "smaller than the marker", head: nil, dev: 4096, img: 512,
			wantErr: "less than the 1048576 before the guest's disk", unusable: true},
		{name: "marked: booted, whatever the image", head: podvisorHead(`{"version":1,"image":"sha256:ab","imageSize":99}`), dev: 64 * mib, img: 128 * mib,
			want: RootDecision{Origin: RootPodvisor, Offset: mib, Size: 63 * mib, Marker: RootMarker{Version: 1, Image: "sha256:ab", ImageSize: 99}}},
		{name: "marked, grown since", head: podvisorHead(`{"version":1}`), dev: 1 << 30, img: 32 * mib,
			want: RootDecision{Origin: RootPodvisor, Offset: mib, Size: 1<<30 - mib, Marker: RootMarker{Version: 1}}},
		{name: "marker of a later version", head: podvisorHead(`{"version":2}`), dev: 64 * mib, img: 32 * mib,
			wantErr: "version 2; this podvisor reads version 1: not booting or overwriting it", unusable: true},
		{name: "damaged marker", head: podvisorHead(`{"version":`), dev: 64 * mib, img: 32 * mib,
			wantErr: "it is damaged", unusable: true},
		{name: "Virtlet's header: booted from the second sector", head: virtletHead(1), dev: 64 * mib, img: 128 * mib,
			want: RootDecision{Origin: RootVirtlet, Offset: 512, Size: 64*mib - 512}},
		{name: "Virtlet's header of another version", head: virtletHead(3), dev: 64 * mib, img: 32 * mib,
			wantErr: "Virtlet's persistent root header of version 3", unusable: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecideRoot(tc.head, tc.dev, tc.img)
			if tc.wantErr != "" {
				var u *UnusableRootError
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one saying %q", err, tc.wantErr)
				}
				if errors.As(err, &u) != tc.unusable {
					t.Errorf("err %v: UnusableRootError %v, want %v", err, !tc.unusable, tc.unusable)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func needQemuImg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(QemuImg); err != nil {
		if os.Getenv("PODVISOR_ALLOW_SKIP") == "1" {
			t.Skip("qemu-img not installed")
		}
		t.Fatal("qemu-img not installed: run ci/install-deps.sh (or set PODVISOR_ALLOW_SKIP=1)")
	}
}

// TestPrepareRoot writes a qcow2 image to a "volume" (a file: the same
// code path as a block device but for qemu-img's protocol), checks the
// guest's part holds the image and the marker is there, then changes the
// guest's part and prepares it again, for another image: nothing is
// written, the change stays.
func TestPrepareRoot(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "image.qcow2")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	run(QemuImg, "create", "-q", "-f", "qcow2", img, "2M")
	run("qemu-io", "-c", "write -P 0xab 0 4096", "-c", "write -P 0xcd 1M 4096", img)
	dev := filepath.Join(dir, "dev")
	if err := os.WriteFile(dev, bytes.Repeat([]byte{0x11}, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, err := PrepareRoot(ctx, dev, RootImage{Path: img, Format: "qcow2", Size: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Initialize || d.Offset != RootHeaderSize || d.Size != 3<<20 || d.Marker.Image != "image.qcow2" || d.Marker.ImageSize != 2<<20 {
		t.Errorf("first use: %+v", d)
	}
	b, err := os.ReadFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(rootMagic+`{"version":1,"image":"image.qcow2","imageSize":2097152,`)) {
		t.Errorf("marker: %q", b[:120])
	}
	guest := b[RootHeaderSize:]
	for _, c := range []struct {
		off  int
		want byte
	}{{0, 0xab}, {4095, 0xab}, {4096, 0}, {1 << 20, 0xcd}, {2<<20 - 1, 0}, {2 << 20, 0x11}} {
		if guest[c.off] != c.want {
			t.Errorf("guest byte %d = %#x, want %#x (the image, zeros where it has none, the old bytes past it)", c.off, guest[c.off], c.want)
		}
	}

	// The guest writes; the next pod, with another image, boots that.
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("the guest's data"), RootHeaderSize+8192); err != nil {
		t.Fatal(err)
	}
	f.Close()
	other := filepath.Join(dir, "other.raw")
	if err := os.WriteFile(other, bytes.Repeat([]byte{0x77}, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err = PrepareRoot(ctx, dev, RootImage{Path: other, Format: "raw", Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if d.Initialize || d.Origin != RootPodvisor || d.Marker.Image != "image.qcow2" || d.Size != 3<<20 {
		t.Errorf("second use: %+v", d)
	}
	b2, err := os.ReadFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[:markerBytes], b2[:markerBytes]) {
		t.Error("the second use rewrote the marker")
	}
	if !bytes.Contains(b2[RootHeaderSize+8192:], []byte("the guest's data")) || b2[RootHeaderSize] != 0xab {
		t.Error("the guest's data or the image's bytes are gone after the second use")
	}
}

func TestPrepareRootTooSmallWritesNothing(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "image.raw")
	if err := os.WriteFile(img, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(dir, "dev")
	old := bytes.Repeat([]byte{0x5a}, 2<<20)
	if err := os.WriteFile(dev, old, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := PrepareRoot(context.Background(), dev, RootImage{Path: img, Format: "raw", Size: 2 << 20})
	var u *UnusableRootError
	if !errors.As(err, &u) || !strings.Contains(err.Error(), "give the claim at least 3145728 bytes") {
		t.Fatalf("err %v, want an UnusableRootError asking for 3145728 bytes", err)
	}
	if b, _ := os.ReadFile(dev); !bytes.Equal(b, old) {
		t.Error("the volume was written")
	}
}

func TestPrepareRootQemuImgFailsLeavesNoMarker(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "not-qcow2")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(dir, "dev")
	if err := os.WriteFile(dev, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := PrepareRoot(context.Background(), dev, RootImage{Path: img, Format: "qcow2", Size: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "qemu-img convert") {
		t.Fatalf("err %v, want qemu-img's", err)
	}
	if b, _ := os.ReadFile(dev); bytes.HasPrefix(b, []byte(rootMagic)) {
		t.Error("a marker was written although the image was not")
	}
}
