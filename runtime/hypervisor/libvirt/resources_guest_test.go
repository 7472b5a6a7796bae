package libvirt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podvisor/podvisor/runtime/annotations"
	"github.com/podvisor/podvisor/runtime/cgroups"
	"github.com/podvisor/podvisor/runtime/cloudinit"
	"github.com/podvisor/podvisor/runtime/domain"
	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/vmbuild"
)

// TestLibvirtVMInPodCgroupResized: a VM started through podvisor-vmwrapper
// with a cgroup (below a pod cgroup this test makes, as kubelet would)
// runs there with every QEMU thread, under the container's CPU quota and
// memory limit, while libvirt keeps only its devices cgroup; then it grows
// from 1 to 2 vCPUs and gives back 64 MiB, seen by the guest (nproc,
// MemTotal), with the same QEMU process, and shrinks back to 1 vCPU.
// Under KVM the vCPU is hot-plugged; under TCG both are present from boot,
// the guest boots with one online (the cloud-init bootcmd vmbuild adds)
// and the guest agent onlines and offlines the other
// (domain.GuestOnlinedVCPUs says why).
func TestLibvirtVMInPodCgroupResized(t *testing.T) {
	integration(t)
	if os.Geteuid() != 0 {
		t.Fatal("needs root (cgroups)")
	}
	fs, err := cgroups.Detect()
	if err != nil {
		t.Fatal(err)
	}
	h := newTestHypervisor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	name := fmt.Sprintf("podvisor-ci-cgroup-%d", os.Getpid())
	parent := fmt.Sprintf("/podvisor-it-%d/pod0c9e", os.Getpid())
	vmPath, err := cgroups.VMPath(parent, name)
	if err != nil {
		t.Fatal(err)
	}
	res := annotations.Resources{MemoryLimitBytes: 256 << 20, CPUQuota: 100000, CPUPeriod: 100000}
	limits := cgroups.Limits{CPUQuota: res.CPUQuota, CPUPeriod: res.CPUPeriod,
		MemoryBytes: res.MemoryLimitBytes + vmbuild.MemoryOverheadBytes(h.DomainType(), domain.DefaultTCGTranslationCacheMiB)}
	// The pod's cgroup in every hierarchy, as kubelet makes it.
	for _, h := range fs.Hierarchies {
		if strings.Contains(","+strings.Join(h.Controllers, ",")+",", ",devices,") {
			continue
		}
		dir := h.Mount
		for _, c := range strings.Split(strings.Trim(parent, "/"), "/") {
			up := dir
			dir = filepath.Join(dir, c)
			if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
				t.Fatal(err)
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if b, err := os.ReadFile(filepath.Join(up, f)); err == nil && !h.Unified {
					if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	if err := fs.Create(parent, cgroups.Limits{}); err != nil {
		t.Fatal(err)
	}
	if err := fs.Create(vmPath, limits); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-in first-out: the domain (buildTestDomain's) goes
	// before its cgroups.
	t.Cleanup(func() {
		for _, p := range []string{vmPath, parent, filepath.Dir(parent)} {
			if err := fs.Remove(p); err != nil {
				t.Errorf("removing the test's cgroups: %v", err)
			}
		}
	})
	x := testDomainWith(t, h, name, func(s *testDomainSpec) {
		s.agent, s.res, s.emulator, s.cgroup, s.maxVCPUs = true, &res, buildWrapper(t), vmPath, 2
		vm, err := annotations.Parse(nil, res, nil)
		if err != nil {
			t.Fatal(err)
		}
		if domain.GuestOnlinedVCPUs(h.DomainType(), vm, s.maxVCPUs) {
			// Under TCG both vCPUs are present from boot: the guest
			// takes the second offline, as vmbuild's drive asks.
			c, err := cloudinit.Generate(ctx, cloudinit.Input{PodName: name, PodNamespace: "default", Hostname: name, BootCmd: []string{vmbuild.GuestVCPUsBootCmd(vm.VCPUCount)}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			s.iso = filepath.Join(s.dir, "cloud-init.iso")
			if err := cloudinit.WriteISO(ctx, c, s.iso); err != nil {
				t.Fatal(err)
			}
		}
	})
	if _, err := h.Define(ctx, x); err != nil {
		t.Fatalf("Define: %v", err)
	}
	if err := h.Start(ctx, name); err != nil {
		t.Fatalf("Start: %v", err)
	}
	st, err := h.Status(ctx, name)
	if err != nil || st.PID == 0 {
		t.Fatalf("Status: %+v, %v", st, err)
	}
	checkQEMUCgroups(t, st.PID, vmPath)
	if got, err := fs.Read(vmPath); err != nil || got.CPUQuota != 100000 || got.CPUPeriod != 100000 || got.MemoryBytes != limits.MemoryBytes {
		t.Errorf("the VM cgroup's limits: %+v, %v; want quota 100000/100000 µs, memory %d", got, err, limits.MemoryBytes)
	}

	con, err := h.Console(ctx, name)
	if err != nil {
		t.Fatalf("Console: %v", err)
	}
	defer con.Close()
	readConsole(con).waitFor(t, "PODVISOR-GUEST: ready", bootDeadline)
	n0, mem0 := guestSize(t, h, name)
	if n0 != 1 {
		t.Errorf("the guest has %d CPUs; want 1 (the CPU limit, of at most 2)", n0)
	}
	size, err := h.Sizing(ctx, name)
	if err != nil || size.VCPUs != 1 || size.MaxVCPUs != 2 || size.MaxMemoryBytes != 256<<20 {
		t.Errorf("Sizing = %+v, %v; want 1 of 2 vCPUs, at most 256 MiB", size, err)
	}

	if err := h.SetVCPUs(ctx, name, 2); err != nil {
		t.Fatalf("SetVCPUs 2: %v", err)
	}
	if err := h.SetMemory(ctx, name, 192<<20); err != nil {
		t.Fatalf("SetMemory 192 MiB: %v", err)
	}
	waitGuest(t, "2 CPUs and 64 MiB less MemTotal", func() (bool, string) {
		n, mem := guestSize(t, h, name)
		return n == 2 && mem0-mem >= 60<<10 && mem0-mem <= 68<<10, fmt.Sprintf("nproc %d, MemTotal %d kB (was %d kB)", n, mem, mem0)
	})
	// The hot-plugged vCPU's thread is in the VM's cgroup too.
	checkQEMUCgroups(t, st.PID, vmPath)
	if err := h.SetVCPUs(ctx, name, 3); err == nil {
		t.Error("SetVCPUs 3 of at most 2 succeeded")
	}
	if err := h.SetVCPUs(ctx, name, 1); err != nil {
		// libvirt waits 5 s for the guest to eject the vCPU; a slow TCG
		// guest may take longer, and the unplug then completes on its own.
		if !errors.Is(err, errdefs.ErrUnavailable) {
			t.Fatalf("SetVCPUs 1 (unplug): %v", err)
		}
		t.Logf("SetVCPUs 1: %v; waiting for the guest", err)
	}
	waitGuest(t, "1 CPU again", func() (bool, string) {
		n, _ := guestSize(t, h, name)
		return n == 1, fmt.Sprintf("nproc %d", n)
	})
	if st2, err := h.Status(ctx, name); err != nil || st2.PID != st.PID {
		t.Errorf("after resizing: %+v, %v; want the same QEMU (PID %d)", st2, err, st.PID)
	}
}

// checkQEMUCgroups: every thread of QEMU is in path in every hierarchy but
// devices (libvirt's /machine/...).
func checkQEMUCgroups(t *testing.T, pid int, path string) {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/cgroup", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("QEMU's threads: %v, %v", tasks, err)
	}
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			parts := strings.SplitN(l, ":", 3)
			if len(parts) != 3 {
				continue
			}
			devices := strings.Contains(","+parts[1]+",", ",devices,")
			if in := parts[2] == path; in == devices {
				t.Errorf("%s: %q (want %s except for devices)", f, l, path)
			}
		}
	}
}

// guestSize is the guest's nproc and MemTotal (kB).
func guestSize(t *testing.T, h *Hypervisor, name string) (int, int64) {
	t.Helper()
	out := guestExec(t, h, name, "/bin/sh", "-c", "nproc; sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo")
	f := strings.Fields(out)
	if len(f) != 2 {
		t.Fatalf("nproc and MemTotal: %q", out)
	}
	n, _ := strconv.Atoi(f[0])
	mem, _ := strconv.ParseInt(f[1], 10, 64)
	return n, mem
}

// waitGuest polls ok until it holds (the guest onlines a hot-plugged vCPU
// within a second; the balloon takes memory as the guest gives it).
func waitGuest(t *testing.T, what string, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		done, state := ok()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest never showed %s: %s", what, state)
		}
		time.Sleep(2 * time.Second)
	}
}

// buildWrapper builds podvisor-vmwrapper (static, as it ships) where
// libvirt can execute it.
func buildWrapper(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "podvisor-vmwrapper")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/podvisor-vmwrapper")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building podvisor-vmwrapper: %v\n%s", err, b)
	}
	return out
}
