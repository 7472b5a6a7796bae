package cloudinit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// isoTools are tried in order. All three take mkisofs options; genisoimage
// is the one Debian ships and Virtlet used. No Go library served to us writes
// correct Joliet and Rock Ridge trees (see docs/cloud-init.md).
var isoTools = []string{"genisoimage", "mkisofs", "xorrisofs"}

// ISOTool returns the path of the program WriteISO runs.
func ISOTool() (string, error) {
	for _, t := range isoTools {
		if p, err := exec.LookPath(t); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no ISO writer found in PATH (tried %s): install the genisoimage package", strings.Join(isoTools, ", "))
}

// WriteISO writes c as an ISO 9660 image with Joliet and Rock Ridge
// extensions and volume label c.Label at dst. The image is built next to dst
// and renamed into place, so dst is either the old file or the complete new
// one, never a partial image.
func WriteISO(ctx context.Context, c *Contents, dst string) error {
	if err := checkContents(c); err != nil {
		return fmt.Errorf("writing cloud-init ISO %s: %w", dst, err)
	}
	tool, err := ISOTool()
	if err != nil {
		return fmt.Errorf("writing cloud-init ISO %s: %w", dst, err)
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("writing cloud-init ISO %s: %w", dst, err)
	}
	stage, err := stageFiles(dir, c.Files)
	if stage != "" {
		defer os.RemoveAll(stage)
	}
	if err != nil {
		return fmt.Errorf("writing cloud-init ISO %s: %w", dst, err)
	}
	tmp, err := os.CreateTemp(dir, ".cloudinit-*.iso.tmp")
	if err != nil {
		return fmt.Errorf("writing cloud-init ISO %s: %w", dst, err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	if err := runISOTool(ctx, tool, c.Label, stage, tmpName); err != nil {
		os.Remove(tmpName)
		return fmt.Errorf("writing cloud-init ISO %s: %w", dst, err)
	}
	if err := os.Rename(tmpName, dst); err != nil {
		os.Remove(tmpName)
		return fmt.Errorf("writing cloud-init ISO %s: %w", dst, err)
	}
	return nil
}

// checkContents refuses a label cloud-init would not look for and file
// paths that would leave the drive's root.
func checkContents(c *Contents) error {
	if c == nil {
		return errors.New("no contents")
	}
	if c.Label != LabelNoCloud && c.Label != LabelConfigDrive {
		return fmt.Errorf("label %q: accepted %q or %q", c.Label, LabelNoCloud, LabelConfigDrive)
	}
	for _, f := range c.Files {
		if f.Path == "" || path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || strings.HasPrefix(f.Path, "../") || f.Path == ".." {
			return fmt.Errorf("file path %q is not a clean relative path inside the drive", f.Path)
		}
	}
	return nil
}

// stageFiles writes files into a new staging directory under dir and
// returns it (also on error, for the caller to remove).
func stageFiles(dir string, files []DriveFile) (string, error) {
	stage, err := os.MkdirTemp(dir, ".cloudinit-stage-")
	if err != nil {
		return "", fmt.Errorf("creating staging directory: %w", err)
	}
	// MkdirTemp makes 0700; the drive root should read like any directory.
	if err := os.Chmod(stage, 0o755); err != nil {
		return stage, err
	}
	for _, f := range files {
		p := filepath.Join(stage, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return stage, fmt.Errorf("staging %s: %w", f.Path, err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return stage, fmt.Errorf("staging %s: %w", f.Path, err)
		}
	}
	return stage, nil
}

// runISOTool writes the image of stage to out (an existing file) and syncs
// it, so the rename that follows publishes a complete image.
func runISOTool(ctx context.Context, tool, label, stage, out string) error {
	// -J Joliet, -r Rock Ridge with uid/gid 0 and modes readable by all, write
	// bits cleared (-R would copy the daemon's uid into the image), -V the
	// label cloud-init looks for.
	cmd := exec.CommandContext(ctx, tool,
		"-o", out, "-V", label, "-J", "-r",
		"-input-charset", "utf-8", "-quiet", stage)
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return fmt.Errorf("%s: %w: %s", filepath.Base(tool), err, strings.TrimSpace(output.String()))
	}
	f, err := os.OpenFile(out, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(out, 0o644)
}
