package daemon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/fakes/simhv"
	"github.com/podvisor/podvisor/internal/syncbuf"
	"github.com/podvisor/podvisor/runtime/pod"
)

type harness struct {
	t      *testing.T
	dir    string
	cfg    Config
	d      *Daemon
	served chan error
	conn   *grpc.ClientConn
	rt     runtimeapi.RuntimeServiceClient
	img    runtimeapi.ImageServiceClient
	// logs, when set before start, receives the daemon's log at debug level.
	logs *syncbuf.Buffer
}

// newHarness starts the daemon on the simulated hypervisor with an image
// translation "cirros" pointing at a local raw image file.
func newHarness(t *testing.T) *harness {
	t.Helper()
	dir := t.TempDir()
	imgFile := filepath.Join(dir, "cirros.img")
	if err := os.WriteFile(imgFile, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	tdir := filepath.Join(dir, "translations")
	os.MkdirAll(tdir, 0o755)
	conf := "translations:\n- name: cirros\n  url: file://" + imgFile + "\n"
	if err := os.WriteFile(filepath.Join(tdir, "images.yaml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, cfg: Config{
		Listen:               "unix://" + filepath.Join(dir, "cri.sock"),
		StateDir:             filepath.Join(dir, "state"),
		Hypervisor:           "sim",
		ImageTranslationsDir: tdir,
		SimBootTime:          20 * time.Millisecond,
		// The tests' image servers listen on loopback.
		ImageDownloadAllowNetworks: []string{"127.0.0.1/32"},
	}}
	h.start()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) start() {
	h.t.Helper()
	var logTo io.Writer = io.Discard
	if h.logs != nil {
		logTo = h.logs
	}
	log := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := New(context.Background(), h.cfg, log)
	if err != nil {
		h.t.Fatal(err)
	}
	h.d = d
	h.served = make(chan error, 1)
	go func() { h.served <- d.Serve() }()
	conn, err := grpc.NewClient(h.cfg.Listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		h.t.Fatal(err)
	}
	h.conn = conn
	h.rt = runtimeapi.NewRuntimeServiceClient(conn)
	h.img = runtimeapi.NewImageServiceClient(conn)
}

func (h *harness) stop() {
	if h.d == nil {
		return
	}
	h.conn.Close()
	h.d.Stop(5 * time.Second)
	if err := <-h.served; err != nil {
		h.t.Errorf("Serve: %v", err)
	}
	h.d = nil
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func sandboxConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Uid: "uid-" + name, Namespace: "default"},
		Labels:       map[string]string{"app": name},
		Annotations:  map[string]string{"kubernetes.io/target-runtime": "virtlet.cloud", "VirtletVCPUCount": "2"},
		Hostname:     name,
		DnsConfig:    &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"default.svc.cluster.local"}},
		LogDirectory: "",
	}
}

func TestCRILifecycle(t *testing.T) {
	h := newHarness(t)
	c := ctx(t)

	v, err := h.rt.Version(c, &runtimeapi.VersionRequest{})
	if err != nil || v.RuntimeName != "podvisor" || v.RuntimeApiVersion != "v1" {
		t.Fatalf("Version = %v, %v", v, err)
	}
	st, err := h.rt.Status(c, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, cond := range st.Status.Conditions {
		if !cond.Status {
			t.Errorf("condition %s is false: %s", cond.Type, cond.Message)
		}
	}
	if st.Info["accelerator"] != "sim" || st.Info["acceleratorReason"] != simhv.SimAcceleratorReason || st.Info["version"] != Version {
		t.Errorf("Status info = %v, want the accelerator, why, and the version", st.Info)
	}
	if want := Version + " (hypervisor sim " + simhv.Version + ", accelerator sim)"; v.RuntimeVersion != want {
		t.Errorf("RuntimeVersion %q, want %q", v.RuntimeVersion, want)
	}
	hc, err := healthpb.NewHealthClient(h.conn).Check(c, &healthpb.HealthCheckRequest{})
	if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, %v", hc, err)
	}

	pulled, err := h.img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pulled.ImageRef, "sha256:") {
		t.Fatalf("image ref %q", pulled.ImageRef)
	}
	is, err := h.img.ImageStatus(c, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}})
	if err != nil || is.Image == nil || is.Image.Id != pulled.ImageRef || is.Image.Size != 1<<20 {
		t.Fatalf("ImageStatus = %v, %v", is, err)
	}
	none, err := h.img.ImageStatus(c, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/absent"}})
	if err != nil || none.Image != nil {
		t.Fatalf("ImageStatus of an absent image = %v, %v; want no image and no error", none, err)
	}

	logDir := filepath.Join(h.dir, "pods", "vm1")
	sbCfg := sandboxConfig("vm1")
	sbCfg.LogDirectory = logDir
	run, err := h.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: sbCfg})
	if err != nil {
		t.Fatal(err)
	}
	again, err := h.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: sbCfg})
	if err != nil || again.PodSandboxId != run.PodSandboxId {
		t.Fatalf("repeated RunPodSandbox = %v, %v; want %s", again, err, run.PodSandboxId)
	}
	ps, err := h.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: run.PodSandboxId})
	if err != nil || ps.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || ps.Status.Network.Ip == "" {
		t.Fatalf("PodSandboxStatus = %v, %v", ps, err)
	}

	cc := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "vm"},
		Image:    &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"},
		LogPath:  "vm/0.log",
		Envs:     []*runtimeapi.KeyValue{{Key: "FOO", Value: []byte("bar")}},
		Linux:    &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 512 << 20}},
	}
	cr, err := h.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: run.PodSandboxId, Config: cc, SandboxConfig: sbCfg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatal(err)
	}
	cs, err := h.rt.ContainerStatus(c, &runtimeapi.ContainerStatusRequest{ContainerId: cr.ContainerId})
	if err != nil || cs.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING || cs.Status.ImageRef != pulled.ImageRef {
		t.Fatalf("ContainerStatus = %v, %v", cs, err)
	}
	if cs.Status.LogPath != filepath.Join(logDir, "vm/0.log") {
		t.Errorf("log path %q", cs.Status.LogPath)
	}
	// The VM got what the annotations and resources say.
	xml := h.d.hv.(interface{ DefinedXML(string) []string }).DefinedXML(h.d.manager.ListContainers(podFilterAll())[0].DomainName)
	if len(xml) != 1 || !strings.Contains(xml[0], `<vcpu placement="static">2</vcpu>`) || !strings.Contains(xml[0], `<memory unit="KiB">524288</memory>`) {
		t.Errorf("domain XML does not carry 2 vCPUs and 512 MiB:\n%s", xml)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, _ := os.ReadFile(cs.Status.LogPath)
		if strings.Contains(string(data), "ready") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("console never reached the container log; log holds %q", data)
		}
		time.Sleep(20 * time.Millisecond)
	}
	list, err := h.rt.ListContainers(c, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
	}})
	if err != nil || len(list.Containers) != 1 {
		t.Fatalf("ListContainers(running) = %v, %v", list, err)
	}
	stats, err := h.rt.ContainerStats(c, &runtimeapi.ContainerStatsRequest{ContainerId: cr.ContainerId})
	if err != nil || stats.Stats.Memory.WorkingSetBytes.GetValue() == 0 {
		t.Errorf("ContainerStats = %v, %v", stats, err)
	}
	if _, err := h.img.RemoveImage(c, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: pulled.ImageRef}}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("removing an image in use: %v, want FailedPrecondition", err)
	}

	if _, err := h.rt.StopContainer(c, &runtimeapi.StopContainerRequest{ContainerId: cr.ContainerId, Timeout: 10}); err != nil {
		t.Fatal(err)
	}
	cs, _ = h.rt.ContainerStatus(c, &runtimeapi.ContainerStatusRequest{ContainerId: cr.ContainerId})
	if cs.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED || cs.Status.ExitCode != 0 || cs.Status.FinishedAt == 0 {
		t.Fatalf("after stop: %v", cs.Status)
	}
	if _, err := h.rt.RemoveContainer(c, &runtimeapi.RemoveContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.rt.StopPodSandbox(c, &runtimeapi.StopPodSandboxRequest{PodSandboxId: run.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.rt.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: run.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	// Idempotent on missing objects.
	if _, err := h.rt.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: run.PodSandboxId}); err != nil {
		t.Errorf("second RemovePodSandbox: %v", err)
	}
	if _, err := h.rt.StopContainer(c, &runtimeapi.StopContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Errorf("StopContainer of a removed container: %v", err)
	}
	if _, err := h.img.RemoveImage(c, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: pulled.ImageRef}}); err != nil {
		t.Errorf("RemoveImage: %v", err)
	}
	imgs, err := h.img.ListImages(c, &runtimeapi.ListImagesRequest{})
	if err != nil || len(imgs.Images) != 0 {
		t.Errorf("ListImages after remove = %v, %v", imgs, err)
	}
	entries, _ := os.ReadDir(filepath.Join(h.cfg.StateDir, "vms"))
	if len(entries) != 0 {
		t.Errorf("VM directories left: %d", len(entries))
	}
}

func TestCRIInvalidRequests(t *testing.T) {
	h := newHarness(t)
	c := ctx(t)
	run, err := h.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: sandboxConfig("p")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}}); err != nil {
		t.Fatal(err)
	}
	badAnn := sandboxConfig("bad")
	badAnn.Annotations["VirtletDiskDriver"] = "ide"
	badRun, err := h.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: badAnn})
	if err != nil {
		t.Fatal(err)
	}
	vm := func(name string) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}}
	}
	first, err := h.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: run.PodSandboxId, Config: vm("vm")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"RunPodSandbox without metadata", func() error {
			_, err := h.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{}})
			return err
		}, codes.InvalidArgument, "metadata"},
		{"RunPodSandbox without uid", func() error {
			_, err := h.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "x", Namespace: "y"}}})
			return err
		}, codes.InvalidArgument, "uid"},
		{"second container in a pod", func() error {
			_, err := h.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: run.PodSandboxId, Config: vm("sidecar")})
			return err
		}, codes.FailedPrecondition, "one VM per pod"},
		{"bad annotation", func() error {
			_, err := h.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: badRun.PodSandboxId, Config: vm("vm")})
			return err
		}, codes.InvalidArgument, "VirtletDiskDriver"},
		{"image not pulled", func() error {
			cfg := vm("vm")
			cfg.Image.Image = "virtlet.cloud/other"
			_, err := h.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: badRun.PodSandboxId, Config: cfg})
			return err
		}, codes.NotFound, "other"},
		{"container in a missing sandbox", func() error {
			_, err := h.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: "nope", Config: vm("vm")})
			return err
		}, codes.NotFound, "nope"},
		{"CreateContainer without image", func() error {
			_, err := h.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: run.PodSandboxId, Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "x"}}})
			return err
		}, codes.InvalidArgument, "image"},
		{"status of a missing container", func() error {
			_, err := h.rt.ContainerStatus(c, &runtimeapi.ContainerStatusRequest{ContainerId: "nope"})
			return err
		}, codes.NotFound, "nope"},
		{"status of a missing sandbox", func() error {
			_, err := h.rt.PodSandboxStatus(c, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: "nope"})
			return err
		}, codes.NotFound, "nope"},
		{"StartContainer without id", func() error {
			_, err := h.rt.StartContainer(c, &runtimeapi.StartContainerRequest{})
			return err
		}, codes.InvalidArgument, "container_id"},
		{"start twice", func() error {
			if _, err := h.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: first.ContainerId}); err != nil {
				return err
			}
			_, err := h.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: first.ContainerId})
			return err
		}, codes.FailedPrecondition, "only a created container"},
		{"pull of an unreachable image", func() error {
			_, err := h.img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/file:///nonexistent/x.img"}})
			return err
		}, codes.Unknown, "nonexistent"},
		{"ExecSync without a command", func() error {
			_, err := h.rt.ExecSync(c, &runtimeapi.ExecSyncRequest{ContainerId: first.ContainerId})
			return err
		}, codes.InvalidArgument, "cmd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Errorf("err = %v; want %s mentioning %q", err, tc.code, tc.msg)
			}
		})
	}
	// Nothing half-made: the failed creates left no VM directory.
	entries, _ := os.ReadDir(filepath.Join(h.cfg.StateDir, "vms"))
	if len(entries) != 1 {
		t.Errorf("%d VM directories, want only the first container's", len(entries))
	}
}

func TestRestartInProcess(t *testing.T) {
	h := newHarness(t)
	c := ctx(t)
	_, cr := h.createdVM(t, "p")
	if _, err := h.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatal(err)
	}
	before, _ := h.rt.ContainerStatus(c, &runtimeapi.ContainerStatusRequest{ContainerId: cr.ContainerId})
	h.stop()
	h.start()
	after, err := h.rt.ContainerStatus(c, &runtimeapi.ContainerStatusRequest{ContainerId: cr.ContainerId})
	if err != nil {
		t.Fatal(err)
	}
	if after.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING || after.Status.StartedAt != before.Status.StartedAt {
		t.Errorf("after restart: %v; before: %v", after.Status, before.Status)
	}
	imgs, err := h.img.ListImages(c, &runtimeapi.ListImagesRequest{})
	if err != nil || len(imgs.Images) != 1 {
		t.Errorf("images after restart: %v, %v", imgs, err)
	}
}

func podFilterAll() pod.ContainerFilter { return pod.ContainerFilter{} }

// createdVM pulls the test image and creates a VM container in a new
// sandbox named name.
func (h *harness) createdVM(t *testing.T, name string) (*runtimeapi.RunPodSandboxResponse, *runtimeapi.CreateContainerResponse) {
	t.Helper()
	c := ctx(t)
	if _, err := h.img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}}); err != nil {
		t.Fatal(err)
	}
	run, err := h.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: sandboxConfig(name)})
	if err != nil {
		t.Fatal(err)
	}
	cr, err := h.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: run.PodSandboxId, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "vm"}, Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}}})
	if err != nil {
		t.Fatal(err)
	}
	return run, cr
}

func TestExecSyncThroughTheGuestAgent(t *testing.T) {
	h := newHarness(t)
	c := ctx(t)
	_, cr := h.createdVM(t, "ex")
	if _, err := h.rt.ExecSync(c, &runtimeapi.ExecSyncRequest{ContainerId: cr.ContainerId, Cmd: []string{"hostname"}}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("exec in a VM that is not running: %v, want FailedPrecondition", err)
	}
	if _, err := h.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatal(err)
	}
	// The simulated guest's agent answers once it has booted.
	var resp *runtimeapi.ExecSyncResponse
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err = h.rt.ExecSync(c, &runtimeapi.ExecSyncRequest{ContainerId: cr.ContainerId, Cmd: []string{"echo", "hello", "vm"}, Timeout: 10})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || string(resp.Stdout) != "hello vm\n" || resp.ExitCode != 0 {
		t.Fatalf("ExecSync echo = %q, %d, %v", resp.GetStdout(), resp.GetExitCode(), err)
	}
	resp, err = h.rt.ExecSync(c, &runtimeapi.ExecSyncRequest{ContainerId: cr.ContainerId, Cmd: []string{"false"}})
	if err != nil || resp.ExitCode == 0 {
		t.Errorf("ExecSync false = %v, %v; want a non-zero exit code", resp, err)
	}
	if _, err := h.rt.ExecSync(c, &runtimeapi.ExecSyncRequest{ContainerId: cr.ContainerId, Cmd: []string{"/no/such/program"}}); err == nil || !strings.Contains(err.Error(), "/no/such/program") {
		t.Errorf("ExecSync of a missing program: %v", err)
	}
}
