package snapshot

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/podvisor/podvisor/runtime/ctxio"
)

// tempFile is what Write needs of the file it writes.
type tempFile interface {
	io.Writer
	Sync() error
	Close() error
	Name() string
}

// createTemp makes the temporary file (tests put a full disk under it).
var createTemp = func(dir, pattern string) (tempFile, error) { return os.CreateTemp(dir, pattern) }

// File is one member to write: its name in the archive and the file it is
// read from.
type File struct {
	Name string
	Path string
	// Source, for a disk, is its path in the domain definition.
	Source string
}

// Write writes an archive of files to target. m's Format, Version and
// Members are filled in; the rest is the caller's. The archive is written
// to a temporary file in target's directory and renamed to target once
// complete and synced: on any error (a full disk included) nothing is left
// at target or beside it.
func Write(ctx context.Context, target string, m *Manifest, files []File) (err error) {
	m.Format, m.Version = Format, Version
	m.Members = m.Members[:0]
	for _, f := range files {
		if err := validMemberName(f.Name); err != nil {
			return fmt.Errorf("checkpoint %s: %w", target, err)
		}
		mem, err := hashFile(ctx, f.Name, f.Path)
		if err != nil {
			return fmt.Errorf("checkpoint %s: %w", target, err)
		}
		mem.Source = f.Source
		m.Members = append(m.Members, mem)
	}
	if err := m.validate(); err != nil {
		return fmt.Errorf("checkpoint %s: %w", target, err)
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("checkpoint %s: encoding the manifest: %w", target, err)
	}
	tmp, err := createTemp(filepath.Dir(target), "."+filepath.Base(target)+".partial-*")
	if err != nil {
		return fmt.Errorf("checkpoint %s: creating the temporary file: %w", target, diskFull(err))
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := writeTar(ctx, tmp, m, manifest, files); err != nil {
		return fmt.Errorf("checkpoint %s: %w", target, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("checkpoint %s: syncing: %w", target, diskFull(err))
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("checkpoint %s: closing: %w", target, diskFull(err))
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return fmt.Errorf("checkpoint %s: moving the archive into place: %w", target, err)
	}
	syncDir(filepath.Dir(target))
	return nil
}

func writeTar(ctx context.Context, w io.Writer, m *Manifest, manifest []byte, files []File) error {
	tw := tar.NewWriter(w)
	hdr := &tar.Header{Name: ManifestName, Mode: 0o600, Size: int64(len(manifest)), ModTime: m.CreatedAt, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing the manifest: %w", diskFull(err))
	}
	if _, err := tw.Write(manifest); err != nil {
		return fmt.Errorf("writing the manifest: %w", diskFull(err))
	}
	for i, f := range files {
		if err := writeMember(ctx, tw, m.Members[i], f.Path, m); err != nil {
			return fmt.Errorf("member %s: %w", f.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finishing the archive: %w", diskFull(err))
	}
	return nil
}

// writeMember copies one file into the archive and checks that what was
// copied is what the manifest says: a file changed since it was hashed is
// an error, not a corrupt archive.
func writeMember(ctx context.Context, tw *tar.Writer, mem Member, path string, m *Manifest) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	hdr := &tar.Header{Name: mem.Name, Mode: 0o600, Size: mem.Size, ModTime: m.CreatedAt, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return diskFull(err)
	}
	h := sha256.New()
	n, err := io.Copy(tw, io.TeeReader(ctxio.Reader(ctx, io.LimitReader(f, mem.Size)), h))
	if err != nil {
		return diskFull(err)
	}
	if n != mem.Size || hex.EncodeToString(h.Sum(nil)) != mem.SHA256 {
		return fmt.Errorf("%s changed while it was being archived", path)
	}
	return nil
}

func hashFile(ctx context.Context, name, path string) (Member, error) {
	f, err := os.Open(path)
	if err != nil {
		return Member{}, fmt.Errorf("member %s: %w", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Member{}, fmt.Errorf("member %s: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		return Member{}, fmt.Errorf("member %s: %s is not a regular file", name, path)
	}
	h := sha256.New()
	n, err := io.Copy(h, ctxio.Reader(ctx, f))
	if err != nil {
		return Member{}, fmt.Errorf("member %s: reading %s: %w", name, path, err)
	}
	return Member{Name: name, Size: n, SHA256: sum(h)}, nil
}

func sum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// ErrNoSpace is wrapped by errors of writing to a full file system.
var ErrNoSpace = errors.New("no space left on the target's file system: free some, or give a location with room for the VM's memory and disks")

// diskFull says so plainly when err is ENOSPC or EDQUOT.
func diskFull(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w (%v)", ErrNoSpace, err)
	}
	return err
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: the rename is done
		d.Close()
	}
}
