package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
)

// Limits of the qemu-img info that validates a pulled disk, as KubeVirt's
// (pkg/image-upload and virt-handler): a crafted image must not make it
// eat the node's memory or CPU.
const (
	qemuImgInfoAddressSpace = 1 << 30 // bytes
	qemuImgInfoCPUSeconds   = 10
)

// Prlimit is the prlimit binary (util-linux) that runs qemu-img info in a
// resource-limited process.
var Prlimit = "prlimit"

// diskInfo is what the check reads of qemu-img info --output=json.
type diskInfo struct {
	Format          string `json:"format"`
	VirtualSize     int64  `json:"virtual-size"`
	BackingFilename string `json:"backing-filename"`
	FullBacking     string `json:"full-backing-filename"`
	FormatSpecific  struct {
		Data struct {
			DataFile string `json:"data-file"`
		} `json:"data"`
	} `json:"format-specific"`
}

// checkQemuImgInfo runs qemu-img info on path (of format, as VirtualSize
// read it) under prlimit and refuses what KubeVirt refuses of a
// containerDisk: another format than the header says, a backing file, an
// external data file.
func checkQemuImgInfo(ctx context.Context, path, format string) error {
	cmd := exec.CommandContext(ctx, Prlimit,
		"--as="+strconv.Itoa(qemuImgInfoAddressSpace), "--cpu="+strconv.Itoa(qemuImgInfoCPUSeconds), "--",
		QemuImg, "info", "--output=json", "-f", format, path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("qemu-img info (limited to %d MiB, %d s of CPU): %w: %s", qemuImgInfoAddressSpace>>20, qemuImgInfoCPUSeconds, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return checkInfo(out, format)
}

// checkInfo judges qemu-img info's JSON.
func checkInfo(out []byte, format string) error {
	var info diskInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return fmt.Errorf("reading qemu-img info: %w", err)
	}
	switch {
	case info.Format != format:
		return fmt.Errorf("qemu-img info says format %q, the header %q", info.Format, format)
	case info.BackingFilename != "" || info.FullBacking != "":
		return errors.New("the disk has a backing file: only self-contained qcow2 or raw disks are accepted")
	case info.FormatSpecific.Data.DataFile != "":
		return errors.New("the disk uses an external data file: only self-contained qcow2 or raw disks are accepted")
	case info.VirtualSize <= 0:
		return fmt.Errorf("qemu-img info says virtual size %d", info.VirtualSize)
	}
	return nil
}
