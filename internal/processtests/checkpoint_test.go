package processtests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/cgroups"
)

// counterScript counts once a second in a shell's memory, writing the
// count where exec reads it: a restored guest goes on counting, a booted
// one would start again at 1.
const counterScript = `#!/bin/sh\n(i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 1; done) &\necho user-data script ran\n`

// TestRealCheckpoint: a VM pod checkpointed through podvisor's CRI on real
// libvirt runs on; its archive restores as a new pod on the same podvisor
// and on a second one (its own state directory, network namespace and
// CNI network: another node), where the guest's counter goes on and the
// guest has the new pod's address, and its QEMU runs in the new pod's
// cgroup with the container's limits. A checkpoint onto a full file system,
// and truncated, corrupt and wrongly summed archives, fail with errors
// naming why, leave nothing and harm no VM. (make real-pod runs it.)
func TestRealCheckpoint(t *testing.T) {
	gate(t, "PODVISOR_REALPOD_TESTS")
	guest := filepath.Join(envOr("PODVISOR_GUEST_DIR", "/var/tmp/podvisor-test-guest"), "podvisor-test-guest.qcow2")
	if _, err := os.Stat(guest); err != nil {
		t.Fatalf("the test guest: %v (ci/build-guest.sh builds it)", err)
	}
	// Restored pods get a cgroup parent of their own, as kubelet gives a
	// new pod (registered first: removed after every pod is gone).
	cgParent := fmt.Sprintf("/podvisor-ckpt-%d", os.Getpid())
	t.Cleanup(func() { removeCgroupTree(t, cgParent) })
	a := newLibvirtNode(t, guest, nodeOpts{name: "cka", subnet: 78})
	b := newLibvirtNode(t, guest, nodeOpts{name: "ckb", subnet: 79})
	var vm vmPod
	var archive string
	var before int
	steps := []struct {
		name string
		f    func(t *testing.T)
	}{
		{"a counting guest boots", func(t *testing.T) {
			vm = a.runVM(t, "ckpt-vm", counterScript)
			a.waitReady(t, vm)
			for before < 3 {
				time.Sleep(time.Second)
				before = a.count(t, vm.ctr)
			}
		}},
		{"CheckpointContainer: the archive is written and the VM runs on, counting", func(t *testing.T) {
			archive = filepath.Join(a.dir, "checkpoints", "ckpt-vm.tar")
			if err := os.MkdirAll(filepath.Dir(archive), 0o700); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := a.checkpoint(vm.ctr, archive); err != nil {
				t.Fatalf("CheckpointContainer: %v", err)
			}
			fi, err := os.Stat(archive)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("checkpoint of a 256 MiB VM: %d bytes in %s", fi.Size(), time.Since(start).Round(time.Millisecond))
			a.wantRunningAndCounting(t, vm, before)
		}},
		{"a checkpoint onto a full file system fails saying so, leaves nothing, the VM runs on", func(t *testing.T) {
			a.checkDiskFull(t, vm, before)
		}},
		{"truncated, corrupt and wrongly summed archives are refused by name on the other node, which makes nothing", func(t *testing.T) {
			b.checkBadArchives(t, archive)
		}},
		{"RestorePod on the other node: the guest counts on with the new pod's address, QEMU in the new pod's cgroup", func(t *testing.T) {
			b.checkRestored(t, archive, "ckpt-copy", before, cgParent, a.cgroupLimits(t, "", vm.domain))
		}},
		{"RestorePod on the same node beside the original: both count on", func(t *testing.T) {
			a.checkRestored(t, archive, "ckpt-twin", before, cgParent, a.cgroupLimits(t, "", vm.domain))
			a.wantRunningAndCounting(t, vm, before)
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.f) {
			t.FailNow()
		}
	}
}

func longCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (n *libvirtNode) checkpoint(ctr, location string) error {
	_, err := n.d.Runtime.CheckpointContainer(longCtx(n.t), &runtimeapi.CheckpointContainerRequest{ContainerId: ctr, Location: location})
	return err
}

// count reads the guest's counter through exec.
func (n *libvirtNode) count(t *testing.T, ctr string) int {
	t.Helper()
	r, err := n.d.Runtime.ExecSync(longCtx(t), &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: []string{"cat", "/tmp/count"}, Timeout: 120})
	if err != nil {
		t.Fatalf("reading the guest's count: %v", err)
	}
	c, err := strconv.Atoi(strings.TrimSpace(string(r.Stdout)))
	if err != nil {
		t.Fatalf("the guest's count %q (stderr %q): %v", r.Stdout, r.Stderr, err)
	}
	return c
}

func (n *libvirtNode) wantRunningAndCounting(t *testing.T, vm vmPod, from int) {
	t.Helper()
	if st := n.status(t, vm.ctr, false).Status; st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("%s is %s: %s", vm.name, st.State, st.Message)
	}
	c1 := n.count(t, vm.ctr)
	time.Sleep(2 * time.Second)
	if c2 := n.count(t, vm.ctr); c1 < from || c2 <= c1 {
		t.Errorf("%s counts %d then %d, want on from %d", vm.name, c1, c2, from)
	}
}

func (n *libvirtNode) checkDiskFull(t *testing.T, vm vmPod, from int) {
	dir := filepath.Join(n.dir, "small")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", dir)
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	err := n.checkpoint(vm.ctr, filepath.Join(dir, "vm.tar"))
	if err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("checkpoint onto a 8 MiB tmpfs: %v, want an error saying there is no space", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the failed checkpoint left %d entries, e.g. %s", len(left), left[0].Name())
	}
	n.wantRunningAndCounting(t, vm, from)
}

func (n *libvirtNode) checkBadArchives(t *testing.T, archive string) {
	good, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-4096] ^= 0xff
	summed := append([]byte(nil), good...)
	i := strings.Index(string(summed[:8192]), `"sha256": "`) + len(`"sha256": "`)
	summed[i] = 'a' // another hex digit: the manifest stays valid, the sum is wrong
	if good[i] == 'a' {
		summed[i] = 'b'
	}
	for name, data := range map[string][]byte{"truncated": good[:len(good)/2], "corrupt": flipped, "wrongly summed": summed} {
		p := filepath.Join(n.dir, name+".tar")
		writeFile(t, p, string(data))
		_, err := n.restore(t, p, "bad-"+strings.ReplaceAll(name, " ", "-"), "")
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "member") {
			t.Errorf("RestorePod of a %s archive: %v, want InvalidArgument naming the member", name, err)
		}
	}
	r, err := n.d.Runtime.ListPodSandbox(longCtx(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(r.Items) != 0 {
		t.Errorf("after the refused restores: %d sandboxes, %v", len(r.GetItems()), err)
	}
	if left, _ := os.ReadDir(filepath.Join(n.dir, "state", "vms")); len(left) != 0 {
		t.Errorf("the refused restores left %d VM directories", len(left))
	}
}

func (n *libvirtNode) restore(t *testing.T, archive, name, cgroupParent string) (*runtimeapi.RestorePodResponse, error) {
	sb := &runtimeapi.PodSandboxConfig{
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: cgroupParent},
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: fmt.Sprintf("uid-%s-%d", name, os.Getpid())},
		Hostname:     name,
		LogDirectory: filepath.Join(n.dir, "logs", name),
		Annotations:  map[string]string{"kubernetes.io/target-runtime": "virtlet.cloud", "VirtletDiskDriver": "virtio"},
	}
	cc := &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "vm"}, Image: &runtimeapi.ImageSpec{Image: benchImage}, LogPath: "vm_0.log",
		Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 256 << 20}}}
	r, err := n.d.Runtime.RestorePod(longCtx(t), &runtimeapi.RestorePodRequest{CheckpointPath: archive, Config: sb, ContainerConfigs: []*runtimeapi.ContainerConfig{cc}})
	if err == nil {
		n.pods = append(n.pods, r.PodSandboxId)
	}
	return r, err
}

// checkRestored restores archive as pod name below cgroupParent and checks
// that it counts on from from, with the new pod's address, and that its
// QEMU runs in the new pod's cgroup with the limits the original had
// (same container config).
func (n *libvirtNode) checkRestored(t *testing.T, archive, name string, from int, cgroupParent string, limits cgroups.Limits) {
	parent := cgroupParent + "/pod-" + name
	makePodCgroup(t, parent)
	r, err := n.restore(t, archive, name, parent)
	if err != nil {
		t.Fatalf("RestorePod: %v", err)
	}
	if len(r.RestoredContainers) != 1 || r.RestoredContainers[0].Name != "vm" {
		t.Fatalf("restored %v", r.RestoredContainers)
	}
	ctr := r.RestoredContainers[0].ContainerId
	if st := n.status(t, ctr, false).Status; st.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("the restored container is %s, want CREATED", st.State)
	}
	if _, err := n.d.Runtime.StartContainer(longCtx(t), &runtimeapi.StartContainerRequest{ContainerId: ctr}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	n.wantRunningAndCounting(t, vmPod{name: name, ctr: ctr}, from)
	n.wantClockSet(t, ctr)
	dom := domainOf(t, n.status(t, ctr, true).Info["info"])
	path, err := cgroups.VMPath(parent, dom)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(qemuPID(t, dom))
	if err != nil {
		t.Fatal(err)
	}
	checkQEMUCgroups(t, pid, path)
	if got := n.cgroupLimits(t, parent, dom); got != limits {
		t.Errorf("the restored VM's cgroup %s has limits %+v, want the original's %+v", path, got, limits)
	}
	st, err := n.d.Runtime.PodSandboxStatus(longCtx(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: r.PodSandboxId})
	if err != nil {
		t.Fatal(err)
	}
	ip := st.Status.GetNetwork().GetIp()
	out, err := n.d.Runtime.ExecSync(longCtx(t), &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: []string{"ip", "-4", "-o", "addr", "show", "dev", "eth0"}, Timeout: 60})
	if err != nil || !strings.Contains(string(out.GetStdout()), "inet "+ip+"/") {
		t.Errorf("the restored guest's eth0: %q, %v; want the new pod's %s", out.GetStdout(), err, ip)
	}
	if got := n.ask(t, ip); got == "" {
		t.Errorf("the restored guest does not answer on its new address %s:8080", ip)
	}
}

// wantClockSet: the restored guest's clock was set through its agent; it
// would otherwise be behind by the time since the checkpoint (tens of
// seconds here).
func (n *libvirtNode) wantClockSet(t *testing.T, ctr string) {
	t.Helper()
	r, err := n.d.Runtime.ExecSync(longCtx(t), &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: []string{"date", "+%s"}, Timeout: 60})
	now := time.Now()
	if err != nil {
		t.Fatalf("reading the restored guest's clock: %v", err)
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(r.Stdout)), 10, 64)
	if err != nil {
		t.Fatalf("the restored guest's date %q (stderr %q): %v", r.Stdout, r.Stderr, err)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 10*time.Second || d < -10*time.Second {
		t.Errorf("the restored guest's clock is %s off the host's, want within 10 s (set through the agent)", d)
	}
}

// cgroupLimits are the limits of the VM cgroup of domain below parent
// ("": podvisor's default); a VM with a memory limit must have one there.
func (n *libvirtNode) cgroupLimits(t *testing.T, parent, domain string) cgroups.Limits {
	t.Helper()
	fs, err := cgroups.Detect()
	if err != nil {
		t.Fatal(err)
	}
	path, err := cgroups.VMPath(parent, domain)
	if err != nil {
		t.Fatal(err)
	}
	l, err := fs.Read(path)
	if err != nil || l.MemoryBytes < 256<<20 {
		t.Fatalf("the cgroup %s of VM %s: limits %+v, %v; want a memory limit of at least the container's 256 MiB", path, domain, l, err)
	}
	return l
}

// checkQEMUCgroups: every thread of QEMU pid is in the cgroup path in every
// hierarchy but devices (libvirt keeps its /machine/... there).
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

// makePodCgroup makes the pod cgroup parent in every hierarchy but
// devices, as kubelet does before it runs a pod (a new v1 cpuset gets its
// parent's CPUs and memory nodes).
func makePodCgroup(t *testing.T, parent string) {
	t.Helper()
	fs, err := cgroups.Detect()
	if err != nil {
		t.Fatal(err)
	}
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
}

// removeCgroupTree removes the cgroup dir and its children in every
// hierarchy (deepest first; an empty cgroup's files go with it).
func removeCgroupTree(t *testing.T, dir string) {
	fs, err := cgroups.Detect()
	if err != nil {
		t.Error(err)
		return
	}
	for _, h := range fs.Hierarchies {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(h.Mount, dir), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil {
				t.Errorf("removing the test's cgroup: %v", err)
			}
		}
	}
}
