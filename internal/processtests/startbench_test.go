package processtests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/internal/daemonproc"
	"github.com/podvisor/podvisor/runtime/network/vmenv"
)

// TestStartBench measures what podvisor adds on the way from the CRI call
// to a running guest (issue 20, P1 and P2), on real libvirt and QEMU, side
// by side in one run:
//
//   - P1: RunPodSandbox + CreateContainer + StartContainer until the domain
//     runs, against `virsh define` + `virsh start` of the same domain XML
//     with its disks and cloud-init drive made beforehand;
//   - P2: StartContainer until the test guest's ready marker is in the CRI
//     log, against plain QEMU started with libvirt's own command line for
//     the same domain (`virsh domxml-to-native`) until the marker is on its
//     serial console.
//
// ci/bench-start.sh sets PODVISOR_BENCH_START=1 (after starting libvirtd and
// building the test guest) and PODVISOR_BENCH_OUT, the Markdown file the
// results go to (docs/bench/start.md).
func TestStartBench(t *testing.T) {
	gate(t, "PODVISOR_BENCH_START")
	out := os.Getenv("PODVISOR_BENCH_OUT")
	guest := filepath.Join(envOr("PODVISOR_GUEST_DIR", "/var/tmp/podvisor-test-guest"), "podvisor-test-guest.qcow2")
	if _, err := os.Stat(guest); err != nil {
		t.Fatalf("the test guest: %v (ci/build-guest.sh builds it)", err)
	}
	// PODVISOR_BENCH_ROUNDS=1 for a quick try of the harness.
	rounds, bootRounds := 5, 5
	if os.Getenv("PODVISOR_BENCH_ROUNDS") == "1" {
		rounds, bootRounds = 1, 1
	}
	b := newLibvirtNode(t, guest, nodeOpts{name: "bench", subnet: 79})
	load0 := loadavg()

	var p1pv, p1raw []time.Duration
	var tmpl *benchDomain
	for i := 0; i < rounds; i++ {
		d, _, dom := b.podvisorStart(fmt.Sprintf("p1-%d", i), false)
		p1pv = append(p1pv, d)
		if tmpl == nil {
			tmpl = b.captureDomain(dom)
		}
		b.removeAll()
		p1raw = append(p1raw, b.rawStart(tmpl, fmt.Sprintf("pvbench-raw-%d", i)))
	}
	var p2pv, p2call, p2qemu []time.Duration
	for i := 0; i < bootRounds; i++ {
		d, call, _ := b.podvisorStart(fmt.Sprintf("p2-%d", i), true)
		p2pv, p2call = append(p2pv, d), append(p2call, call)
		b.removeAll()
		p2qemu = append(p2qemu, b.plainQEMUBoot(tmpl, i, false))
	}
	steps := b.stepMeans()
	report := startReport{
		rounds: rounds, bootRounds: bootRounds, load0: load0,
		p1pv: p1pv, p1raw: p1raw, p2pv: p2pv, p2call: p2call, p2qemu: p2qemu, steps: steps,
	}
	if os.Getenv("PODVISOR_BENCH_CLOUDIMAGE") == "1" {
		report.cloud = cloudBootRounds(t, bootRounds)
	}
	report.load1 = loadavg()
	md := report.markdown()
	t.Log("\n" + md)
	if out != "" {
		if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// cloudBootRounds is P2 for the Debian 12 cloud image of TestCloudImage
// (ci/build-cloud-image.sh): StartContainer until cloud-init's finished
// line in the CRI log, against plain QEMU with the same disks, devices and
// NIC MAC until the line is on its console, one after the other.
func cloudBootRounds(t *testing.T, rounds int) cloudRounds {
	image := filepath.Join(envOr("PODVISOR_CLOUDIMAGE_DIR", "/var/tmp/podvisor-cloud-image"), "podvisor-debian12-cloud.qcow2")
	if _, err := os.Stat(image); err != nil {
		t.Fatalf("the cloud image: %v (ci/build-cloud-image.sh builds it; PODVISOR_BENCH_CLOUDIMAGE=1 asks for it)", err)
	}
	c := newLibvirtNode(t, image, nodeOpts{name: "benchc", subnet: 80, image: "podvisor/debian12-cloud"})
	c.guest = cloudGuest
	_, _, dom := c.podvisorStart("p2c-tmpl", false)
	tmpl := c.captureDomain(dom)
	c.removeAll()
	var r cloudRounds
	for i := 0; i < rounds; i++ {
		d, call, dom := c.podvisorStart(fmt.Sprintf("p2c-%d", i), true)
		r.pv, r.pvCall = append(r.pv, d), append(r.pvCall, call)
		r.memcg = append(r.memcg, memcgFigures(t, qemuPID(t, dom)))
		c.removeAll()
		r.qemu = append(r.qemu, c.plainQEMUBoot(tmpl, 100+i, false))
		r.qemuDefaultTB = append(r.qemuDefaultTB, c.plainQEMUBoot(tmpl, 200+i, true))
	}
	return r
}

// cloudRounds is P2 for the cloud image: podvisor, plain QEMU with the
// domain's translation cache bound, plain QEMU with QEMU's own (1 GiB),
// and what podvisor's VM cgroup saw of memory in each round.
type cloudRounds struct {
	pv, pvCall, qemu, qemuDefaultTB []time.Duration
	memcg                           []string
}

// memcgFigures reads the cgroup v1 memory controller of a process: its
// limit, the most it used, how often it hit the limit (each a reclaim)
// and the page cache charged to it.
func memcgFigures(t *testing.T, pid string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatalf("QEMU's cgroups: %v", err)
	}
	var dir string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.SplitN(line, ":", 3); len(f) == 3 && slices.Contains(strings.Split(f[1], ","), "memory") {
			dir = filepath.Join("/sys/fs/cgroup/memory", f[2])
		}
	}
	if dir == "" {
		return "no memory cgroup"
	}
	read := func(name string) string {
		v, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(string(v))
	}
	mib := func(v string) string {
		var n int64
		if _, err := fmt.Sscan(v, &n); err != nil {
			return v
		}
		return fmt.Sprintf("%d MiB", n>>20)
	}
	cache := "?"
	for _, line := range strings.Split(read("memory.stat"), "\n") {
		if v, ok := strings.CutPrefix(line, "total_cache "); ok {
			cache = mib(v)
		}
	}
	return fmt.Sprintf("limit %s, max usage %s, limit hit %s times, page cache %s",
		mib(read("memory.limit_in_bytes")), mib(read("memory.max_usage_in_bytes")), read("memory.failcnt"), cache)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

// podvisorStart times a VM pod through the CRI: until StartContainer
// returned (the domain runs), or, with boot, until the guest's ready marker
// is in the CRI log, timed from StartContainer's call. It returns that
// duration, how long StartContainer itself took and the domain's name.
func (b *libvirtNode) podvisorStart(name string, boot bool) (took, call time.Duration, dom string) {
	t := b.t
	g := b.benchGuest()
	ctx := daemonproc.Ctx(t)
	logs := filepath.Join(b.dir, "logs", name)
	sb := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: "uid-" + name},
		Hostname:     name,
		LogDirectory: logs,
		Annotations:  map[string]string{"kubernetes.io/target-runtime": "virtlet.cloud", "VirtletDiskDriver": "virtio"},
	}
	cc := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "vm"}, Image: &runtimeapi.ImageSpec{Image: g.image}, LogPath: "vm_0.log",
		Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: g.memory}},
	}
	start := time.Now()
	rp, err := b.d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sb})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v", name, err)
	}
	b.pods = append(b.pods, rp.PodSandboxId)
	rc, err := b.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: rp.PodSandboxId, Config: cc, SandboxConfig: sb})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", name, err)
	}
	if boot {
		start = time.Now()
	}
	called := time.Now()
	if _, err := b.d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: rc.ContainerId}); err != nil {
		t.Fatalf("StartContainer %s: %v", name, err)
	}
	call = time.Since(called)
	if boot {
		waitCRILog(t, filepath.Join(logs, "vm_0.log"), g.marker, g.within, bootFailed...)
	}
	took = time.Since(start)
	// The boot may outlast ctx's 30 s: the status call gets its own.
	st, err := b.d.Runtime.ContainerStatus(daemonproc.Ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: rc.ContainerId, Verbose: true})
	if err != nil {
		t.Fatalf("ContainerStatus %s: %v", name, err)
	}
	return took, call, domainOf(t, st.Info["info"])
}

// benchGuest is what a bench VM boots: the image its pod names, its RAM,
// the console line that ends its boot and how long that may take.
type benchGuest struct {
	image  string
	memory int64
	marker string
	within time.Duration
}

var (
	testGuest = benchGuest{image: benchImage, memory: 256 << 20, marker: "PODVISOR-GUEST: ready", within: 5 * time.Minute}
	// cloudGuest is the Debian 12 cloud image of TestCloudImage, booted to
	// cloud-init's finished line.
	cloudGuest = benchGuest{image: "virtlet.cloud/podvisor/debian12-cloud", memory: 1 << 30, marker: cloudInitDone, within: bootWithin}
)

func (b *libvirtNode) benchGuest() benchGuest {
	if b.guest.image == "" {
		return testGuest
	}
	return b.guest
}

// domainOf is the domain name in a container's verbose status info.
func domainOf(t *testing.T, info string) string {
	t.Helper()
	var v struct {
		Domain string `json:"domain"`
	}
	if err := json.Unmarshal([]byte(info), &v); err != nil || v.Domain == "" {
		t.Fatalf("no domain in the container's verbose info %q: %v", info, err)
	}
	return v.Domain
}

// removeAll stops and removes every pod made so far.
func (b *libvirtNode) removeAll() {
	ctx := daemonproc.Ctx(b.t)
	for _, p := range b.pods {
		if _, err := b.d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p}); err != nil {
			b.t.Errorf("StopPodSandbox %s: %v", p, err)
		}
		if _, err := b.d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p}); err != nil {
			b.t.Errorf("RemovePodSandbox %s: %v", p, err)
		}
	}
	b.pods = nil
}

// waitCRILog waits for marker in the text of a CRI log file, whose lines
// carry the console's output in pieces (tag P) up to a line's end (tag F).
func waitCRILog(t *testing.T, path, marker string, within time.Duration, fails ...string) {
	t.Helper()
	waitText(t, path, marker, within, criText, fails...)
}

// criText is the console's text in a CRI log: the pieces (tag P) of each
// line up to its end (tag F).
func criText(b []byte) []byte {
	var text []byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		f := bytes.SplitN(l, []byte(" "), 4)
		if len(f) < 3 {
			continue
		}
		if len(f) == 4 {
			text = append(text, f[3]...)
		}
		if string(f[2]) == "F" {
			text = append(text, '\n')
		}
	}
	return text
}

func waitFile(t *testing.T, path, marker string, within time.Duration, fails ...string) {
	t.Helper()
	waitText(t, path, marker, within, func(b []byte) []byte { return b }, fails...)
}

// waitText waits for marker in text(the file's content) for within, or
// until the test's deadline (cleanupMargin before go test's -timeout); any
// of fails in the text ends the wait at once (a boot that cannot finish).
func waitText(t *testing.T, path, marker string, within time.Duration, text func([]byte) []byte, fails ...string) {
	t.Helper()
	start, deadline := time.Now(), until(t, within)
	for {
		data, _ := os.ReadFile(path)
		got := text(data)
		if bytes.Contains(got, []byte(marker)) {
			return
		}
		for _, f := range fails {
			if bytes.Contains(got, []byte(f)) {
				t.Fatalf("%q in %s after %s, waiting for %q; it ends:\n%s", f, path, time.Since(start).Round(time.Second), marker, daemonproc.Tail(path, 15))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q not in %s after %s; it ends:\n%s", marker, path, time.Since(start).Round(time.Second), daemonproc.Tail(path, 15))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// benchDomain is a podvisor domain's definition with copies of its root
// disk and cloud-init drive, the template of the raw runs.
type benchDomain struct {
	dom       libvirtxml.Domain
	root, iso string
	// mac is the pod NIC's (podvisor-vmwrapper's, named in the domain's
	// qemu:env): the baselines' NIC takes it, so the guest's network
	// config matches a NIC as it does through podvisor.
	mac string
}

// firstMAC is the first NIC's MAC in the wrapper's environment of dom.
func firstMAC(dom *libvirtxml.Domain) string {
	if dom.QEMUCommandline == nil {
		return ""
	}
	for _, e := range dom.QEMUCommandline.Envs {
		if e.Name != vmenv.EnvNICs {
			continue
		}
		if nics, err := vmenv.DecodeNICs(e.Value); err == nil && len(nics) > 0 {
			return nics[0].MAC.String()
		}
	}
	return ""
}

// captureDomain keeps the running domain's inactive definition and copies
// of its disks, before the pod is removed.
func (b *libvirtNode) captureDomain(name string) *benchDomain {
	t := b.t
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(run(t, "virsh", "-q", "dumpxml", "--inactive", name)); err != nil {
		t.Fatalf("parsing the XML of %s: %v", name, err)
	}
	bd := &benchDomain{root: filepath.Join(b.dir, "raw-root.qcow2"), iso: filepath.Join(b.dir, "raw-cloudinit.iso")}
	for _, d := range dom.Devices.Disks {
		if d.Source == nil || d.Source.File == nil {
			continue
		}
		dst := bd.root
		if d.Driver != nil && d.Driver.Type == "raw" {
			dst = bd.iso
		}
		run(t, "cp", "--sparse=always", d.Source.File.File, dst)
	}
	bd.dom = dom
	bd.mac = firstMAC(&dom)
	return bd
}

// rawDomain is the template as a domain of its own: name, no UUID or
// metadata, disks at copies made under dir, the console in dir, QEMU itself
// as the emulator and libvirt's user-mode NIC in place of podvisor's tap
// (podvisor-vmwrapper's NIC needs the pod's network namespace).
func (b *libvirtNode) rawDomain(tmpl *benchDomain, name string) (string, string) {
	t := b.t
	dir := filepath.Join(b.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	root, iso := filepath.Join(dir, "root.qcow2"), filepath.Join(dir, "cloudinit.iso")
	run(t, "cp", "--sparse=always", tmpl.root, root)
	run(t, "cp", tmpl.iso, iso)
	var dom libvirtxml.Domain
	s, err := tmpl.dom.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := dom.Unmarshal(s); err != nil {
		t.Fatal(err)
	}
	dom.Name, dom.UUID, dom.Metadata, dom.Title = name, "", nil, ""
	dom.QEMUCommandline = nil
	dom.Devices.Emulator = "/usr/bin/qemu-system-x86_64"
	for i, d := range dom.Devices.Disks {
		if d.Source == nil || d.Source.File == nil {
			continue
		}
		if d.Driver != nil && d.Driver.Type == "raw" {
			dom.Devices.Disks[i].Source.File.File = iso
		} else {
			dom.Devices.Disks[i].Source.File.File = root
		}
	}
	console := filepath.Join(dir, "console.log")
	for i := range dom.Devices.Serials {
		s := &dom.Devices.Serials[i]
		s.Source = &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: console}}
		s.Log = nil
	}
	for i := range dom.Devices.Channels {
		dom.Devices.Channels[i].Source = &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind"}}
	}
	dom.Devices.Consoles = nil
	// The display's socket was in the pod's VM directory, gone with it.
	for _, g := range dom.Devices.Graphics {
		if g.VNC == nil {
			continue
		}
		g.VNC.Socket = filepath.Join(dir, "vnc.sock")
		for _, l := range g.VNC.Listeners {
			if l.Socket != nil {
				l.Socket.Socket = g.VNC.Socket
			}
		}
	}
	nic := libvirtxml.DomainInterface{
		Source: &libvirtxml.DomainInterfaceSource{User: &libvirtxml.DomainInterfaceSourceUser{}},
		Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
	}
	if tmpl.mac != "" {
		nic.MAC = &libvirtxml.DomainInterfaceMAC{Address: tmpl.mac}
	}
	dom.Devices.Interfaces = []libvirtxml.DomainInterface{nic}
	out, err := dom.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "domain.xml")
	writeFile(t, path, out)
	return path, console
}

// rawStart times virsh define + virsh start of the template as a domain of
// its own, disks copied beforehand; the domain is removed afterwards.
func (b *libvirtNode) rawStart(tmpl *benchDomain, name string) time.Duration {
	xmlPath, _ := b.rawDomain(tmpl, name)
	start := time.Now()
	run(b.t, "virsh", "-q", "define", xmlPath)
	// A failed start must not leave the domain defined for the next run.
	b.t.Cleanup(func() {
		_ = exec.Command("virsh", "-q", "destroy", name).Run()
		_ = exec.Command("virsh", "-q", "undefine", name).Run()
	})
	run(b.t, "virsh", "-q", "start", name)
	took := time.Since(start)
	_ = exec.Command("virsh", "-q", "destroy", name).Run()
	run(b.t, "virsh", "-q", "undefine", name)
	return took
}

// plainQEMUBoot runs QEMU itself with the raw domain's machine, memory,
// vCPUs, disks and devices (libvirt's own command line, from virsh
// domxml-to-native, needs libvirt's per-domain files), its serial console
// to a file, and times it until the guest's ready marker. defaultTB leaves
// out the domain's translation cache bound, for QEMU's own.
func (b *libvirtNode) plainQEMUBoot(tmpl *benchDomain, i int, defaultTB bool) time.Duration {
	t := b.t
	xmlPath, console := b.rawDomain(tmpl, fmt.Sprintf("pvbench-qemu-%d", i))
	var dom libvirtxml.Domain
	data, err := os.ReadFile(xmlPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := dom.Unmarshal(string(data)); err != nil {
		t.Fatal(err)
	}
	if defaultTB && dom.Features != nil {
		dom.Features.TCG = nil
	}
	argv := qemuArgv(&dom, console)
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	exited := startGroup(t, cmd)
	defer func() { _ = cmd.Process.Kill() }()
	g := b.benchGuest()
	deadline := until(t, g.within)
	for {
		data, _ := os.ReadFile(console)
		if bytes.Contains(data, []byte(g.marker)) {
			return time.Since(start)
		}
		select {
		case err := <-exited:
			t.Fatalf("plain QEMU exited (%v) before the guest was ready: %s\nargv: %s", err, stderr.String(), strings.Join(argv, " "))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("plain QEMU: no %q in %s after %s; it ends:\n%s", g.marker, console, time.Since(start).Round(time.Second), daemonproc.Tail(console, 15))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stepMeans reads podvisor's step histograms (podvisor_vm_step_duration_
// seconds) and returns each step's mean over the run.
func (b *libvirtNode) stepMeans() map[string]time.Duration {
	t := b.t
	body := run(t, "ip", "netns", "exec", b.ns, "busybox", "wget", "-q", "-O-", "http://"+b.metrics+"/metrics")
	sums, counts := map[string]float64{}, map[string]float64{}
	for _, l := range strings.Split(body, "\n") {
		var step string
		var v float64
		if _, err := fmt.Sscanf(l, `podvisor_vm_step_duration_seconds_sum{step=%q} %g`, &step, &v); err == nil {
			sums[step] = v
		}
		if _, err := fmt.Sscanf(l, `podvisor_vm_step_duration_seconds_count{step=%q} %g`, &step, &v); err == nil {
			counts[step] = v
		}
	}
	means := map[string]time.Duration{}
	for s, n := range counts {
		if n > 0 {
			means[s] = time.Duration(sums[s] / n * float64(time.Second))
		}
	}
	if len(means) == 0 {
		t.Fatalf("no podvisor_vm_step_duration_seconds in the metrics:\n%s", body)
	}
	return means
}

type startReport struct {
	rounds, bootRounds int
	load0, load1       string
	p1pv, p1raw        []time.Duration
	p2pv, p2qemu       []time.Duration
	// p2call: how long StartContainer took in each P2 round.
	p2call []time.Duration
	// cloud: P2 for the cloud image (empty when left out).
	cloud cloudRounds
	steps map[string]time.Duration
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// minus is a[i]-b[i] for each round.
func minus(a, b []time.Duration) []time.Duration {
	d := make([]time.Duration, len(a))
	for i := range a {
		d[i] = a[i] - b[i]
	}
	return d
}

func secs(d []time.Duration) string {
	var f []string
	for _, x := range d {
		f = append(f, fmt.Sprintf("%.3f", x.Seconds()))
	}
	return strings.Join(f, ", ")
}

func verdict(ratio, goal float64) string {
	if ratio <= goal {
		return "met"
	}
	return "missed"
}

func (r startReport) markdown() string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# VM start: podvisor's CRI path against raw libvirt and plain QEMU\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (`ci/bench-start.sh`, `internal/processtests` TestStartBench) on %s, %s, %d cores, TCG (no usable KVM). Load average %s at the start, %s at the end. Both sides of each ratio ran interleaved in the same run.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04Z"), host, numCPU(), r.load0, r.load1)
	m1pv, m1raw := median(r.p1pv), median(r.p1raw)
	m2pv, m2q := median(r.p2pv), median(r.p2qemu)
	q1, q2 := m1pv.Seconds()/m1raw.Seconds(), m2pv.Seconds()/m2q.Seconds()
	fmt.Fprintf(&b, "| | podvisor (median) | baseline (median) | ratio | goal | |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| P1 CRI path: RunPodSandbox + CreateContainer + StartContainer, until the domain runs; baseline `virsh define` + `virsh start` of the same XML, disks made beforehand | %.3f s | %.3f s | %.2f× | ≤ 1.10× | %s |\n", m1pv.Seconds(), m1raw.Seconds(), q1, verdict(q1, 1.10))
	fmt.Fprintf(&b, "| P2 boot: StartContainer until the test guest's ready marker is in the CRI log; baseline QEMU itself with the domain's machine, memory, vCPUs, translation cache bound, disks and devices until the marker is on its serial console | %.3f s | %.3f s | %.2f× | ≤ 1.05× | %s |\n", m2pv.Seconds(), m2q.Seconds(), q2, verdict(q2, 1.05))
	afterRow := func(what string, total, call []time.Duration, base time.Duration) {
		m := median(minus(total, call))
		fmt.Fprintf(&b, "| %s, from StartContainer's return (libvirt's start of the domain, the call P1 measures against `virsh start`, taken out): the guest's own boot | %.3f s | %.3f s | %.2f× | | |\n", what, m.Seconds(), base.Seconds(), m.Seconds()/base.Seconds())
	}
	afterRow("P2 boot, test guest", r.p2pv, r.p2call, m2q)
	if c := r.cloud; len(c.pv) > 0 {
		m2c, m2cq, m2cd := median(c.pv), median(c.qemu), median(c.qemuDefaultTB)
		q, qd := m2c.Seconds()/m2cq.Seconds(), m2c.Seconds()/m2cd.Seconds()
		fmt.Fprintf(&b, "| P2 boot, real cloud image: StartContainer until Debian 12's own cloud-init reports finished on the console (the cloud image of `make test`, 1 GiB); baseline QEMU itself with the domain's disks, devices, translation cache bound and the pod NIC's MAC | %.3f s | %.3f s | %.2f× | ≤ 1.05× | %s |\n", m2c.Seconds(), m2cq.Seconds(), q, verdict(q, 1.05))
		fmt.Fprintf(&b, "| the same, baseline with QEMU's own translation cache (1 GiB) instead of the domain's bound: what the bound costs | %.3f s | %.3f s | %.2f× | | |\n", m2c.Seconds(), m2cd.Seconds(), qd)
		afterRow("P2 boot, cloud image", c.pv, c.pvCall, m2cq)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "Raw numbers (seconds):\n\n- P1 podvisor (%d rounds): %s\n- P1 virsh define + start: %s\n- P2 podvisor (%d rounds): %s\n- P2 podvisor, of which StartContainer: %s\n- P2 plain QEMU: %s\n",
		r.rounds, secs(r.p1pv), secs(r.p1raw), r.bootRounds, secs(r.p2pv), secs(r.p2call), secs(r.p2qemu))
	if c := r.cloud; len(c.pv) > 0 {
		fmt.Fprintf(&b, "- P2 cloud image, podvisor: %s\n- P2 cloud image, podvisor, of which StartContainer: %s\n- P2 cloud image, plain QEMU: %s\n- P2 cloud image, plain QEMU with QEMU's own translation cache: %s\n", secs(c.pv), secs(c.pvCall), secs(c.qemu), secs(c.qemuDefaultTB))
		for i, m := range c.memcg {
			fmt.Fprintf(&b, "- P2 cloud image, podvisor round %d, the VM's memory cgroup at the end of the boot: %s\n", i+1, m)
		}
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "podvisor's steps (mean over every pod of the run, from `podvisor_vm_step_duration_seconds`):\n\n| step | mean |\n|---|---|\n")
	for _, s := range []string{"network", "assemble", "overlay", "cloudinit", "define", "start"} {
		fmt.Fprintf(&b, "| %s | %.3f s |\n", s, r.steps[s].Seconds())
	}
	b.WriteString("\nWhere the time goes: `start` (libvirt starting QEMU) and `define` are the hypervisor's, the same calls the P1 baseline makes; podvisor's own steps (`network`, `assemble`) are tens of milliseconds. A first round well above the others is the run's first define of a domain whose emulator is podvisor-vmwrapper: libvirt probes an emulator binary's capabilities the first time a domain names it (after `make build`, a new binary); the medians leave it out. P2's podvisor side holds that start too (StartContainer runs it, with the console attached before the guest's first instruction), and plain QEMU's side has no libvirt: the rows \"from StartContainer's return\" take it out, leaving the guest's own boot against QEMU's.\n")
	b.WriteString("\nThe baselines differ from podvisor's domain in what only podvisor can do: QEMU is started directly instead of through podvisor-vmwrapper, and the NIC is libvirt's user-mode NIC instead of the pod's tap in its network namespace (the CNI ADD is podvisor's `network` step); libvirt's own additions, the VNC server on the pod's unix socket, the monitor socket and QEMU's seccomp sandbox, are left out of plain QEMU.\n")
	b.WriteString("\nP4, a containerDisk pull from a registry against `skopeo copy` of the same image, is in [images.md](images.md) (`ci/bench-images.sh`, the same `make bench`); P5, 110 pods with kubelet's relist pattern, in [relist.md](relist.md).\n")
	return b.String()
}

func numCPU() int { return runtime.NumCPU() }

// tcgAccel is QEMU's -accel for the domain's <tcg><tb-cache> (libvirt's
// unit is KiB unless named; QEMU's tb-size is in MiB).
func tcgAccel(dom *libvirtxml.Domain) string {
	if dom.Features == nil || dom.Features.TCG == nil || dom.Features.TCG.TBCache == nil {
		return "tcg"
	}
	c := dom.Features.TCG.TBCache
	mib := c.Size
	switch c.Unit {
	case "", "KiB", "k", "K":
		mib = c.Size >> 10
	case "GiB", "G", "g":
		mib = c.Size << 10
	}
	return fmt.Sprintf("tcg,tb-size=%d", mib)
}

// qemuArgv is a QEMU command line for dom's devices: TCG, the machine type
// libvirt chose, memory and vCPUs, each file disk on its bus, serial to
// console, a user-mode virtio NIC, the guest agent's port, the USB tablet,
// the balloon and the RNG.
func qemuArgv(dom *libvirtxml.Domain, console string) []string {
	machine := "pc"
	if dom.OS != nil && dom.OS.Type != nil && dom.OS.Type.Machine != "" {
		machine = dom.OS.Type.Machine
	}
	mem := uint(256 << 10)
	if dom.Memory != nil {
		mem = dom.Memory.Value
	}
	cpus := uint(1)
	if dom.VCPU != nil {
		cpus = dom.VCPU.Value
	}
	argv := []string{"/usr/bin/qemu-system-x86_64", "-name", dom.Name, "-machine", machine, "-accel", tcgAccel(dom),
		"-m", fmt.Sprintf("%dM", mem/1024), "-smp", fmt.Sprint(cpus), "-nodefaults", "-no-user-config",
		"-display", "none", "-vga", "std", "-serial", "file:" + console}
	scsi := false
	for i, d := range dom.Devices.Disks {
		if d.Source == nil || d.Source.File == nil {
			continue
		}
		format := "raw"
		if d.Driver != nil && d.Driver.Type != "" {
			format = d.Driver.Type
		}
		drive := fmt.Sprintf("file=%s,format=%s,if=none,id=d%d", d.Source.File.File, format, i)
		if d.ReadOnly != nil {
			drive += ",readonly=on"
		}
		argv = append(argv, "-drive", drive)
		if d.Target != nil && d.Target.Bus == "scsi" {
			if !scsi {
				argv, scsi = append(argv, "-device", "virtio-scsi-pci,id=scsi0"), true
			}
			argv = append(argv, "-device", fmt.Sprintf("scsi-hd,drive=d%d,bus=scsi0.0", i))
		} else {
			argv = append(argv, "-device", fmt.Sprintf("virtio-blk-pci,drive=d%d", i))
		}
	}
	nic := "virtio-net-pci,netdev=n0"
	if len(dom.Devices.Interfaces) > 0 && dom.Devices.Interfaces[0].MAC != nil {
		nic += ",mac=" + dom.Devices.Interfaces[0].MAC.Address
	}
	// The guest agent's port, as libvirt gives it (the cloud image starts
	// its agent when the port appears).
	serial := false
	for i, c := range dom.Devices.Channels {
		if c.Target == nil || c.Target.VirtIO == nil {
			continue
		}
		if !serial {
			argv, serial = append(argv, "-device", "virtio-serial-pci"), true
		}
		argv = append(argv, "-chardev", fmt.Sprintf("socket,id=ch%d,path=%s,server=on,wait=off", i, filepath.Join(filepath.Dir(console), fmt.Sprintf("channel%d.sock", i))),
			"-device", fmt.Sprintf("virtserialport,chardev=ch%d,name=%s", i, c.Target.VirtIO.Name))
	}
	// The pointer VNC users get: a USB tablet on its own UHCI controller,
	// which the guest's USB driver polls.
	for _, in := range dom.Devices.Inputs {
		if in.Type == "tablet" && in.Bus == "usb" {
			argv = append(argv, "-device", "piix3-usb-uhci,id=usb", "-device", "usb-tablet,bus=usb.0")
			break
		}
	}
	return append(argv, "-netdev", "user,id=n0,restrict=on", "-device", nic,
		"-device", "virtio-balloon-pci", "-object", "rng-random,id=rng0,filename=/dev/urandom",
		"-device", "virtio-rng-pci,rng=rng0")
}
