package network

// The whole path by hand made automatic: a VM started by libvirt with
// podvisor-vmwrapper as its emulator gets the pod IP from podvisor's DHCP
// server and answers on the pod IP from inside the pod's namespace. Needs
// root, a running libvirtd (ci/libvirtd.sh start), virsh, qemu-img and the
// test guest (ci/build-guest.sh); runs with PODVISOR_LIBVIRT_TESTS=1.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/network/vmenv"
	"github.com/podvisor/podvisor/runtime/podtypes"
)

// checkQEMUCaps: the QEMU process libvirt started through the wrapper has
// exactly vmenv.QEMUCapabilities in its bounding, permitted and effective
// sets and nothing inheritable or ambient: no CAP_MKNOD, CAP_FSETID,
// CAP_SETFCAP or CAP_SYS_ADMIN.
func checkQEMUCaps(t *testing.T, pid string) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"CapInh": 0, "CapPrm": vmenv.QEMUCapabilities, "CapEff": vmenv.QEMUCapabilities, "CapBnd": vmenv.QEMUCapabilities, "CapAmb": 0}
	var report []string
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		w, ok := want[k]
		if !ok {
			continue
		}
		report = append(report, line)
		got, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil || got != w {
			t.Errorf("QEMU (PID %s) has %s, want %s %016x (vmenv.QEMUCapabilities)", pid, line, k, w)
		}
		delete(want, k)
	}
	if len(want) > 0 {
		t.Errorf("QEMU's /proc/%s/status lacks %v", pid, want)
	}
	t.Logf("QEMU (PID %s) capabilities: %s", pid, strings.Join(report, "; "))
}

// checkQEMUMounts: QEMU has a mount namespace of its own in which /sys,
// /proc/sys and every mount below them are read-only.
func checkQEMUMounts(t *testing.T, pid string) {
	t.Helper()
	own, _ := os.Readlink("/proc/self/ns/mnt")
	if qns, err := os.Readlink("/proc/" + pid + "/ns/mnt"); err != nil || qns == own {
		t.Errorf("QEMU's mount namespace is %q, %v; want one of its own (the test's is %s)", qns, err, own)
	}
	b, err := os.ReadFile("/proc/" + pid + "/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	// A mount stacked on another is listed after it: keep the last one of
	// each mount point, the one QEMU sees.
	top := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 6 {
			top[f[4]] = f[5]
		}
	}
	for dir, opts := range top {
		for _, p := range []string{"/sys", "/proc/sys"} {
			if (dir == p || strings.HasPrefix(dir, p+"/")) && !strings.HasPrefix(opts, "ro,") && opts != "ro" {
				t.Errorf("QEMU sees %s mounted %s", dir, opts)
			}
		}
	}
	if _, ok := top["/proc/sys"]; !ok {
		t.Errorf("QEMU's mountinfo has no /proc/sys mount of its own:\n%s", b)
	}
	t.Logf("QEMU's mounts: /sys %s, /proc/sys %s, /sys/fs/cgroup %s", top["/sys"], top["/proc/sys"], top["/sys/fs/cgroup"])
}

func TestLibvirtGuestGetsPodNetwork(t *testing.T) {
	if os.Getenv("PODVISOR_LIBVIRT_TESTS") != "1" {
		t.Skip("set PODVISOR_LIBVIRT_TESTS=1 (after ci/libvirtd.sh start) to boot a VM on the pod network")
	}
	needRoot(t, "virsh", "qemu-img", "go")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	guestDir := os.Getenv("PODVISOR_GUEST_DIR")
	if guestDir == "" {
		guestDir = "/var/tmp/podvisor-test-guest"
	}
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run(filepath.Join(root, "ci", "build-guest.sh"), guestDir)
	// A fixed path: libvirt caches the capabilities of each emulator path.
	wrapper := "/var/tmp/podvisor-test-vmwrapper/podvisor-vmwrapper"
	build := exec.Command("go", "build", "-o", wrapper, "./cmd/podvisor-vmwrapper")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the wrapper: %v\n%s", err, out)
	}

	e := newEnv(t, envOpt{})
	ctx := context.Background()
	sb := newSandbox("e2ee2ee2ee2ee2ee2ee2")
	status, err := e.n.Setup(ctx, sb)
	if err != nil {
		t.Fatal(err)
	}
	sb.Network = status
	torn := false
	t.Cleanup(func() {
		if !torn {
			e.n.Teardown(ctx, sb)
		}
	})
	_, env, err := e.n.NICs(ctx, sb, &podtypes.Container{})
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	disk, console := filepath.Join(dir, "root.qcow2"), filepath.Join(dir, "console.log")
	run("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", filepath.Join(guestDir, "podvisor-test-guest.qcow2"), disk)
	name := fmt.Sprintf("pv-nettest-%d", os.Getpid())
	d := &libvirtxml.Domain{
		Type: "qemu", Name: name,
		Memory: &libvirtxml.DomainMemory{Value: 256, Unit: "MiB"},
		OS:     &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Type: "hvm", Machine: "pc"}},
		Devices: &libvirtxml.DomainDeviceList{
			Emulator: wrapper,
			Disks: []libvirtxml.DomainDisk{{
				Device: "disk",
				Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2"},
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: disk}},
				Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
			}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: console}},
			}},
		},
		QEMUCommandline: &libvirtxml.DomainQEMUCommandline{},
	}
	for k, v := range env {
		d.QEMUCommandline.Envs = append(d.QEMUCommandline.Envs, libvirtxml.DomainQEMUCommandlineEnv{Name: k, Value: v})
	}
	x, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	xmlPath := filepath.Join(dir, "domain.xml")
	if err := os.WriteFile(xmlPath, []byte(x), 0o644); err != nil {
		t.Fatal(err)
	}
	run("virsh", "-c", "qemu:///system", "create", xmlPath)
	t.Cleanup(func() { exec.Command("virsh", "-c", "qemu:///system", "destroy", name).Run() })

	// The guest prints its address once DHCP is done.
	ip := status.IPs()[0]
	deadline := time.Now().Add(180 * time.Second) // TCG on a shared 2-core machine
	for {
		log, _ := os.ReadFile(console)
		if bytes.Contains(log, []byte("PODVISOR-GUEST: ready")) {
			if !bytes.Contains(log, []byte("PODVISOR-GUEST: ip="+ip+"\n")) && !bytes.Contains(log, []byte("PODVISOR-GUEST: ip="+ip+"\r")) {
				t.Fatalf("the guest did not get the pod IP %s:\n%s", ip, log)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ready marker after 180s; console:\n%s", log)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// QEMU runs in the pod's namespace.
	pid := strings.TrimSpace(run("pgrep", "-f", "guest="+name))
	qns, err := os.Readlink("/proc/" + strings.Fields(pid)[0] + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var podIno string
	ns.WithNetNSPath(status.NetNS, func(ns.NetNS) error {
		podIno, _ = os.Readlink(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		return nil
	})
	if qns != podIno {
		t.Errorf("QEMU runs in %s, the pod namespace is %s", qns, podIno)
	}
	checkQEMUCaps(t, strings.Fields(pid)[0])
	checkQEMUMounts(t, strings.Fields(pid)[0])

	// Port 8080 of the guest, from inside the pod's namespace.
	var got []byte
	err = ns.WithNetNSPath(status.NetNS, func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "8080"), 30*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		got, err = io.ReadAll(c)
		return err
	})
	if err != nil || !strings.Contains(string(got), "podvisor-guest") {
		t.Fatalf("guest port 8080 from the pod namespace: %q, %v", got, err)
	}

	run("virsh", "-c", "qemu:///system", "destroy", name)
	torn = true
	if err := e.n.Teardown(ctx, sb); err != nil {
		t.Fatal(err)
	}
	e.checkGone(t, sb.ID, status.NetNS, ip)
}
