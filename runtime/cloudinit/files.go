package cloudinit

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// FilesFromDir reads a volume directory that kubelet prepared for a secret or
// configmap volume (or any directory) and returns its regular files as
// GuestFiles under guestDir, with their modes, sorted by path. Symlinks are
// followed (kubelet's keys are symlinks into ..data); kubelet's own
// bookkeeping entries starting with ".." are skipped, so every key appears once.
func FilesFromDir(ctx context.Context, hostDir, guestDir string) ([]GuestFile, error) {
	if !path.IsAbs(guestDir) {
		return nil, fmt.Errorf("guest directory %q for %s is not absolute", guestDir, hostDir)
	}
	var r []GuestFile
	var walk func(dir, guest string, depth int) error
	walk = func(dir, guest string, depth int) error {
		// kubelet never nests deeply; the bound stops symlink loops.
		if depth > 32 {
			return fmt.Errorf("reading %s: directories nested deeper than 32 levels (symlink loop?)", dir)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("reading volume directory %s: %w", dir, err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			if strings.HasPrefix(e.Name(), "..") {
				continue
			}
			p := filepath.Join(dir, e.Name())
			st, err := os.Stat(p)
			if err != nil {
				return fmt.Errorf("reading volume file %s: %w", p, err)
			}
			g := path.Join(guest, e.Name())
			switch {
			case st.IsDir():
				if err := walk(p, g, depth+1); err != nil {
					return err
				}
			case st.Mode().IsRegular():
				data, err := os.ReadFile(p)
				if err != nil {
					return fmt.Errorf("reading volume file %s: %w", p, err)
				}
				r = append(r, GuestFile{Path: g, Content: data, Mode: st.Mode().Perm()})
			}
		}
		return nil
	}
	if err := walk(hostDir, guestDir, 0); err != nil {
		return nil, err
	}
	sort.Slice(r, func(i, j int) bool { return r[i].Path < r[j].Path })
	return r, nil
}
