package main

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// dropCapabilities leaves the calling thread with at most the capabilities
// in keep (a mask of 1<<CAP_*) in every set, so that the program it
// executes next has no others. Capabilities belong to a thread: the caller
// keeps the thread locked until execve.
//
// A root process executing a program gets (inheritable | bounding) as its
// permitted and effective sets, whatever it had itself; so each capability
// not kept leaves the bounding set (PR_CAPBSET_DROP, which needs
// CAP_SETPCAP: done before capset gives that up) and the inheritable,
// permitted and effective sets (capset); the ambient set is cleared. A
// process that is not root and lacks CAP_SETPCAP cannot shrink its
// bounding set; the program it executes gets no capabilities from it
// anyway (unless the program has file capabilities), so that is skipped.
func dropCapabilities(keep uint64) error {
	for c := 0; c < 64; c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			break // past the kernel's last capability
		}
		if err != nil {
			return fmt.Errorf("reading capability %d of the bounding set: %w", c, err)
		}
		if in == 0 {
			continue
		}
		err = unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EPERM) && os.Geteuid() != 0 {
			break
		}
		if err != nil {
			return fmt.Errorf("dropping capability %d from the bounding set (does the emulator run as root?): %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clearing the ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("reading the capabilities: %w", err)
	}
	for i := range data {
		k := uint32(keep >> (32 * i))
		data[i].Effective &= k
		data[i].Permitted &= k
		data[i].Inheritable &= k
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("lowering the capabilities to %#x: %w", keep, err)
	}
	return nil
}
