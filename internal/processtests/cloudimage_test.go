package processtests

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/internal/daemonproc"
	"github.com/podvisor/podvisor/runtime/cloudinit"
)

// cloudInitDone is what Debian's cloud-init prints on the console (its
// final stage's output goes to journal+console) when it has finished.
const cloudInitDone = "finished at"

// bootWithin is how long a boot to cloud-init finished may take: 45-55 s
// under TCG on an idle machine, four VMs share two busy cores here.
const bootWithin = 15 * time.Minute

// bootFailed are console lines of a boot that will not reach cloud-init:
// the initramfs's rescue shell, a kernel panic, an emergency shell.
var bootFailed = []string{"(initramfs) ", "Kernel panic", "You are in emergency mode"}

// TestCloudImage boots a real Debian 12 cloud image (ci/build-cloud-image.sh:
// the distribution's cloud-init, systemd, sshd, qemu-guest-agent) four times
// at once: one VM pod through podvisor's CRI on libvirt with CNI, checked
// the way a user would (ssh over the pod IP with the VirtletSSHKeys key,
// exec, ACPI stop), and the NoCloud v1, v2 and ConfigDrive "everything"
// drives of runtime/cloudinit's goldens in plain QEMU, checked through the
// image's qemu-guest-agent: the real cloud-init must apply what podvisor
// generates (make cloud-image-it).
func TestCloudImage(t *testing.T) {
	gate(t, "PODVISOR_CLOUDIMAGE_TESTS")
	image := filepath.Join(envOr("PODVISOR_CLOUDIMAGE_DIR", "/var/tmp/podvisor-cloud-image"), "podvisor-debian12-cloud.qcow2")
	if _, err := os.Stat(image); err != nil {
		t.Fatalf("the cloud image: %v (ci/build-cloud-image.sh builds it)", err)
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s: %v (ci/install-deps.sh installs it)", tool, err)
		}
	}
	start := time.Now()
	n := newLibvirtNode(t, image, nodeOpts{name: "cloud", subnet: 78, image: "podvisor/debian12-cloud"})
	vm := n.runCloudVM(t)
	// The goldens' plain QEMUs take the accelerator podvisor chose (its
	// KVM trial): -accel kvm on a host whose KVM cannot run stock kernels
	// hangs the guest.
	accel := accelOf(t, vm.domain)
	goldens := []*goldenVM{
		{name: "everything_nocloud", datasource: "DataSourceNoCloud"},
		{name: "everything_nocloud_v2", datasource: "DataSourceNoCloud"},
		{name: "everything_configdrive", datasource: "DataSourceConfigDrive"},
	}
	for _, g := range goldens {
		g.boot(t, image, accel)
	}
	t.Run("VM pod: cloud-init, ssh, files, growpart, DNS, exec, ACPI stop", func(t *testing.T) { n.checkCloudVM(t, vm) })
	for _, g := range goldens {
		t.Run("golden "+g.name, func(t *testing.T) { g.check(t) })
	}
	t.Logf("four boots of the cloud image (%s) checked in %s", accel, time.Since(start).Round(time.Second))
}

// accelOf is the QEMU accelerator of a running libvirt domain: kvm for
// <domain type='kvm'>, else tcg.
func accelOf(t *testing.T, domain string) string {
	t.Helper()
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(run(t, "virsh", "-q", "-c", "qemu:///system", "dumpxml", domain)); err != nil {
		t.Fatalf("the XML of %s: %v", domain, err)
	}
	if dom.Type == "kvm" {
		return "kvm"
	}
	return "tcg"
}

// cloudVM is the VM pod of TestCloudImage with the ssh key it was given.
type cloudVM struct {
	vmPod
	key  string
	opts []string
}

// The pod's cloud-config: write_files and runcmd the user sees applied.
const cloudVMUserData = `write_files:
- path: /etc/podvisor-cloudimage
  content: written by cloud-init
  permissions: "0640"
runcmd:
- [sh, -c, "echo runcmd ran as $(id -un) > /run/podvisor-runcmd"]
`

func (n *libvirtNode) runCloudVM(t *testing.T) cloudVM {
	t.Helper()
	key := filepath.Join(n.dir, "id_ed25519")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cloudimage-test", "-f", key)
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	name := "cloud-vm"
	logs := filepath.Join(n.dir, "logs", name)
	opts := []string{"ndots:5", "timeout:2"}
	sb := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: fmt.Sprintf("uid-%s-%d", name, os.Getpid())},
		Hostname:     name,
		LogDirectory: logs,
		Annotations: map[string]string{"kubernetes.io/target-runtime": "virtlet.cloud", "VirtletDiskDriver": "virtio",
			"VirtletSSHKeys": string(pub), "VirtletRootVolumeSize": "4Gi", "VirtletCloudInitUserData": cloudVMUserData},
		DnsConfig: &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"default.svc.cluster.local", "svc.cluster.local"}, Options: opts},
	}
	cc := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "vm"}, Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/podvisor/debian12-cloud"}, LogPath: "vm_0.log",
		Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 30}},
	}
	ctx := daemonproc.Ctx(t)
	rp, err := n.d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sb})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	n.pods = append(n.pods, rp.PodSandboxId)
	st, err := n.d.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: rp.PodSandboxId})
	if err != nil {
		t.Fatalf("PodSandboxStatus: %v", err)
	}
	rc, err := n.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: rp.PodSandboxId, Config: cc, SandboxConfig: sb})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := n.d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: rc.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	cs := n.status(t, rc.ContainerId, true)
	return cloudVM{vmPod: vmPod{name: name, pod: rp.PodSandboxId, ctr: rc.ContainerId, ip: st.Status.GetNetwork().GetIp(),
		domain: domainOf(t, cs.Info["info"]), logPath: filepath.Join(logs, "vm_0.log")}, key: key, opts: opts}
}

// ssh runs cmd as the image's default user over the pod IP, from the node's
// namespace (the CNI bridge's side), retrying while sshd is not up yet.
func (n *libvirtNode) ssh(t *testing.T, vm cloudVM, cmd string) string {
	t.Helper()
	deadline := until(t, 3*time.Minute)
	for {
		// Each try is bounded: a session that hangs must not outlive the
		// test's deadline.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		c := exec.CommandContext(ctx, "ip", "netns", "exec", n.ns, "ssh", "-i", vm.key,
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
			"-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "debian@"+vm.ip, cmd)
		var stdout, stderr strings.Builder
		c.Stdout, c.Stderr = &stdout, &stderr
		err := c.Run()
		cancel()
		if stderr.Len() > 0 {
			t.Logf("ssh %q: stderr: %s", cmd, strings.TrimSpace(stderr.String()))
		}
		if err == nil {
			return stdout.String()
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh debian@%s %q: %v: %s%s", vm.ip, cmd, err, stdout.String(), stderr.String())
		}
		time.Sleep(3 * time.Second)
	}
}

func (n *libvirtNode) checkCloudVM(t *testing.T, vm cloudVM) {
	defer func() {
		if t.Failed() {
			data, _ := os.ReadFile(vm.logPath)
			lines := strings.Split(string(criText(data)), "\n")
			t.Logf("the VM's console ends:\n%s", strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
	}()
	waitCRILog(t, vm.logPath, cloudInitDone, bootWithin, bootFailed...)
	if got := strings.TrimSpace(n.ssh(t, vm, "hostname")); got != vm.name {
		t.Errorf("ssh hostname: %q, want the pod's %q", got, vm.name)
	}
	checkResult(t, n.ssh(t, vm, "cat /run/cloud-init/result.json"), "DataSourceNoCloud")
	if got := n.ssh(t, vm, "sudo stat -c '%a %U' /etc/podvisor-cloudimage; sudo cat /etc/podvisor-cloudimage"); got != "640 root\nwritten by cloud-init" {
		t.Errorf("write_files: %q, want mode 640 and its content", got)
	}
	if got := n.ssh(t, vm, "cat /run/podvisor-runcmd"); got != "runcmd ran as root\n" {
		t.Errorf("runcmd: %q", got)
	}
	part, err := strconv.ParseInt(strings.TrimSpace(n.ssh(t, vm, "lsblk -bdno SIZE /dev/vda1")), 10, 64)
	if err != nil || part < 4<<30-64<<20 {
		t.Errorf("root partition /dev/vda1: %d bytes (%v): want it grown to about VirtletRootVolumeSize 4Gi", part, err)
	}
	fsSize, err := strconv.ParseInt(strings.TrimSpace(n.ssh(t, vm, "df -B1 --output=size / | tail -n1")), 10, 64)
	if err != nil || fsSize < 3<<30 {
		t.Errorf("root file system: %d bytes (%v): want resized past 3 GiB", fsSize, err)
	}
	resolv := n.ssh(t, vm, "cat /etc/resolv.conf")
	for _, want := range []string{"nameserver 10.96.0.10", "search default.svc.cluster.local svc.cluster.local", "options " + strings.Join(vm.opts, " ")} {
		if !strings.Contains(resolv, want) {
			t.Errorf("/etc/resolv.conf lacks %q:\n%s", want, resolv)
		}
	}
	ctx := daemonproc.Ctx(t)
	r, err := n.d.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: vm.ctr, Cmd: []string{"cat", "/etc/hostname"}, Timeout: 120})
	if err != nil || strings.TrimSpace(string(r.GetStdout())) != vm.name {
		t.Errorf("ExecSync cat /etc/hostname through qemu-guest-agent: %q, %v; want %s", r.GetStdout(), err, vm.name)
	}
	r, err = n.d.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: vm.ctr, Cmd: []string{"sh", "-c", "echo to-stderr >&2; exit 5"}, Timeout: 120})
	if err != nil || r.ExitCode != 5 || !strings.Contains(string(r.Stderr), "to-stderr") {
		t.Errorf("ExecSync exiting 5: %+v, %v", r, err)
	}
	// systemd's power-off under TCG takes a while: the call waits for it.
	stopCtx, cancel := context.WithDeadline(context.Background(), until(t, 4*time.Minute))
	defer cancel()
	if _, err := n.d.Runtime.StopContainer(stopCtx, &runtimeapi.StopContainerRequest{ContainerId: vm.ctr, Timeout: 180}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	st := n.status(t, vm.ctr, false).Status
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 0 {
		t.Errorf("after an ACPI stop: %s exit %d %q; want EXITED 0 (systemd powered off)", st.State, st.ExitCode, st.Message)
	}
}

// checkResult: cloud-init's result.json names the datasource and no error.
func checkResult(t *testing.T, data, datasource string) {
	t.Helper()
	var res struct {
		V1 struct {
			Datasource string `json:"datasource"`
			Errors     []any  `json:"errors"`
		} `json:"v1"`
	}
	if err := json.Unmarshal([]byte(data), &res); err != nil {
		t.Fatalf("cloud-init's result.json: %v: %q", err, data)
	}
	if !strings.Contains(res.V1.Datasource, datasource) || len(res.V1.Errors) != 0 {
		t.Errorf("cloud-init's result: datasource %q errors %v; want %s and no error", res.V1.Datasource, res.V1.Errors, datasource)
	}
}

// goldenVM is the cloud image booted in plain QEMU with one golden drive of
// runtime/cloudinit (byte for byte what Generate wrote), its NIC with the
// golden's MAC on a hub of its own, a 9p share for the golden's mount and
// the guest agent on a unix socket.
type goldenVM struct {
	name, datasource string
	dir              string
	exited           <-chan error
}

func (g *goldenVM) boot(t *testing.T, image, accel string) {
	t.Helper()
	g.dir = t.TempDir()
	c := goldenContents(t, filepath.Join(daemonproc.Root(t), "runtime", "cloudinit", "testdata", "golden", g.name))
	iso, root, share := filepath.Join(g.dir, "drive.iso"), filepath.Join(g.dir, "root.qcow2"), filepath.Join(g.dir, "share")
	if err := cloudinit.WriteISO(daemonproc.Ctx(t), c, iso); err != nil {
		t.Fatal(err)
	}
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image, root, "3G")
	if err := os.MkdirAll(share, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(share, "hello"), "from the 9p share\n")
	cmd := exec.Command("qemu-system-x86_64", "-machine", "pc", "-accel", accel, "-m", "1024", "-display", "none",
		"-serial", "file:"+filepath.Join(g.dir, "console.log"),
		"-drive", "file="+root+",if=virtio", "-drive", "file="+iso+",media=cdrom,readonly=on",
		"-netdev", "hubport,id=n0,hubid=0", "-device", "virtio-net-pci,netdev=n0,mac=0a:58:0a:f4:01:05",
		"-virtfs", "local,path="+share+",mount_tag=data,security_model=none",
		"-chardev", "socket,id=qga0,path="+filepath.Join(g.dir, "qga.sock")+",server=on,wait=off",
		"-device", "virtio-serial", "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0")
	out, err := os.Create(filepath.Join(g.dir, "qemu.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	cmd.Stdout, cmd.Stderr = out, out
	g.exited = startGroup(t, cmd)
}

// goldenContents reads a golden case's drive: every file but label and
// warnings, with the label file's volume label.
func goldenContents(t *testing.T, dir string) *cloudinit.Contents {
	t.Helper()
	label, err := os.ReadFile(filepath.Join(dir, "label"))
	if err != nil {
		t.Fatal(err)
	}
	c := &cloudinit.Contents{Label: strings.TrimSpace(string(label))}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "label" || rel == "warnings" {
			return nil
		}
		data, err := os.ReadFile(p)
		c.Files = append(c.Files, cloudinit.DriveFile{Path: filepath.ToSlash(rel), Data: data})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// goldenChecks: what the "everything" goldens ask of the guest, each a
// shell command through the guest agent and the text its output must hold.
var goldenChecks = []struct{ what, cmd, want string }{
	{"hostname from meta-data", "hostname", "vm\n"},
	{"static address on eth0 from the network config", "ip -4 -o addr show dev eth0", "inet 10.244.1.5/24"},
	{"eth0's MTU", "cat /sys/class/net/eth0/mtu", "1450\n"},
	{"the service route", "ip route show 10.96.0.0/12", "10.96.0.0/12 via 10.244.1.1"},
	{"DNS server", "cat /etc/resolv.conf", "nameserver 10.96.0.10"},
	{"DNS searches", "cat /etc/resolv.conf", "search ns.svc.cluster.local svc.cluster.local cluster.local"},
	{"DNS options", "cat /etc/resolv.conf", "options ndots:5"},
	{"write_files: a volume's secret file with its mode", "stat -c %a /etc/secret/token; cat /etc/secret/token", "400\nt0ken"},
	{"write_files: files from the data source", "cat /etc/motd; stat -c %a /etc/app/app.yaml", "hello guest\n600\n"},
	{"write_files: an executable", "/usr/local/bin/hi", "hi\n"},
	{"the container env file", "cat /etc/cloud/environment", "MY_VAR=42\n"},
	{"runcmd from source and annotation", "grep -x 'from-[a-z]*' /var/log/cloud-init-output.log", "from-source\nfrom-annotation\n"},
	{"users: cloudy with its key and sudo", "grep -c user1@example /home/cloudy/.ssh/authorized_keys; sudo -l -U cloudy | grep -c NOPASSWD", "1\n1\n"},
	{"users: fromsource with its shell", "getent passwd fromsource | cut -d: -f7", "/bin/sh\n"},
	{"timezone", "readlink /etc/localtime", "Europe/Berlin"},
	{"the 9p mount", "findmnt -no FSTYPE /data; cat /data/hello", "9p\nfrom the 9p share\n"},
}

func (g *goldenVM) check(t *testing.T) {
	defer func() {
		if t.Failed() {
			t.Logf("%s's console ends:\n%s", g.name, daemonproc.Tail(filepath.Join(g.dir, "console.log"), 60))
		}
	}()
	select {
	case err := <-g.exited:
		t.Fatalf("%s's QEMU exited (%v): %s", g.name, err, daemonproc.Tail(filepath.Join(g.dir, "qemu.log"), 10))
	default:
	}
	waitFile(t, filepath.Join(g.dir, "console.log"), cloudInitDone, bootWithin, bootFailed...)
	qga, err := dialQGA(filepath.Join(g.dir, "qga.sock"), until(t, 3*time.Minute))
	if err != nil {
		t.Fatalf("the image's qemu-guest-agent: %v", err)
	}
	defer qga.Close()
	res, _, _, err := qga.sh("cat /run/cloud-init/result.json")
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, g.datasource)
	for _, c := range goldenChecks {
		out, stderr, code, err := qga.sh(c.cmd)
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if !strings.Contains(out, c.want) {
			t.Errorf("%s: %q gave %q (exit %d, stderr %q), want %q", c.what, c.cmd, out, code, stderr, c.want)
		}
	}
	if out, _, _, err := qga.sh("cloud-init status --long"); err == nil {
		t.Logf("%s: %s", g.name, strings.TrimSpace(out))
	}
}
