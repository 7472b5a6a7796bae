// Package scalebench measures podvisor at scale on the simulated
// hypervisor: it starts bin/podvisor as its own process (so its memory is
// measured alone) and drives it over the CRI socket. It runs only when
// PODVISOR_SCALE_PODS is set (make bench); results go to the file named by
// PODVISOR_SCALE_OUT.
package scalebench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func rssKiB(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return strconv.Atoi(strings.Fields(l)[1])
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// rawResponse receives a response undecoded: its size, and its bytes
// when keep is set (copying them would load the client in the timed loop).
type rawResponse struct {
	keep bool
	n    int
	b    []byte
}

// rawCodec encodes requests as protobuf and leaves responses undecoded.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, err := proto.Marshal(v.(proto.Message))
	return mem.BufferSlice{mem.SliceBuffer(b)}, err
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r := v.(*rawResponse)
	r.n = data.Len()
	if r.keep {
		r.b = data.Materialize()
	}
	return nil
}

func (rawCodec) Name() string { return "proto" }

// freeAddr returns a loopback host:port that was free a moment ago.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// fetch saves the body of url to path.
func fetch(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// kubeletSandbox is a sandbox config with the labels and annotations
// kubelet sets, so that lists carry what they carry on a node.
func kubeletSandbox(i int) *runtimeapi.PodSandboxConfig {
	md := &runtimeapi.PodSandboxMetadata{Name: fmt.Sprintf("vm-pod-%d", i), Uid: fmt.Sprintf("6f1c2a3e-0000-4000-8000-%012d", i), Namespace: "scale"}
	return &runtimeapi.PodSandboxConfig{Metadata: md,
		Labels: map[string]string{
			"io.kubernetes.pod.name": md.Name, "io.kubernetes.pod.namespace": md.Namespace, "io.kubernetes.pod.uid": md.Uid, "app": "vm",
		},
		Annotations: map[string]string{
			"kubernetes.io/config.seen": "2026-11-25T12:00:00.000000000Z", "kubernetes.io/config.source": "api",
			"kubernetes.io/target-runtime": "virtlet.cloud",
		}}
}

func kubeletContainerLabels(sb *runtimeapi.PodSandboxConfig) map[string]string {
	return map[string]string{
		"io.kubernetes.container.name": "vm", "io.kubernetes.pod.name": sb.Metadata.Name,
		"io.kubernetes.pod.namespace": sb.Metadata.Namespace, "io.kubernetes.pod.uid": sb.Metadata.Uid,
	}
}

func kubeletContainerAnnotations() map[string]string {
	return map[string]string{
		"io.kubernetes.container.hash": "5d2ec8a1", "io.kubernetes.container.restartCount": "0",
		"io.kubernetes.container.terminationMessagePath":   "/dev/termination-log",
		"io.kubernetes.container.terminationMessagePolicy": "File",
		"io.kubernetes.pod.terminationGracePeriod":         "30",
	}
}

func TestScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PODVISOR_SCALE_PODS"))
	if n == 0 {
		t.Skip("set PODVISOR_SCALE_PODS (make bench) to run the scale measurement")
	}
	bin, err := filepath.Abs("../../bin/podvisor")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "img.raw")
	os.WriteFile(img, make([]byte, 1<<20), 0o644)
	os.MkdirAll(filepath.Join(dir, "tr"), 0o755)
	os.WriteFile(filepath.Join(dir, "tr", "t.yaml"), []byte("translations:\n- name: img\n  url: file://"+img+"\n"), 0o644)
	sock := filepath.Join(dir, "p.sock")
	args := []string{"--hypervisor", "sim", "--listen", "unix://" + sock, "--state-dir", filepath.Join(dir, "state"),
		"--image-translations-dir", filepath.Join(dir, "tr"), "--log-level", "warn"}
	// PODVISOR_SCALE_PROFILE=DIR saves the daemon's heap and a CPU profile
	// of the list phase there (go tool pprof bin/podvisor DIR/heap.pb.gz).
	profDir := os.Getenv("PODVISOR_SCALE_PROFILE")
	// No metrics listener (the figures of docs/bench/ are without one);
	// pprof on a loopback listener of its own.
	args = append(args, "--metrics-addr=")
	var profAddr string
	if profDir != "" {
		profAddr = freeAddr(t)
		args = append(args, "--profiling", "--profiling-addr", profAddr)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	is := runtimeapi.NewImageServiceClient(conn)
	ctx := context.Background()
	for i := 0; ; i++ {
		if _, err := rt.Version(ctx, &runtimeapi.VersionRequest{}); err == nil {
			break
		} else if i > 100 {
			t.Fatalf("podvisor did not come up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/img"}}); err != nil {
		t.Fatal(err)
	}
	var runLat, createLat []time.Duration
	for i := 0; i < n; i++ {
		sbCfg := kubeletSandbox(i)
		start := time.Now()
		r, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbCfg})
		if err != nil {
			t.Fatal(err)
		}
		runLat = append(runLat, time.Since(start))
		start = time.Now()
		c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: r.PodSandboxId, SandboxConfig: sbCfg, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "vm"}, Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/img"},
			Labels: kubeletContainerLabels(sbCfg), Annotations: kubeletContainerAnnotations()}})
		if err != nil {
			t.Fatal(err)
		}
		createLat = append(createLat, time.Since(start))
		if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			t.Fatal(err)
		}
	}
	var cpuDone chan error
	if profDir != "" {
		cpuDone = make(chan error, 1)
		go func() {
			cpuDone <- fetch("http://"+profAddr+"/debug/pprof/profile?seconds=3", filepath.Join(profDir, "cpu.pb.gz"))
		}()
	}
	var listLat []time.Duration
	for i := 0; i < 300; i++ {
		start := time.Now()
		resp, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil || len(resp.Containers) != n {
			t.Fatalf("ListContainers: %d, %v", len(resp.GetContainers()), err)
		}
		listLat = append(listLat, time.Since(start))
	}
	// The same calls, the response not decoded: the daemon and the
	// transport alone, without the client's protobuf decoding (1.3 ms for
	// 500 containers with kubelet's labels on 2 cores).
	var wireLat []time.Duration
	for i := 0; i < 300; i++ {
		var raw rawResponse
		start := time.Now()
		if err := conn.Invoke(ctx, "/runtime.v1.RuntimeService/ListContainers", &runtimeapi.ListContainersRequest{}, &raw,
			grpc.ForceCodecV2(rawCodec{})); err != nil || raw.n == 0 {
			t.Fatalf("ListContainers (undecoded): %d bytes, %v", raw.n, err)
		}
		wireLat = append(wireLat, time.Since(start))
	}
	kept := rawResponse{keep: true}
	if err := conn.Invoke(ctx, "/runtime.v1.RuntimeService/ListContainers", &runtimeapi.ListContainersRequest{}, &kept,
		grpc.ForceCodecV2(rawCodec{})); err != nil {
		t.Fatalf("ListContainers (undecoded): %v", err)
	}
	lastRaw := kept.b
	// What the first column adds: the client decoding the response.
	var decodeLat []time.Duration
	for i := 0; i < 300; i++ {
		var resp runtimeapi.ListContainersResponse
		start := time.Now()
		if err := proto.Unmarshal(lastRaw, &resp); err != nil || len(resp.Containers) != n {
			t.Fatalf("decoding ListContainers: %d containers, %v", len(resp.Containers), err)
		}
		decodeLat = append(decodeLat, time.Since(start))
	}
	rss, err := rssKiB(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if profDir != "" {
		if err := <-cpuDone; err != nil {
			t.Fatal(err)
		}
		if err := fetch("http://"+profAddr+"/debug/pprof/heap?debug=1", filepath.Join(profDir, "heap.txt")); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"heap", "goroutine"} {
			if err := fetch("http://"+profAddr+"/debug/pprof/"+p, filepath.Join(profDir, p+".pb.gz")); err != nil {
				t.Fatal(err)
			}
		}
	}
	report := fmt.Sprintf(`# Scale on the simulated hypervisor

%s, %d cores; measured by internal/scalebench (make bench): bin/podvisor as
its own process, driven over its CRI socket; every pod started (a running
simulated VM with its console pumped to nothing); sandboxes and containers
carry the labels and annotations kubelet sets.

| pods | RunPodSandbox p50 / p99 | CreateContainer p50 / p99 | ListContainers p50 / p99 (%d calls) | the same, undecoded | client decoding alone | daemon RSS |
|---|---|---|---|---|---|---|
| %d | %s / %s | %s / %s | %s / %s | %s / %s | %s / %s | %.1f MiB |

Targets: ListContainers p99 <= 2 ms, RSS <= 64 MiB.

- CreateContainer includes a qcow2 overlay (qemu-img) and a cloud-init ISO
  (genisoimage) per VM.
- "ListContainers" is what a Go client such as kubelet sees: the call and
  the decoding of %d containers with kubelet's 4 labels and 5 annotations
  each; protobuf-go decodes maps by reflection, which is the "client
  decoding alone" column, spent in the client's process. "undecoded" is
  the same call with the response kept as bytes: the daemon and the
  transport, which is what podvisor answers for, and what the target is
  checked against.
- The daemon keeps records in creation order and the wire bytes of each
  list entry while its record is unchanged (runtime/cri/encoded.go): an
  unfiltered relist with nothing changed, kubelet's every second, copies
  the bytes of the last one.
- Daemon RSS is VmRSS after the lists. In sim mode the simulated hypervisor
  (domain definitions, serial consoles) lives in the daemon's process.
`, time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtimeNumCPU(), len(listLat), n,
		percentile(runLat, 0.5).Round(10*time.Microsecond), percentile(runLat, 0.99).Round(10*time.Microsecond),
		percentile(createLat, 0.5).Round(10*time.Microsecond), percentile(createLat, 0.99).Round(10*time.Microsecond),
		percentile(listLat, 0.5).Round(10*time.Microsecond), percentile(listLat, 0.99).Round(10*time.Microsecond),
		percentile(wireLat, 0.5).Round(10*time.Microsecond), percentile(wireLat, 0.99).Round(10*time.Microsecond),
		percentile(decodeLat, 0.5).Round(10*time.Microsecond), percentile(decodeLat, 0.99).Round(10*time.Microsecond),
		float64(rss)/1024, n)
	t.Log("\n" + report)
	if out := os.Getenv("PODVISOR_SCALE_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
