package image

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// Disk formats reported by VirtualSize and passed to qemu-img as the
// backing format.
const (
	FormatQCOW2 = "qcow2"
	FormatRaw   = "raw"
)

// qcow2 header fields we read (all big-endian), from QEMU's
// docs/interop/qcow2.txt.
const (
	qcow2Magic           = "QFI\xfb"
	qcow2HeaderMinLen    = 72  // version 2 header length
	qcow2OffBackingFile  = 8   // uint64 backing_file_offset
	qcow2OffSize         = 24  // uint64 size (virtual size in bytes)
	qcow2OffIncompatible = 72  // uint64 incompatible_features (version 3)
	qcow2HeaderV3Len     = 104 // version 3 header length
	// Incompatible feature bit 2: the guest data lives in an external file
	// named by the image, so the image is not self-contained.
	qcow2ExternalDataFile = 1 << 2
)

// Magic numbers of formats we refuse rather than misread as raw.
var otherFormatMagics = []struct {
	off   int
	magic string
	name  string
}{
	{0, "KDMV", "vmdk"},
	{0, "QED\x00", "qed"},
	{0, "vhdxfile", "vhdx"},
	{0, "conectix", "vpc (vhd)"},
	{64, "\x7f\x10\xda\xbe", "vdi"},
}

// VirtualSize returns the size of the disk the guest sees and the image
// format. qcow2 images are read from their header; any file without a known
// image magic is raw and its virtual size is its length. A qcow2 image with a
// backing file or an external data file is refused: an image downloaded from
// the network must not make QEMU open other host files.
func VirtualSize(path string) (size int64, format string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", fmt.Errorf("reading image header of %s: %w", path, err)
	}
	defer f.Close()
	hdr := make([]byte, qcow2HeaderV3Len)
	n, err := io.ReadFull(f, hdr)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, "", fmt.Errorf("reading image header of %s: %w", path, err)
	}
	hdr = hdr[:n]
	if bytes.HasPrefix(hdr, []byte(qcow2Magic)) {
		size, err := qcow2VirtualSize(hdr)
		if err != nil {
			return 0, "", fmt.Errorf("image %s: %w", path, err)
		}
		return size, FormatQCOW2, nil
	}
	for _, m := range otherFormatMagics {
		if len(hdr) >= m.off+len(m.magic) && string(hdr[m.off:m.off+len(m.magic)]) == m.magic {
			return 0, "", fmt.Errorf("image %s is in %s format: only qcow2 and raw images are accepted", path, m.name)
		}
	}
	st, err := f.Stat()
	if err != nil {
		return 0, "", fmt.Errorf("reading size of %s: %w", path, err)
	}
	return st.Size(), FormatRaw, nil
}

func qcow2VirtualSize(hdr []byte) (int64, error) {
	if len(hdr) < qcow2HeaderMinLen {
		return 0, fmt.Errorf("qcow2 header truncated: %d bytes, need at least %d", len(hdr), qcow2HeaderMinLen)
	}
	version := binary.BigEndian.Uint32(hdr[4:8])
	if version != 2 && version != 3 {
		return 0, fmt.Errorf("qcow2 version %d is not supported (accepted: 2, 3)", version)
	}
	if off := binary.BigEndian.Uint64(hdr[qcow2OffBackingFile:]); off != 0 {
		return 0, errors.New("qcow2 image has a backing file: only self-contained images are accepted")
	}
	if version == 3 {
		if len(hdr) < qcow2HeaderV3Len {
			return 0, fmt.Errorf("qcow2 v3 header truncated: %d bytes, need %d", len(hdr), qcow2HeaderV3Len)
		}
		if binary.BigEndian.Uint64(hdr[qcow2OffIncompatible:])&qcow2ExternalDataFile != 0 {
			return 0, errors.New("qcow2 image uses an external data file: only self-contained images are accepted")
		}
	}
	size := binary.BigEndian.Uint64(hdr[qcow2OffSize:])
	if size == 0 || size > 1<<62 {
		return 0, fmt.Errorf("qcow2 virtual size %d is out of range", size)
	}
	return int64(size), nil
}

// QemuImg is the qemu-img binary CreateOverlay runs; tests and packagers may
// point it elsewhere.
var QemuImg = "qemu-img"

// CreateOverlay creates overlayPath as a qcow2 image backed by basePath (never
// a copy), whose virtual size is the larger of the base image's virtual size
// and minSize. It returns that size. The overlay appears atomically: on error
// nothing is left at overlayPath; an existing overlay is replaced.
func CreateOverlay(ctx context.Context, basePath, overlayPath string, minSize int64) (virtualSize int64, err error) {
	if minSize < 0 {
		return 0, fmt.Errorf("creating overlay %s: minimum size %d is negative", overlayPath, minSize)
	}
	base, err := filepath.Abs(basePath)
	if err != nil {
		return 0, fmt.Errorf("creating overlay %s: %w", overlayPath, err)
	}
	size, format, err := VirtualSize(base)
	if err != nil {
		return 0, fmt.Errorf("creating overlay %s: %w", overlayPath, err)
	}
	size = max(size, minSize)
	tmp := overlayPath + ".tmp"
	_ = os.Remove(tmp)
	// -u: qemu-img need not open the base; its format and size were read
	// above, and skipping the open keeps the cost independent of its size.
	cmd := exec.CommandContext(ctx, QemuImg, "create", "-q", "-u", "-f", FormatQCOW2,
		"-F", format, "-b", base, tmp, strconv.FormatInt(size, 10))
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		return 0, fmt.Errorf("creating overlay %s: %s: %w: %s", overlayPath, QemuImg, err, bytes.TrimSpace(out))
	}
	// qemu-img follows the umask; the guest's disk is for QEMU (root) only.
	if err := os.Chmod(tmp, 0o600); err != nil {
		_ = os.Remove(tmp)
		return 0, fmt.Errorf("creating overlay %s: %w", overlayPath, err)
	}
	if err := os.Rename(tmp, overlayPath); err != nil {
		_ = os.Remove(tmp)
		return 0, fmt.Errorf("creating overlay %s: %w", overlayPath, err)
	}
	return size, nil
}

// RemoveOverlay deletes an overlay created by CreateOverlay; a missing one is
// not an error.
func RemoveOverlay(overlayPath string) error {
	if err := os.Remove(overlayPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing overlay %s: %w", overlayPath, err)
	}
	_ = os.Remove(overlayPath + ".tmp")
	return nil
}
