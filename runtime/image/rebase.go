package image

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
)

// RebaseOverlay points the qcow2 overlay at basePath, the same image
// under this node's path (a checkpoint restored here, whose overlay named
// the checkpointed node's file). Only the header changes (qemu-img rebase
// -u): the base must hold the same content, which the checkpoint's image
// digest vouches for.
func RebaseOverlay(ctx context.Context, overlayPath, basePath string) error {
	base, err := filepath.Abs(basePath)
	if err != nil {
		return fmt.Errorf("rebasing overlay %s: %w", overlayPath, err)
	}
	_, format, err := VirtualSize(base)
	if err != nil {
		return fmt.Errorf("rebasing overlay %s: %w", overlayPath, err)
	}
	cmd := exec.CommandContext(ctx, QemuImg, "rebase", "-q", "-u", "-f", FormatQCOW2, "-F", format, "-b", base, overlayPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("rebasing overlay %s onto %s: %s: %w: %s", overlayPath, base, QemuImg, err, bytes.TrimSpace(out))
	}
	return nil
}
