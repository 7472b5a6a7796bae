package processtests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/internal/daemonproc"
)

// vmPod is one VM pod of TestRealPod.
type vmPod struct {
	name, pod, ctr, ip, domain string
	logPath                    string
	// extraIPs are the CRI's additional_ips (extra networks).
	extraIPs []string
}

// TestRealPod: VM pods through podvisor's CRI on real libvirt and QEMU with
// a real CNI network, the main job (make real-pod; ci/real-pod.sh demo
// shows it). The steps share the node and its VMs (a TCG boot takes tens of
// seconds); each is a subtest, and a failed one ends the test.
func TestRealPod(t *testing.T) {
	gate(t, "PODVISOR_REALPOD_TESTS")
	guest := filepath.Join(envOr("PODVISOR_GUEST_DIR", "/var/tmp/podvisor-test-guest"), "podvisor-test-guest.qcow2")
	if _, err := os.Stat(guest); err != nil {
		t.Fatalf("the test guest: %v (ci/build-guest.sh builds it)", err)
	}
	n := newLibvirtNode(t, guest, nodeOpts{name: "real", subnet: 77, httpImage: true, secondNet: true})
	var demo, hung, third vmPod
	steps := []struct {
		name string
		f    func(t *testing.T)
	}{
		{"the guest boots with cloud-init's hostname, the pod IP and user-data, and answers on the pod IP", func(t *testing.T) {
			demo = n.runVM(t, "demo-vm", "")
			log := n.waitReady(t, demo)
			for _, want := range []string{"PODVISOR-GUEST: hostname=demo-vm", "PODVISOR-GUEST: ip=" + demo.ip, "user-data script ran"} {
				if !strings.Contains(log, want) {
					t.Errorf("console lacks %q", want)
				}
			}
			if got := n.ask(t, demo.ip); got != "demo-vm" {
				t.Errorf("%s:8080 answered %q, want the guest's hostname demo-vm", demo.ip, got)
			}
		}},
		{"the state directory gives other local users nothing", func(t *testing.T) { n.checkModes(t) }},
		{"exec through the guest agent: output, stdin, exit codes", func(t *testing.T) { n.checkExec(t, demo) }},
		{"two more VMs, one ignoring ACPI, one with a second network (Multus's annotation)", func(t *testing.T) {
			hung = n.runVM(t, "vm-hung", `#!/bin/sh\nkillall acpid\necho acpid stopped\n`)
			third = n.runVMWith(t, "vm-three", "", map[string]string{"k8s.v1.cni.cncf.io/networks": "real-b"})
			if log := n.waitReady(t, hung); !strings.Contains(log, "acpid stopped") {
				t.Errorf("vm-hung's user-data did not run")
			}
			n.checkSecondNetwork(t, third)
		}},
		{"kill -9 of podvisor under three VMs: nothing lost, no VM restarted", func(t *testing.T) {
			n.checkSurvives(t, []vmPod{demo, hung, third}, n.d.Kill9Restart)
			if got := n.ask(t, demo.ip); got != "demo-vm" {
				t.Errorf("the pod IP answered %q after the restart, want demo-vm", got)
			}
		}},
		{"libvirtd restarted under the VMs: podvisor reconnects, no VM lost", func(t *testing.T) {
			n.checkSurvives(t, []vmPod{demo, hung, third}, func() { run(t, filepath.Join(daemonproc.Root(t), "ci", "libvirtd.sh"), "restart") })
			if got := n.ask(t, third.ip); got != "vm-three" {
				t.Errorf("vm-three answered %q after the libvirtd restart", got)
			}
		}},
		{"QEMU killed from outside: EXITED, non-zero, with a reason", func(t *testing.T) { n.checkKilled(t, demo) }},
		{"StopContainer of a guest that ignores ACPI: destroyed after the grace period", func(t *testing.T) { n.checkHungStop(t, hung) }},
		{"stop and remove every pod: no namespace, domain, file or veth left", func(t *testing.T) {
			n.checkCleanup(t, []vmPod{demo, hung, third})
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.f) {
			t.FailNow()
		}
	}
}

func (n *libvirtNode) runVM(t *testing.T, name, script string) vmPod {
	t.Helper()
	return n.runVMWith(t, name, script, nil)
}

// runVMWith is runVM with more pod annotations.
func (n *libvirtNode) runVMWith(t *testing.T, name, script string, ann map[string]string) vmPod {
	t.Helper()
	if script == "" {
		script = `#!/bin/sh\necho user-data script ran\n`
	}
	script = strings.ReplaceAll(script, `\n`, "\n")
	ctx := daemonproc.Ctx(t)
	logs := filepath.Join(n.dir, "logs", name)
	sb := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: fmt.Sprintf("uid-%s-%d", name, os.Getpid())},
		Hostname:     name,
		LogDirectory: logs,
		Annotations: map[string]string{"kubernetes.io/target-runtime": "virtlet.cloud", "VirtletDiskDriver": "virtio",
			"VirtletCloudInitUserDataScript": script},
		DnsConfig: &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"default.svc.cluster.local"}},
	}
	for k, v := range ann {
		sb.Annotations[k] = v
	}
	cc := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "vm"}, Image: &runtimeapi.ImageSpec{Image: benchImage}, LogPath: "vm_0.log",
		Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 256 << 20}},
	}
	rp, err := n.d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sb})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v", name, err)
	}
	n.pods = append(n.pods, rp.PodSandboxId)
	st, err := n.d.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: rp.PodSandboxId})
	if err != nil {
		t.Fatalf("PodSandboxStatus %s: %v", name, err)
	}
	rc, err := n.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: rp.PodSandboxId, Config: cc, SandboxConfig: sb})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", name, err)
	}
	if _, err := n.d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: rc.ContainerId}); err != nil {
		t.Fatalf("StartContainer %s: %v", name, err)
	}
	cs := n.status(t, rc.ContainerId, true)
	vm := vmPod{name: name, pod: rp.PodSandboxId, ctr: rc.ContainerId, ip: st.Status.GetNetwork().GetIp(),
		domain: domainOf(t, cs.Info["info"]), logPath: filepath.Join(logs, "vm_0.log")}
	for _, ip := range st.Status.GetNetwork().GetAdditionalIps() {
		vm.extraIPs = append(vm.extraIPs, ip.GetIp())
	}
	return vm
}

// checkSecondNetwork: a VM pod with one extra network has its address in
// the CRI's additional_ips, the guest configured both NICs from the
// cloud-init network-config (the agent prints one ip= line per NIC) and
// answers on both addresses from the node.
func (n *libvirtNode) checkSecondNetwork(t *testing.T, vm vmPod) {
	t.Helper()
	prefix := fmt.Sprintf("10.77.%d.", os.Getpid()%200+21)
	if len(vm.extraIPs) != 1 || !strings.HasPrefix(vm.extraIPs[0], prefix) {
		t.Fatalf("%s: additional_ips %v, want one address of the second network (%s0/24)", vm.name, vm.extraIPs, prefix)
	}
	log := n.waitReady(t, vm)
	for _, ip := range []string{vm.ip, vm.extraIPs[0]} {
		if !strings.Contains(log, "PODVISOR-GUEST: net=static ip="+ip) {
			t.Errorf("%s's console lacks \"net=static ip=%s\":\n%s", vm.name, ip, log)
		}
		if got := n.ask(t, ip); got != vm.name {
			t.Errorf("%s:8080 answered %q, want %s", ip, got, vm.name)
		}
	}
}

func (n *libvirtNode) status(t *testing.T, ctr string, verbose bool) *runtimeapi.ContainerStatusResponse {
	t.Helper()
	r, err := n.d.Runtime.ContainerStatus(daemonproc.Ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: ctr, Verbose: verbose})
	if err != nil {
		t.Fatalf("ContainerStatus %s: %v", ctr, err)
	}
	return r
}

// waitReady waits for the guest's ready marker and returns the console's
// text so far.
func (n *libvirtNode) waitReady(t *testing.T, vm vmPod) string {
	t.Helper()
	waitCRILog(t, vm.logPath, "PODVISOR-GUEST: ready", 5*time.Minute)
	data, _ := os.ReadFile(vm.logPath)
	return string(criText(data))
}

// ask returns what the guest answers on port 8080 of ip (its hostname),
// trying for a minute.
func (n *libvirtNode) ask(t *testing.T, ip string) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, _ := n.inNode("busybox", "nc", "-w", "3", ip, "8080").Output()
		if s := strings.TrimSpace(string(out)); s != "" {
			return s
		}
		if time.Now().After(deadline) {
			return ""
		}
		time.Sleep(time.Second)
	}
}

// checkModes: nothing under the state directory (but the KVM trial's
// directory, opened for an unprivileged QEMU inside it) is open to others.
func (n *libvirtNode) checkModes(t *testing.T) {
	state := filepath.Join(n.dir, "state")
	out := run(t, "find", state, "-path", filepath.Join(state, "kvm-probe"), "-prune", "-o",
		"!", "-type", "l", "!", "-type", "s", "-perm", "/o=rwx", "-printf", "%m %p\n")
	if strings.TrimSpace(out) != "" {
		t.Errorf("state files other local users may read or enter:\n%s", out)
	}
}

func (n *libvirtNode) checkExec(t *testing.T, vm vmPod) {
	ctx := daemonproc.Ctx(t)
	r, err := n.d.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: vm.ctr, Cmd: []string{"hostname"}, Timeout: 120})
	if err != nil || strings.TrimSpace(string(r.GetStdout())) != vm.name {
		t.Errorf("ExecSync hostname: %q, %v; want %s", r.GetStdout(), err, vm.name)
	}
	r, err = n.d.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: vm.ctr, Cmd: []string{"sh", "-c", "echo failing >&2; exit 7"}, Timeout: 120})
	if err != nil || r.ExitCode != 7 || !strings.Contains(string(r.Stderr), "failing") {
		t.Errorf("ExecSync of a command exiting 7: %+v, %v; want exit code 7 and its stderr", r, err)
	}
	// Streaming exec, as kubectl does it: the streaming server listens on
	// the node namespace's loopback, so crictl runs there.
	crictl := crictlPath(t)
	cmd := n.inNode(crictl, "--runtime-endpoint", "unix://"+n.d.Sock, "--timeout", "120s", "exec", "-i", vm.ctr, "sh", "-c", "cat; hostname")
	cmd.Stdin = strings.NewReader("from-stdin\n")
	out, err := cmd.Output()
	if err != nil || string(out) != "from-stdin\n"+vm.name+"\n" {
		t.Errorf("streaming exec -i: %q, %v; want from-stdin and %s", out, err, vm.name)
	}
	out, err = n.inNode(crictl, "--runtime-endpoint", "unix://"+n.d.Sock, "--timeout", "120s", "exec", vm.ctr, "sh", "-c", "exit 3").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "exit code 3") {
		t.Errorf("streaming exec of 'exit 3': %q, %v; want a failure naming exit code 3", out, err)
	}
}

func qemuPID(t *testing.T, domain string) string {
	t.Helper()
	// The CI run of 2026-12-04 22:32 read this file empty once, 2 s after a
	// restored VM's QEMU started and while it ran (cause not established;
	// three reruns passed): an empty read is retried for a while.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile("/run/libvirt/qemu/" + domain + ".pid")
		if err != nil {
			t.Fatalf("QEMU's PID of %s: %v", domain, err)
		}
		if pid := strings.TrimSpace(string(b)); pid != "" || time.Now().After(deadline) {
			return pid
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkSurvives runs disrupt and checks that every VM has the same QEMU
// process and start time and still runs, as podvisor sees it.
func (n *libvirtNode) checkSurvives(t *testing.T, vms []vmPod, disrupt func()) {
	pids, started := map[string]string{}, map[string]int64{}
	for _, vm := range vms {
		pids[vm.ctr], started[vm.ctr] = qemuPID(t, vm.domain), n.status(t, vm.ctr, false).Status.StartedAt
	}
	disrupt()
	for _, vm := range vms {
		if pid := qemuPID(t, vm.domain); pid != pids[vm.ctr] {
			t.Errorf("QEMU of %s is %s, was %s: the VM was restarted", vm.name, pid, pids[vm.ctr])
		}
		st := n.status(t, vm.ctr, false).Status
		if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING || st.StartedAt != started[vm.ctr] {
			t.Errorf("%s is %s started at %d, want running since %d", vm.name, st.State, st.StartedAt, started[vm.ctr])
		}
	}
}

func (n *libvirtNode) checkKilled(t *testing.T, vm vmPod) {
	pid, err := strconv.Atoi(qemuPID(t, vm.domain))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 QEMU %d: %v", pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := n.status(t, vm.ctr, false).Status
		if st.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			if st.ExitCode == 0 || st.Reason == "" {
				t.Errorf("a killed VM exited %d reason %q: want non-zero with a reason", st.ExitCode, st.Reason)
			}
			t.Logf("%s: exited %d %s: %s", vm.name, st.ExitCode, st.Reason, st.Message)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed VM is still %s after 30 s", st.State)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (n *libvirtNode) checkHungStop(t *testing.T, vm vmPod) {
	start := time.Now()
	if _, err := n.d.Runtime.StopContainer(daemonproc.Ctx(t), &runtimeapi.StopContainerRequest{ContainerId: vm.ctr, Timeout: 6}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	took := time.Since(start)
	st := n.status(t, vm.ctr, false).Status
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 || !strings.Contains(st.Message, "grace") {
		t.Errorf("vm-hung after stop: %s %d %q; want EXITED 137 after the grace period", st.State, st.ExitCode, st.Message)
	}
	if took < 5*time.Second {
		t.Errorf("destroyed after %s, before the 6 s grace period", took)
	}
}

func (n *libvirtNode) checkCleanup(t *testing.T, vms []vmPod) {
	ctx := daemonproc.Ctx(t)
	for _, vm := range vms {
		if _, err := n.d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: vm.ctr, Timeout: 120}); err != nil {
			t.Errorf("StopContainer %s: %v", vm.name, err)
		}
		if _, err := n.d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: vm.ctr}); err != nil {
			t.Errorf("RemoveContainer %s: %v", vm.name, err)
		}
	}
	n.removeAll()
	all, _ := exec.Command("virsh", "-q", "-c", "qemu:///system", "list", "--all", "--name").Output()
	for _, vm := range vms {
		if _, err := os.Stat("/run/netns/podvisor-" + vm.pod[:12]); err == nil {
			t.Errorf("the network namespace of %s is left", vm.name)
		}
		// Only this test's domains: other podvisors may share libvirtd.
		for _, d := range strings.Fields(string(all)) {
			if d == vm.domain {
				t.Errorf("domain %s of %s is left in libvirt", d, vm.name)
			}
		}
	}
	if left, _ := os.ReadDir(filepath.Join(n.dir, "state", "vms")); len(left) != 0 {
		t.Errorf("VM files (disks, drives) left: %d entries", len(left))
	}
	// host-local keeps one file per address it holds, on both networks.
	held, _ := filepath.Glob(filepath.Join(n.dir, "ipam", "*", "10.*"))
	if len(held) > 0 {
		t.Errorf("IPAM still holds %v", held)
	}
	if out, _ := n.inNode("ip", "-o", "link", "show", "type", "veth").Output(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("veth interfaces left in the node namespace:\n%s", out)
	}
}
