// Command podvisor-vmwrapper is the emulator libvirt starts for podvisor's
// domains (their <emulator>). QEMU started by libvirt lives in libvirt's
// network namespace; the wrapper moves it into the pod's: when the domain's
// <qemu:env> sets PODVISOR_NETNS and PODVISOR_NICS, it enters that network
// namespace and executes the real QEMU with a tap NIC per entry appended.
// Without them (libvirt's capability probes: -help, -version, QMP) it
// executes QEMU unchanged. When PODVISOR_CGROUP names the VM's cgroup it
// joins it first, so QEMU runs in its pod's cgroup under the container's
// limits. Either way QEMU runs in a mount namespace of its
// own where /sys and the writable files of /proc are read-only, with only
// the capabilities in vmenv.QEMUCapabilities. See docs/networking.md and
// docs/libvirt.md.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/podvisor/podvisor/runtime/cgroups"
	"github.com/podvisor/podvisor/runtime/network/vmenv"
)

func main() {
	err := run(os.Args, os.Environ())
	// run returns only on failure: success replaces this process.
	fmt.Fprintf(os.Stderr, "podvisor-vmwrapper: %v\n", err)
	os.Exit(1)
}

// run executes the real emulator; it returns only when that fails.
func run(args, environ []string) error {
	var netnsPath, nicSpec, cgroup string
	qemu := vmenv.DefaultQEMU
	env := make([]string, 0, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case vmenv.EnvNetNS:
			netnsPath = v
		case vmenv.EnvNICs:
			nicSpec = v
		case cgroups.EnvCgroup:
			cgroup = v
		case vmenv.EnvQEMU:
			if v != "" {
				qemu = v
			}
		default:
			// The variables are ours; QEMU does not need to see them.
			env = append(env, kv)
		}
	}
	argv := append([]string{qemu}, args[1:]...)
	if cgroup != "" {
		if err := joinCgroup(cgroup); err != nil {
			return err
		}
	}
	if netnsPath == "" && nicSpec == "" {
		return execQEMU(qemu, argv, env)
	}
	if netnsPath == "" || nicSpec == "" {
		return fmt.Errorf("%s=%q and %s=%q: set both (pod network) or neither (plain QEMU)", vmenv.EnvNetNS, netnsPath, vmenv.EnvNICs, nicSpec)
	}
	nics, err := vmenv.DecodeNICs(nicSpec)
	if err != nil {
		return err
	}
	if err := enterNetNS(netnsPath); err != nil {
		return err
	}
	return execQEMU(qemu, append(argv, vmenv.QEMUArgs(nics)...), env)
}

// joinCgroup moves the wrapper, and so QEMU and every thread it makes,
// into the VM's cgroup below its pod's (podvisor made it and set its
// limits). libvirt placed the process in its devices cgroup only
// (qemu.conf cgroup_controllers), which it keeps.
func joinCgroup(path string) error {
	fs, err := cgroups.Detect()
	if err == nil {
		err = fs.Join(path, 0)
	}
	if err != nil {
		return fmt.Errorf("joining the VM's cgroup %s=%s: %w", cgroups.EnvCgroup, path, err)
	}
	return nil
}

// enterNetNS moves the calling thread into the network namespace at path.
// The thread stays locked: execve from it gives the new program that
// thread's namespaces.
func enterNetNS(path string) error {
	runtime.LockOSThread()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening network namespace %s=%s: %w", vmenv.EnvNetNS, path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering network namespace %s=%s (is it a network namespace? does the emulator run as root?): %w", vmenv.EnvNetNS, path, err)
	}
	return nil
}

// execQEMU executes QEMU on this thread, which stays locked (namespaces
// and capabilities are the thread's), in a mount namespace of its own
// where the kernel's writable files are read-only, with only
// vmenv.QEMUCapabilities.
func execQEMU(qemu string, argv, env []string) error {
	runtime.LockOSThread()
	if err := readOnlyKernelFiles(); err != nil {
		return fmt.Errorf("before executing the emulator %s: %w", qemu, err)
	}
	if err := dropCapabilities(vmenv.QEMUCapabilities); err != nil {
		return fmt.Errorf("before executing the emulator %s: %w", qemu, err)
	}
	err := syscall.Exec(qemu, argv, env)
	return fmt.Errorf("executing the emulator %s (set %s to another path): %w", qemu, vmenv.EnvQEMU, err)
}
