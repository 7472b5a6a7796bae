package snapshot

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/podvisor/podvisor/runtime/ctxio"
	"github.com/podvisor/podvisor/runtime/errdefs"
)

// ErrCorrupt is wrapped by every error about an archive's contents: not a
// podvisor checkpoint, truncated, a member missing, changed or unknown.
// It is an InvalidArgument: the archive, not the node, is at fault.
var ErrCorrupt = errdefs.Sentinel(errdefs.ErrInvalidArgument, "the checkpoint archive is damaged or not podvisor's")

// maxManifest bounds what is read as the manifest (it is a few KiB).
const maxManifest = 1 << 20

// Verify reads the whole archive and checks every member against the
// manifest. It creates nothing.
func Verify(ctx context.Context, archive string) (*Manifest, error) {
	return scan(ctx, archive, nil)
}

// Extract verifies the archive, then writes its members into dir (which
// must exist) under their names. Nothing is written unless the whole
// archive verified; on an error during writing, what was written is
// removed.
func Extract(ctx context.Context, archive, dir string) (_ *Manifest, err error) {
	if _, err := Verify(ctx, archive); err != nil {
		return nil, err
	}
	var made []string
	defer func() {
		if err != nil {
			for i := len(made) - 1; i >= 0; i-- {
				os.Remove(made[i])
			}
		}
	}()
	return scan(ctx, archive, func(mem Member, r io.Reader) error {
		dst := filepath.Join(dir, filepath.FromSlash(mem.Name))
		if sub := filepath.Dir(dst); sub != filepath.Clean(dir) {
			if _, serr := os.Stat(sub); errors.Is(serr, os.ErrNotExist) {
				if err := os.Mkdir(sub, 0o700); err != nil {
					return err
				}
				made = append(made, sub)
			}
		}
		f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		made = append(made, dst)
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			return diskFull(err)
		}
		return f.Close()
	})
}

// scan reads the archive member by member, hashing each; with sink, each
// member's content is also handed to it (the hash is checked once the
// member is read, before the next; a sink that wrote it must undo that on
// the error scan returns).
func scan(ctx context.Context, archive string, sink func(Member, io.Reader) error) (*Manifest, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, fmt.Errorf("opening checkpoint %s: %w", archive, err)
	}
	defer f.Close()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("checkpoint %s: %s: %w", archive, fmt.Sprintf(format, args...), ErrCorrupt)
	}
	tr := tar.NewReader(f)
	m, err := readManifest(tr)
	if err != nil {
		return nil, bad("%v", err)
	}
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, bad("reading the member after %d of %d: %v (truncated?)", len(seen), len(m.Members), err)
		}
		mem, ok := m.Member(hdr.Name)
		switch {
		case !ok:
			return nil, bad("member %q is not in the manifest", hdr.Name)
		case seen[hdr.Name]:
			return nil, bad("member %q appears twice", hdr.Name)
		case hdr.Typeflag != tar.TypeReg:
			return nil, bad("member %q is not a regular file", hdr.Name)
		case hdr.Size != mem.Size:
			return nil, bad("member %q is %d bytes, the manifest says %d", hdr.Name, hdr.Size, mem.Size)
		}
		seen[hdr.Name] = true
		if err := readMember(ctx, tr, mem, sink); err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return nil, fmt.Errorf("checkpoint %s: %w", archive, cerr)
			}
			var d damage
			if errors.As(err, &d) {
				return nil, bad("member %q: %s", mem.Name, string(d))
			}
			return nil, fmt.Errorf("checkpoint %s: member %q: %w", archive, mem.Name, err)
		}
	}
	for _, mem := range m.Members {
		if !seen[mem.Name] {
			return nil, bad("member %q is missing (the archive is truncated)", mem.Name)
		}
	}
	return m, nil
}

// damage is what is wrong with a member's content; scan names the member.
type damage string

func (d damage) Error() string { return string(d) }

// readMember hashes one member (passing it to sink if set) and compares
// it with the manifest.
func readMember(ctx context.Context, tr *tar.Reader, mem Member, sink func(Member, io.Reader) error) error {
	h := sha256.New()
	r := io.TeeReader(ctxio.Reader(ctx, tr), h)
	var err error
	if sink != nil {
		err = sink(mem, r)
	} else {
		_, err = io.Copy(io.Discard, r)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return damage("cut short (the archive is truncated)")
	}
	if err != nil {
		return err
	}
	if got := sum(h); got != mem.SHA256 {
		return damage(fmt.Sprintf("sha256 %s does not match the manifest's %s", got, mem.SHA256))
	}
	return nil
}

func readManifest(tr *tar.Reader) (*Manifest, error) {
	hdr, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("reading the first member: %v (not a tar archive, or empty)", err)
	}
	if hdr.Name != ManifestName || hdr.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("the first member is %q, not %s", hdr.Name, ManifestName)
	}
	if hdr.Size > maxManifest {
		return nil, fmt.Errorf("%s is %d bytes (at most %d)", ManifestName, hdr.Size, maxManifest)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %v", ManifestName, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decoding %s: %v", ManifestName, err)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// ReadManifest returns an archive's manifest without verifying its
// members (for listing; Verify or Extract before using it).
func ReadManifest(archive string) (*Manifest, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, fmt.Errorf("opening checkpoint %s: %w", archive, err)
	}
	defer f.Close()
	m, err := readManifest(tar.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %v: %w", archive, err, ErrCorrupt)
	}
	return m, nil
}

// IsArchive reports whether the file at path looks like a checkpoint
// archive: a tar whose first member is the manifest. It reads one block.
func IsArchive(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	hdr, err := tar.NewReader(f).Next()
	return err == nil && hdr.Name == ManifestName && hdr.Typeflag == tar.TypeReg
}
