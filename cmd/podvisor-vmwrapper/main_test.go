package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/podvisor/podvisor/runtime/cgroups"
	"github.com/podvisor/podvisor/runtime/network/vmenv"
)

var wrapper string // the built binary

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmwrapper-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	wrapper = filepath.Join(dir, "podvisor-vmwrapper")
	// Built as it ships: no cgo, so it runs wherever libvirt does.
	build := exec.Command("go", "build", "-o", wrapper, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the wrapper: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fakeQEMU writes a script that reports its network namespace, arguments,
// any PODVISOR_ variable it sees, its capability sets (read by the shell
// itself, the process the wrapper executed), its mount namespace and which
// of a few kernel files it may write.
func fakeQEMU(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qemu")
	script := `#!/bin/sh
echo "netns=$(readlink /proc/self/ns/net)"
for a in "$@"; do echo "arg=$a"; done
env | grep '^PODVISOR_' | sed 's/^/env=/'
while read -r k v; do case "$k" in Cap*) echo "cap=$k$v" ;; esac; done </proc/$$/status
echo "mntns=$(readlink /proc/self/ns/mnt)"
while read -r l; do echo "cgroup=$l"; done </proc/self/cgroup
for p in /proc/sys/kernel/core_pattern /proc/sysrq-trigger /sys/fs/cgroup /sys/kernel; do
	if [ -w "$p" ]; then echo "writable=$p"; fi
done
exit 0
`
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

type result struct {
	netns string
	args  []string
	env   []string
	caps  map[string]uint64 // CapBnd etc. from /proc/PID/status
	mntns string
	// cgroups are the lines of QEMU's /proc/self/cgroup.
	cgroups []string
	// writable are the kernel files QEMU could write.
	writable []string
}

func runWrapper(t *testing.T, env []string, args ...string) (result, string, error) {
	t.Helper()
	cmd := exec.Command(wrapper, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var r result
	for _, line := range strings.Split(stdout.String(), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "netns":
			r.netns = v
		case "arg":
			r.args = append(r.args, v)
		case "env":
			r.env = append(r.env, v)
		case "mntns":
			r.mntns = v
		case "cgroup":
			r.cgroups = append(r.cgroups, v)
		case "writable":
			r.writable = append(r.writable, v)
		case "cap":
			name, hex, _ := strings.Cut(v, ":")
			if r.caps == nil {
				r.caps = map[string]uint64{}
			}
			r.caps[name], _ = strconv.ParseUint(hex, 16, 64)
		}
	}
	return r, stderr.String(), err
}

func ownNetNS(t *testing.T) string {
	l, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Without the variables (libvirt's capability probes) QEMU runs unchanged
// in the wrapper's own namespace.
func TestPassThrough(t *testing.T) {
	qemu := fakeQEMU(t)
	args := []string{"-S", "-no-user-config", "-machine", "none,accel=kvm:tcg", "-qmp", "unix:/tmp/x.sock,server=on,wait=off"}
	r, stderr, err := runWrapper(t, []string{vmenv.EnvQEMU + "=" + qemu}, args...)
	if err != nil {
		t.Fatalf("wrapper: %v\n%s", err, stderr)
	}
	if r.netns != ownNetNS(t) {
		t.Errorf("QEMU ran in %s, want the wrapper's namespace %s", r.netns, ownNetNS(t))
	}
	if diff := cmp.Diff(args, r.args); diff != "" {
		t.Errorf("arguments changed (-want +got):\n%s", diff)
	}
	if len(r.env) != 0 {
		t.Errorf("QEMU saw %v", r.env)
	}
	checkCaps(t, r)
	checkKernelFiles(t, r)
}

// checkKernelFiles: as root the wrapper gives QEMU a mount namespace of
// its own where the kernel's files are read-only, and the test's own
// namespace keeps them writable (nothing propagated back).
func checkKernelFiles(t *testing.T, r result) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	own, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	if r.mntns == "" || r.mntns == own {
		t.Errorf("QEMU ran in mount namespace %q, want one of its own (the wrapper's is %s)", r.mntns, own)
	}
	if len(r.writable) > 0 {
		t.Errorf("QEMU may write %v", r.writable)
	}
	if err := unix.Access("/proc/sys/kernel/core_pattern", unix.W_OK); err != nil {
		t.Errorf("the read-only mounts reached the test's own namespace: /proc/sys/kernel/core_pattern: %v", err)
	}
}

// checkCaps: QEMU has no capability beyond vmenv.QEMUCapabilities in any
// set, none of those it must never have, and as root (podvisor's QEMU)
// exactly those.
func checkCaps(t *testing.T, r result) {
	t.Helper()
	const never = 1<<unix.CAP_MKNOD | 1<<unix.CAP_FSETID | 1<<unix.CAP_SETFCAP | 1<<unix.CAP_SYS_ADMIN | 1<<unix.CAP_CHOWN | 1<<unix.CAP_SETUID
	for _, set := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		got, ok := r.caps[set]
		if !ok {
			t.Errorf("QEMU reported no %s: %v", set, r.caps)
			continue
		}
		if extra := got &^ vmenv.QEMUCapabilities; extra != 0 && (set != "CapBnd" || os.Geteuid() == 0) {
			t.Errorf("QEMU's %s is %#x: %#x beyond vmenv.QEMUCapabilities %#x", set, got, extra, vmenv.QEMUCapabilities)
		}
		if got&never != 0 && (set != "CapBnd" || os.Geteuid() == 0) {
			t.Errorf("QEMU's %s %#x has CAP_MKNOD, CAP_FSETID, CAP_SETFCAP, CAP_SYS_ADMIN, CAP_CHOWN or CAP_SETUID", set, got)
		}
	}
	if os.Geteuid() == 0 && (r.caps["CapEff"] != vmenv.QEMUCapabilities || r.caps["CapBnd"] != vmenv.QEMUCapabilities) {
		t.Errorf("QEMU run by root has CapEff %#x, CapBnd %#x; want %#x", r.caps["CapEff"], r.caps["CapBnd"], vmenv.QEMUCapabilities)
	}
}

func makeNetNS(t *testing.T) (path string, ino uint64) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("PODVISOR_ALLOW_SKIP") == "1" {
			t.Skip("needs root to create a network namespace")
		}
		t.Fatal("needs root to create a network namespace (set PODVISOR_ALLOW_SKIP=1 to skip)")
	}
	path = filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	tmp, err := ns.TempNetNS()
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Close()
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", tmp.Fd()), path, "none", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(path, unix.MNT_DETACH) })
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return path, st.Ino
}

// With the variables QEMU runs in the pod's namespace with the NICs added
// after libvirt's arguments, and does not see podvisor's variables.
func TestEntersNetNS(t *testing.T) {
	path, ino := makeNetNS(t)
	qemu := fakeQEMU(t)
	nics := "pv-tap0=0a:58:0a:4d:00:05;pv-tap1=0a:58:0a:4d:00:06"
	r, stderr, err := runWrapper(t, []string{
		vmenv.EnvQEMU + "=" + qemu, vmenv.EnvNetNS + "=" + path, vmenv.EnvNICs + "=" + nics, "OTHER=kept",
	}, "-name", "guest=pv-0123", "-S")
	if err != nil {
		t.Fatalf("wrapper: %v\n%s", err, stderr)
	}
	if want := fmt.Sprintf("net:[%d]", ino); r.netns != want {
		t.Errorf("QEMU ran in %s, want the pod namespace %s", r.netns, want)
	}
	parsed, _ := vmenv.DecodeNICs(nics)
	want := append([]string{"-name", "guest=pv-0123", "-S"}, vmenv.QEMUArgs(parsed)...)
	if diff := cmp.Diff(want, r.args); diff != "" {
		t.Errorf("arguments (-want +got):\n%s", diff)
	}
	if len(r.args) != 3+4*2 || !strings.Contains(strings.Join(r.args, " "), "ifname=pv-tap1") {
		t.Errorf("want two tap NICs appended, got %q", r.args)
	}
	if len(r.env) != 0 {
		t.Errorf("QEMU saw %v", r.env)
	}
	checkCaps(t, r)
	checkKernelFiles(t, r)
}

func TestFailures(t *testing.T) {
	qemu := fakeQEMU(t)
	notNS := filepath.Join(t.TempDir(), "plain-file")
	os.WriteFile(notNS, nil, 0o644)
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"netns without NICs", []string{vmenv.EnvQEMU + "=" + qemu, vmenv.EnvNetNS + "=/run/netns/x"}, "set both (pod network) or neither"},
		{"NICs without netns", []string{vmenv.EnvQEMU + "=" + qemu, vmenv.EnvNICs + "=pv-tap0=0a:58:0a:4d:00:05"}, "set both"},
		{"bad NICs", []string{vmenv.EnvQEMU + "=" + qemu, vmenv.EnvNetNS + "=/run/netns/x", vmenv.EnvNICs + "=pv-tap0"}, `PODVISOR_NICS entry 0 "pv-tap0": want <tap>=<mac>`},
		{"missing netns", []string{vmenv.EnvQEMU + "=" + qemu, vmenv.EnvNetNS + "=/nonexistent/netns", vmenv.EnvNICs + "=pv-tap0=0a:58:0a:4d:00:05"},
			"opening network namespace PODVISOR_NETNS=/nonexistent/netns"},
		{"not a netns", []string{vmenv.EnvQEMU + "=" + qemu, vmenv.EnvNetNS + "=" + notNS, vmenv.EnvNICs + "=pv-tap0=0a:58:0a:4d:00:05"},
			"entering network namespace PODVISOR_NETNS=" + notNS},
		{"missing emulator", []string{vmenv.EnvQEMU + "=/nonexistent/qemu"}, "executing the emulator /nonexistent/qemu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, stderr, err := runWrapper(t, tc.env, "-version")
			if err == nil {
				t.Fatalf("wrapper succeeded (ran %+v), want failure", r)
			}
			if !strings.HasPrefix(stderr, "podvisor-vmwrapper: ") || !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q, want podvisor-vmwrapper: ... %q", stderr, tc.want)
			}
			if r.netns != "" {
				t.Errorf("QEMU ran despite the failure")
			}
		})
	}
}

// With PODVISOR_CGROUP, QEMU runs in that cgroup in every hierarchy but
// devices (libvirt's), and does not see the variable. Needs root and a
// writable cgroup filesystem: the cgroup is real, made and removed here.
func TestJoinsTheVMCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a cgroup")
	}
	fs, err := cgroups.Detect()
	if err != nil {
		t.Skip(err)
	}
	path := fmt.Sprintf("/podvisor-wrapper-test-%d", os.Getpid())
	if err := fs.Create(path, cgroups.Limits{MemoryBytes: 512 << 20}); err != nil {
		t.Skipf("cannot make a cgroup here: %v", err)
	}
	t.Cleanup(func() {
		if err := fs.Remove(path); err != nil {
			t.Error(err)
		}
	})
	r, stderr, err := runWrapper(t, []string{vmenv.EnvQEMU + "=" + fakeQEMU(t), cgroups.EnvCgroup + "=" + path}, "-version")
	if err != nil {
		t.Fatalf("wrapper: %v\n%s", err, stderr)
	}
	if len(r.env) != 0 {
		t.Errorf("QEMU saw %v", r.env)
	}
	joined := 0
	for _, l := range r.cgroups {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			t.Fatalf("cgroup line %q", l)
		}
		in := parts[2] == path
		if strings.Contains(","+parts[1]+",", ",devices,") {
			if in {
				t.Errorf("QEMU joined the devices hierarchy (%s): that one is libvirt's", l)
			}
			continue
		}
		if !in {
			t.Errorf("QEMU is in %s; want %s", l, path)
		}
		joined++
	}
	if joined == 0 {
		t.Errorf("QEMU's cgroups %v: none is %s", r.cgroups, path)
	}
}
