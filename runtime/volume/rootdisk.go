package volume

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A persistent root volume (a block device at devicePath "/", Virtlet's
// persistent root filesystem) is the VM's root disk. Its first
// RootHeaderSize bytes hold podvisor's marker and the guest sees the rest
// (a libvirt storage slice): the image is written after the marker's area
// on first use, and a volume that has the marker is booted as it is, never
// written again. The guest never sees the marker, so it cannot damage it,
// and what the guest sees is exactly what the image held.
const (
	// RootHeaderSize is the area before the guest's disk: 1 MiB keeps the
	// guest's partitions aligned on the device as they are in the image.
	RootHeaderSize = 1 << 20
	// rootMagic starts podvisor's marker; a JSON line (RootMarker)
	// follows it.
	rootMagic = "PODVISOR-PERSISTENT-ROOT\n"
	// rootMarkerVersion is the marker's version this podvisor reads.
	rootMarkerVersion = 1
	// markerBytes is how much of the device's start is read and written.
	markerBytes = 4096

	// Virtlet's persistent root header (its pkg/blockdev): a big-endian
	// uint64 magic, a uint16 version (1) and the image's SHA-256 in the
	// first sector; the guest saw the device from the second sector on.
	virtletRootMagic   uint64 = 0x263dbe52ba576702
	virtletRootVersion uint16 = 1
	virtletRootOffset         = 512
)

// RootMarker is what podvisor's marker records about the volume's first
// use, for the operator (podvisor only needs the magic).
type RootMarker struct {
	Version int `json:"version"`
	// Image is the image file written (its name in the image store: the
	// digest) and ImageSize its virtual size.
	Image     string    `json:"image"`
	ImageSize int64     `json:"imageSize"`
	Written   time.Time `json:"written"`
}

// Origins of a persistent root volume's contents.
const (
	RootNew      = ""         // no marker: the image is written
	RootPodvisor = "podvisor" // podvisor's marker
	RootVirtlet  = "virtlet"  // Virtlet's header: booted as Virtlet did
)

// RootDecision is what to do with a persistent root volume.
type RootDecision struct {
	// Initialize: write the image at Offset, then the marker.
	Initialize bool
	// Origin is RootNew, RootPodvisor or RootVirtlet.
	Origin string
	// Offset and Size are the bytes of the device the guest sees.
	Offset, Size uint64
	// Marker is podvisor's marker as read (Origin RootPodvisor).
	Marker RootMarker
}

// DecideRoot reads the start of a persistent root volume of devSize bytes
// (at least markerBytes of it, fewer for a smaller device) and says what
// to do with it for an image of imageSize bytes. A marked volume is booted
// whatever image the pod names now; an unmarked one is initialized, and is
// an error when it cannot hold the image after the marker's area. A marker
// of an unknown version or a damaged one is an error: nothing is written
// over a volume podvisor cannot read.
func DecideRoot(head []byte, devSize, imageSize int64) (RootDecision, error) {
	d, err := decideRoot(head, devSize, imageSize)
	if err != nil {
		return RootDecision{}, &UnusableRootError{Err: err}
	}
	return d, nil
}

// UnusableRootError is a persistent root volume podvisor will not boot or
// write: too small for the image, or a marker it cannot read. The pod's
// fault (its claim), not the node's.
type UnusableRootError struct{ Err error }

func (e *UnusableRootError) Error() string { return e.Err.Error() }
func (e *UnusableRootError) Unwrap() error { return e.Err }

func decideRoot(head []byte, devSize, imageSize int64) (RootDecision, error) {
	if bytes.HasPrefix(head, []byte(rootMagic)) {
		var m RootMarker
		line, _, _ := bytes.Cut(head[len(rootMagic):], []byte("\n"))
		if err := json.Unmarshal(line, &m); err != nil {
			return RootDecision{}, fmt.Errorf("the volume has podvisor's persistent root marker but it is damaged (%v): not booting or overwriting it", err)
		}
		if m.Version != rootMarkerVersion {
			return RootDecision{}, fmt.Errorf("the volume's persistent root marker has version %d; this podvisor reads version %d: not booting or overwriting it", m.Version, rootMarkerVersion)
		}
		size, err := sliceAfter(devSize, RootHeaderSize)
		return RootDecision{Origin: RootPodvisor, Offset: RootHeaderSize, Size: size, Marker: m}, err
	}
	if len(head) >= 10 && binary.BigEndian.Uint64(head) == virtletRootMagic {
		if v := binary.BigEndian.Uint16(head[8:]); v != virtletRootVersion {
			return RootDecision{}, fmt.Errorf("the volume has Virtlet's persistent root header of version %d (known: %d): not booting or overwriting it", v, virtletRootVersion)
		}
		size, err := sliceAfter(devSize, virtletRootOffset)
		return RootDecision{Origin: RootVirtlet, Offset: virtletRootOffset, Size: size}, err
	}
	if imageSize <= 0 {
		return RootDecision{}, fmt.Errorf("image size %d is not positive", imageSize)
	}
	size, err := sliceAfter(devSize, RootHeaderSize)
	if err == nil && int64(size) < imageSize {
		err = fmt.Errorf("the volume has %d bytes; the image needs %d, plus %d for podvisor's marker: give the claim at least %d bytes",
			devSize, imageSize, RootHeaderSize, imageSize+RootHeaderSize)
	}
	if err != nil {
		return RootDecision{}, err
	}
	return RootDecision{Initialize: true, Offset: RootHeaderSize, Size: size}, nil
}

// sliceAfter is the guest's size of a device of devSize bytes whose first
// offset bytes are hidden: whole sectors only.
func sliceAfter(devSize int64, offset uint64) (uint64, error) {
	if devSize < int64(offset)+512 {
		return 0, fmt.Errorf("the volume has %d bytes, less than the %d before the guest's disk and one sector", devSize, offset)
	}
	return (uint64(devSize) - offset) &^ 511, nil
}

// RootImage is the image a new persistent root volume receives.
type RootImage struct {
	// Path of the image file, Format "qcow2" or "raw", Size its virtual size.
	Path   string
	Format string
	Size   int64
}

// QemuImg is the qemu-img binary PrepareRoot runs.
var QemuImg = "qemu-img"

// PrepareRoot decides what to do with the persistent root volume at dev (a
// block device or, in tests, a file) and does it: an unmarked volume gets
// img written after the marker's area and then the marker, synced to the
// device in this order (a volume whose write was cut short has no marker
// and is written again next time). The volume is locked (flock) meanwhile,
// so two containers of the node cannot initialize it at once.
func PrepareRoot(ctx context.Context, dev string, img RootImage) (RootDecision, error) {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return RootDecision{}, fmt.Errorf("opening the volume: %w", err)
	}
	defer f.Close()
	if err := flock(ctx, f); err != nil {
		return RootDecision{}, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return RootDecision{}, fmt.Errorf("reading the volume's size: %w", err)
	}
	head := make([]byte, markerBytes)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return RootDecision{}, fmt.Errorf("reading the volume's marker: %w", err)
	}
	d, err := DecideRoot(head[:n], size, img.Size)
	if err != nil || !d.Initialize {
		return d, err
	}
	if err := writeImage(ctx, img, dev, d); err != nil {
		return RootDecision{}, err
	}
	d.Marker = RootMarker{Version: rootMarkerVersion, Image: filepath.Base(img.Path), ImageSize: img.Size, Written: time.Now().UTC().Truncate(time.Second)}
	if err := writeMarker(f, d.Marker); err != nil {
		return RootDecision{}, err
	}
	return d, nil
}

// flock takes an exclusive lock on f, giving up when ctx ends.
func flock(ctx context.Context, f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("locking the volume: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("locking the volume (another container of the node is writing it): %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// writeImage converts img into the guest's part of dev with qemu-img (the
// raw driver's offset and size) and syncs it.
func writeImage(ctx context.Context, img RootImage, dev string, d RootDecision) error {
	proto := "host_device"
	if fi, err := os.Stat(dev); err == nil && fi.Mode().IsRegular() {
		proto = "file"
	}
	// Image options are comma-separated: a comma in a value is doubled.
	target := fmt.Sprintf("driver=raw,offset=%d,size=%d,file.driver=%s,file.filename=%s",
		d.Offset, d.Size, proto, strings.ReplaceAll(dev, ",", ",,"))
	out, err := exec.CommandContext(ctx, QemuImg, "convert", "-n", "-f", img.Format, "--target-image-opts", img.Path, target).CombinedOutput()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("writing the image to the volume: %w", cerr)
		}
		return fmt.Errorf("writing the image to the volume: qemu-img convert: %v: %s", err, strings.TrimSpace(string(out)))
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("syncing the volume: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing the volume: %w", err)
	}
	return nil
}

// writeMarker writes podvisor's marker at the start of f, zero-padded to
// markerBytes, and syncs it.
func writeMarker(f *os.File, m RootMarker) error {
	line, err := json.Marshal(m)
	if err != nil {
		return err
	}
	buf := make([]byte, markerBytes)
	copy(buf, append(append([]byte(rootMagic), line...), '\n'))
	if _, err := f.WriteAt(buf, 0); err != nil {
		return fmt.Errorf("writing the volume's marker: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing the volume's marker: %w", err)
	}
	return nil
}
