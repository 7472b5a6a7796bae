package scalebench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/internal/daemonproc"
)

// TestRelist drives bin/podvisor --hypervisor sim with kubelet's pattern on
// a full node (PODVISOR_RELIST_PODS, 110 by make bench: kubelet's default
// pod limit): every second the PLEG relists (ListPodSandbox and
// ListContainers), and each pod's worker syncs it (PodSandboxStatus and
// ContainerStatus of its VM). It measures one relist and one sync of every
// pod, and the daemon's CPU time per relist, as the share of a core that
// relisting every second costs. Results go to PODVISOR_RELIST_OUT
// (docs/bench/relist.md).
func TestRelist(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PODVISOR_RELIST_PODS"))
	if n == 0 {
		t.Skip("set PODVISOR_RELIST_PODS (make bench) to run the relist measurement")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "img.raw")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tr"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tr", "t.yaml"), []byte("translations:\n- name: img\n  url: file://"+img+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "p.sock")
	d := daemonproc.Start(t, daemonproc.Bin(t, "podvisor"), sock, filepath.Join(dir, "podvisor.log"),
		"--hypervisor", "sim", "--listen", "unix://"+sock, "--state-dir", filepath.Join(dir, "state"),
		"--image-translations-dir", filepath.Join(dir, "tr"), "--log-level", "warn", "--metrics-addr=")
	ctx := daemonproc.Ctx(t)
	if _, err := d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/img"}}); err != nil {
		t.Fatal(err)
	}
	pods := startPods(t, d, n)

	const rounds = 200
	var relist, sync []time.Duration
	cpu0 := cpuTime(t, d.PID())
	for i := 0; i < rounds; i++ {
		start := time.Now()
		sbs, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err != nil || len(sbs.Items) != n {
			t.Fatalf("ListPodSandbox: %d, %v", len(sbs.GetItems()), err)
		}
		cs, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil || len(cs.Containers) != n {
			t.Fatalf("ListContainers: %d, %v", len(cs.GetContainers()), err)
		}
		relist = append(relist, time.Since(start))
	}
	relistCPU := (cpuTime(t, d.PID()) - cpu0) / rounds
	cpu0 = cpuTime(t, d.PID())
	for i := 0; i < rounds/10; i++ {
		start := time.Now()
		for _, p := range pods {
			if _, err := d.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p[0]}); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: p[1]}); err != nil {
				t.Fatal(err)
			}
		}
		sync = append(sync, time.Since(start))
	}
	syncCPU := (cpuTime(t, d.PID()) - cpu0) / (rounds / 10)
	report := fmt.Sprintf(`# kubelet's relist on a full node (simulated hypervisor)

%s, %d cores; measured by internal/scalebench TestRelist (make bench):
bin/podvisor --hypervisor sim as its own process with %d running VM pods
carrying kubelet's labels and annotations, driven over its CRI socket as
kubelet drives it.

| what | p50 | p99 | daemon CPU per round | share of a core at kubelet's rate |
|---|---|---|---|---|
| relist: ListPodSandbox + ListContainers (%d rounds) | %s | %s | %s | %.2f %% (once a second) |
| every pod's sync: PodSandboxStatus + ContainerStatus of each (%d rounds) | %s | %s | %s | %.2f %% (each pod every 10 s) |

The relist's latency includes the client's decoding; the daemon's CPU time is
read from /proc/<pid>/stat around the rounds.
`, time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtimeNumCPU(), n,
		rounds, percentile(relist, 0.5).Round(10*time.Microsecond), percentile(relist, 0.99).Round(10*time.Microsecond),
		relistCPU.Round(10*time.Microsecond), 100*relistCPU.Seconds(),
		rounds/10, percentile(sync, 0.5).Round(10*time.Microsecond), percentile(sync, 0.99).Round(10*time.Microsecond),
		syncCPU.Round(10*time.Microsecond), 100*syncCPU.Seconds()/10)
	t.Log("\n" + report)
	if out := os.Getenv("PODVISOR_RELIST_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// startPods runs n VM pods as kubelet would and returns their sandbox and
// container IDs.
func startPods(t *testing.T, d *daemonproc.Daemon, n int) [][2]string {
	t.Helper()
	ctx := daemonproc.Ctx(t)
	var pods [][2]string
	for i := 0; i < n; i++ {
		sb := kubeletSandbox(i)
		r, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sb})
		if err != nil {
			t.Fatal(err)
		}
		c, err := d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: r.PodSandboxId, SandboxConfig: sb, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "vm"}, Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/img"},
			Labels: kubeletContainerLabels(sb), Annotations: kubeletContainerAnnotations()}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			t.Fatal(err)
		}
		pods = append(pods, [2]string{r.PodSandboxId, c.ContainerId})
	}
	return pods
}

// cpuTime is the user plus system CPU time process pid has used.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command's closing parenthesis: utime and stime are
	// the 12th and 13th.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clockTicks
}
