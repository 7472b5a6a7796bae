package cloudinit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// ErrTooLarge is returned by FilesFromDir when the files' contents exceed
// its bound.
var ErrTooLarge = errors.New("the files are larger than the bound")

// FilesFromDir reads a volume directory that kubelet prepared for a secret,
// configMap, projected or downwardAPI volume (or any directory) and returns
// its regular files as GuestFiles under guestDir, with their permission
// bits, sorted by path.
//
// Symbolic links are followed as long as they stay inside hostDir
// (kubelet's keys are symlinks into ..data, which points at a timestamped
// directory next to it); one that leads out of hostDir is an error, so a
// volume cannot make podvisor copy a node file into the guest. The
// directory is read through an os.Root, so this holds even if the links
// change while it is read. Kubelet's own bookkeeping entries (names
// starting with "..") are skipped, so every key appears once. Entries
// other than regular files and directories (sockets, devices) are skipped.
//
// maxBytes bounds the total size of the contents: more is an error that
// wraps ErrTooLarge, detected before a file is read whole. Errors name
// host paths, never contents.
func FilesFromDir(ctx context.Context, hostDir, guestDir string, maxBytes int64) ([]GuestFile, error) {
	if !path.IsAbs(guestDir) {
		return nil, fmt.Errorf("guest directory %q for %s is not absolute", guestDir, hostDir)
	}
	root, err := os.OpenRoot(hostDir)
	if err != nil {
		return nil, fmt.Errorf("reading volume directory %s: %w", hostDir, err)
	}
	defer root.Close()
	var (
		r     []GuestFile
		total int64
	)
	// describe tells a link leading out of hostDir (which root refuses)
	// from other errors: there, a plain stat of the same path succeeds.
	describe := func(rel string, err error) error {
		full := filepath.Join(hostDir, filepath.FromSlash(rel))
		if _, serr := os.Stat(full); serr == nil {
			return fmt.Errorf("reading volume file %s: a symbolic link leads out of the volume directory %s", full, hostDir)
		}
		return fmt.Errorf("reading volume file %s: %w", full, err)
	}
	var walk func(rel, guest string, depth int) error
	walk = func(rel, guest string, depth int) error {
		// kubelet never nests deeply; the bound stops symlink loops.
		if depth > 32 {
			return fmt.Errorf("reading %s: directories nested deeper than 32 levels (symlink loop?)", filepath.Join(hostDir, rel))
		}
		d, err := root.Open(rel)
		if err != nil {
			return describe(rel, err)
		}
		entries, err := d.ReadDir(-1)
		d.Close()
		if err != nil {
			return fmt.Errorf("reading volume directory %s: %w", filepath.Join(hostDir, rel), err)
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			if strings.HasPrefix(e.Name(), "..") {
				continue
			}
			p := path.Join(rel, e.Name())
			st, err := root.Stat(p)
			if err != nil {
				return describe(p, err)
			}
			g := path.Join(guest, e.Name())
			switch {
			case st.IsDir():
				if err := walk(p, g, depth+1); err != nil {
					return err
				}
			case st.Mode().IsRegular():
				data, mode, err := readBounded(root, p, maxBytes-total)
				if errors.Is(err, ErrTooLarge) {
					return fmt.Errorf("reading volume file %s: %w (%d bytes)", filepath.Join(hostDir, p), err, maxBytes)
				}
				if err != nil {
					return describe(p, err)
				}
				total += int64(len(data))
				r = append(r, GuestFile{Path: g, Content: data, Mode: mode})
			}
		}
		return nil
	}
	if err := walk(".", guestDir, 0); err != nil {
		return nil, err
	}
	sort.Slice(r, func(i, j int) bool { return r[i].Path < r[j].Path })
	return r, nil
}

// readBounded reads the file at rel in root if it holds at most max bytes,
// with the permission bits of the opened file.
func readBounded(root *os.Root, rel string, max int64) ([]byte, fs.FileMode, error) {
	f, err := root.Open(rel)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if max < 0 || st.Size() > max {
		return nil, 0, ErrTooLarge
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, 0, err
	}
	if int64(len(data)) > max {
		return nil, 0, ErrTooLarge
	}
	return data, st.Mode().Perm(), nil
}
