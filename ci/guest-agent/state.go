package main

import (
	"bufio"
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// dispatchState answers the commands that change the guest's clock and
// file systems: guest-set-time (a checkpoint restored resyncs the clock)
// and guest-fsfreeze-* (a disk-only checkpoint). ok is false for other
// commands.
func (a *agent) dispatchState(cmd string, args json.RawMessage) (ret any, err error, ok bool) {
	switch cmd {
	case "guest-set-time":
		var p struct {
			Time *int64 `json:"time"`
		}
		if err := strictArgs(args, &p); err != nil {
			return nil, err, true
		}
		if p.Time == nil {
			// qemu-ga then reads the hardware clock; this guest has none to trust.
			return nil, genericErr("Parameter 'time' is missing (this agent does not read the RTC)"), true
		}
		if err := a.setTime(time.Unix(0, *p.Time)); err != nil {
			return nil, genericErr("Failed to set time: %v", err), true
		}
		return struct{}{}, nil, true
	case "guest-fsfreeze-freeze":
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.frozen {
			return nil, genericErr("Command guest-fsfreeze-freeze has been disabled: the agent is in frozen state"), true
		}
		n, err := a.freeze()
		if err != nil {
			_, _ = a.thaw()
			return nil, genericErr("failed to freeze: %v", err), true
		}
		a.frozen = true
		return n, nil, true
	case "guest-fsfreeze-thaw":
		a.mu.Lock()
		defer a.mu.Unlock()
		n, err := a.thaw()
		a.frozen = false
		if err != nil {
			return nil, genericErr("failed to thaw: %v", err), true
		}
		return n, nil, true
	case "guest-fsfreeze-status":
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.frozen {
			return "frozen", nil, true
		}
		return "thawed", nil, true
	}
	return nil, nil, false
}

func setClock(t time.Time) error {
	tv := syscall.NsecToTimeval(t.UnixNano())
	return syscall.Settimeofday(&tv)
}

// The FIFREEZE and FITHAW ioctls (linux/fs.h).
const (
	fifreeze = 0xc0045877
	fithaw   = 0xc0045878
)

// freezableMounts are the guest's mounted block-device file systems:
// the ones with a disk under them (rootfs, proc, 9p and the like have
// none, or cannot be frozen).
func freezableMounts() ([]string, error) {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 3 && strings.HasPrefix(fields[0], "/dev/") && fields[2] != "iso9660" {
			out = append(out, fields[1])
		}
	}
	return out, s.Err()
}

func ioctlMounts(req uintptr, ignore syscall.Errno) (int, error) {
	mounts, err := freezableMounts()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range mounts {
		fd, err := syscall.Open(m, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		if err != nil {
			continue
		}
		_, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(nil)))
		syscall.Close(fd)
		switch e {
		case 0:
			n++
		case ignore, syscall.EOPNOTSUPP, syscall.ENOTTY:
		default:
			return n, &os.PathError{Op: "ioctl", Path: m, Err: e}
		}
	}
	return n, nil
}

// freezeAll freezes every freezable file system; one already frozen is
// not counted.
func freezeAll() (int, error) { return ioctlMounts(fifreeze, syscall.EBUSY) }

// thawAll thaws them; one not frozen is not counted.
func thawAll() (int, error) { return ioctlMounts(fithaw, syscall.EINVAL) }
