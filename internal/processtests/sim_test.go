package processtests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/internal/daemonproc"
)

// simPod is bin/podvisor --hypervisor sim on a state directory of its own,
// with one image translation (cirros, a 4 MiB file) and a pod and container
// configuration as crictl's runp and create would send them.
type simPod struct {
	t    *testing.T
	d    *daemonproc.Daemon
	dir  string
	sb   *runtimeapi.PodSandboxConfig
	ctr  *runtimeapi.ContainerConfig
	logs string
}

const simImage = "virtlet.cloud/cirros"

func startSim(t *testing.T) *simPod {
	t.Helper()
	gate(t, "PODVISOR_PROCESS_TESTS")
	t.Parallel()
	dir := t.TempDir()
	img := filepath.Join(dir, "cirros.img")
	tr := filepath.Join(dir, "translations")
	logs := filepath.Join(dir, "logs")
	for _, d := range []string{tr, logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 4<<20); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("translations:\n- name: cirros\n  url: file://%s\n", img)
	if err := os.WriteFile(filepath.Join(tr, "images.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "p.sock")
	d := daemonproc.Start(t, daemonproc.Bin(t, "podvisor"), sock, filepath.Join(dir, "podvisor.log"),
		"--hypervisor", "sim", "--listen", "unix://"+sock, "--state-dir", filepath.Join(dir, "state"),
		"--image-translations-dir", tr, "--metrics-addr=", "--log-level", "debug")
	return &simPod{
		t: t, d: d, dir: dir, logs: logs,
		sb: &runtimeapi.PodSandboxConfig{
			Metadata:     &runtimeapi.PodSandboxMetadata{Name: "vm1", Namespace: "default", Uid: "uid-vm1"},
			LogDirectory: logs,
			Annotations:  map[string]string{"kubernetes.io/target-runtime": "virtlet.cloud", "VirtletVCPUCount": "2"},
		},
		ctr: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "vm"},
			Image:    &runtimeapi.ImageSpec{Image: simImage},
			LogPath:  "vm_0.log",
			Envs:     []*runtimeapi.KeyValue{{Key: "GREETING", Value: []byte("hello")}},
		},
	}
}

func (p *simPod) ctx() context.Context { return daemonproc.Ctx(p.t) }

func (p *simPod) pull() string {
	p.t.Helper()
	r, err := p.d.Images.PullImage(p.ctx(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: simImage}})
	if err != nil {
		p.t.Fatalf("PullImage %s: %v", simImage, err)
	}
	return r.ImageRef
}

func (p *simPod) runPod() string {
	p.t.Helper()
	r, err := p.d.Runtime.RunPodSandbox(p.ctx(), &runtimeapi.RunPodSandboxRequest{Config: p.sb})
	if err != nil {
		p.t.Fatalf("RunPodSandbox: %v", err)
	}
	return r.PodSandboxId
}

func (p *simPod) podStatus(id string) *runtimeapi.PodSandboxStatus {
	p.t.Helper()
	r, err := p.d.Runtime.PodSandboxStatus(p.ctx(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		p.t.Fatalf("PodSandboxStatus %s: %v", id, err)
	}
	return r.Status
}

func (p *simPod) create(pod string) string {
	p.t.Helper()
	p.pull()
	r, err := p.d.Runtime.CreateContainer(p.ctx(), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: p.ctr, SandboxConfig: p.sb})
	if err != nil {
		p.t.Fatalf("CreateContainer: %v", err)
	}
	return r.ContainerId
}

func (p *simPod) start(ctr string) {
	p.t.Helper()
	if _, err := p.d.Runtime.StartContainer(p.ctx(), &runtimeapi.StartContainerRequest{ContainerId: ctr}); err != nil {
		p.t.Fatalf("StartContainer: %v", err)
	}
}

// stop stops ctr with a 10 s grace, as kubelet would.
func (p *simPod) stop(ctr string) {
	p.t.Helper()
	if _, err := p.d.Runtime.StopContainer(p.ctx(), &runtimeapi.StopContainerRequest{ContainerId: ctr, Timeout: 10}); err != nil {
		p.t.Fatalf("StopContainer %s: %v", ctr, err)
	}
}

func (p *simPod) status(ctr string) *runtimeapi.ContainerStatus {
	p.t.Helper()
	r, err := p.d.Runtime.ContainerStatus(p.ctx(), &runtimeapi.ContainerStatusRequest{ContainerId: ctr})
	if err != nil {
		p.t.Fatalf("ContainerStatus %s: %v", ctr, err)
	}
	return r.Status
}

func (p *simPod) wantState(ctr string, want runtimeapi.ContainerState) *runtimeapi.ContainerStatus {
	p.t.Helper()
	st := p.status(ctr)
	if st.State != want {
		p.t.Fatalf("container %s is %s, want %s", ctr, st.State, want)
	}
	return st
}

// waitLog waits until the text of the container's CRI log holds s.
func (p *simPod) waitLog(s string) {
	p.t.Helper()
	waitCRILog(p.t, filepath.Join(p.logs, p.ctr.LogPath), s, 30*time.Second)
}

func TestSimVersionNamesPodvisor(t *testing.T) {
	p := startSim(t)
	v, err := p.d.Runtime.Version(p.ctx(), &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "podvisor" {
		t.Errorf("RuntimeName %q, want podvisor", v.RuntimeName)
	}
}

func TestSimPulledImageSurvivesKill9(t *testing.T) {
	p := startSim(t)
	ref := p.pull()
	if !strings.HasPrefix(ref, "sha256:") {
		t.Fatalf("PullImage returned ref %q, want sha256:...", ref)
	}
	list, err := p.d.Images.ListImages(p.ctx(), &runtimeapi.ListImagesRequest{})
	if err != nil || len(list.Images) != 1 || !strings.Contains(strings.Join(list.Images[0].RepoTags, " "), simImage) {
		t.Fatalf("ListImages after pull: %v, %v; want %s listed", list, err, simImage)
	}
	p.d.Kill9Restart()
	st, err := p.d.Images.ImageStatus(p.ctx(), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: simImage}})
	if err != nil || st.Image == nil || st.Image.Id != ref {
		t.Fatalf("ImageStatus after kill -9: %v, %v; want image %s", st, err, ref)
	}
}

func TestSimSandboxSurvivesKill9(t *testing.T) {
	p := startSim(t)
	pod := p.runPod()
	st := p.podStatus(pod)
	if st.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.GetNetwork().GetIp() == "" {
		t.Fatalf("sandbox after RunPodSandbox: state %s, IP %q; want ready with an IP", st.State, st.GetNetwork().GetIp())
	}
	p.d.Kill9Restart()
	if again := p.runPod(); again != pod {
		t.Errorf("RunPodSandbox of the same pod after kill -9 returned %s, want the same sandbox %s", again, pod)
	}
	if ip := p.podStatus(pod).GetNetwork().GetIp(); ip != st.Network.Ip {
		t.Errorf("pod IP after kill -9 %q, want %q", ip, st.Network.Ip)
	}
}

func TestSimCreatedContainerSurvivesKill9(t *testing.T) {
	p := startSim(t)
	ctr := p.create(p.runPod())
	p.wantState(ctr, runtimeapi.ContainerState_CONTAINER_CREATED)
	p.d.Kill9Restart()
	p.wantState(ctr, runtimeapi.ContainerState_CONTAINER_CREATED)
}

// TestSimRunningVMSurvivesKill9: the VM is not restarted and its console
// keeps being logged: a command typed after the restart gets an answer
// from the guest's shell that only this run can have produced.
func TestSimRunningVMSurvivesKill9(t *testing.T) {
	p := startSim(t)
	pod := p.runPod()
	ctr := p.create(pod)
	p.start(ctr)
	started := p.wantState(ctr, runtimeapi.ContainerState_CONTAINER_RUNNING).StartedAt
	list, err := p.d.Runtime.ListContainers(p.ctx(), &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}})
	if err != nil || len(list.Containers) != 1 || list.Containers[0].Id != ctr {
		t.Fatalf("running containers: %v, %v; want %s", list, err, ctr)
	}
	p.waitLog("ready")
	p.d.Kill9Restart()
	if st := p.wantState(ctr, runtimeapi.ContainerState_CONTAINER_RUNNING); st.StartedAt != started {
		t.Errorf("startedAt %d after kill -9, want %d: the VM was restarted", st.StartedAt, started)
	}
	marker := fmt.Sprintf("after-restart-%d", time.Now().UnixNano())
	p.attachType(ctr, marker+"\r")
	p.waitLog("sh: " + marker + ": not found")
}

// attachType types input on the container's console with crictl attach:
// the CRI's streaming attach is what kubectl attach uses, and crictl is the
// CRI's own client for it.
func (p *simPod) attachType(ctr, input string) {
	p.t.Helper()
	crictl := crictlPath(p.t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, crictl, "--runtime-endpoint", "unix://"+p.d.Sock, "attach", "-i", ctr)
	cmd.Stdin = strings.NewReader(input)
	if out, err := cmd.CombinedOutput(); err != nil && ctx.Err() == nil {
		// crictl attach ends with an error when stdin closes under it;
		// what counts is that the typed line reached the guest.
		p.t.Logf("crictl attach: %v: %s", err, out)
	}
}

func TestSimStoppedContainerSurvivesKill9(t *testing.T) {
	p := startSim(t)
	ctr := p.create(p.runPod())
	p.start(ctr)
	p.waitLog("ready")
	p.stop(ctr)
	if st := p.wantState(ctr, runtimeapi.ContainerState_CONTAINER_EXITED); st.ExitCode != 0 {
		t.Errorf("ACPI stop gave exit code %d, want 0", st.ExitCode)
	}
	p.d.Kill9Restart()
	p.wantState(ctr, runtimeapi.ContainerState_CONTAINER_EXITED)
}

// TestSimRemoveLeavesNothing stops and removes the container, the pod and
// the image, with a kill -9 between the pod's stop and its removal; no file
// may be left in the VM directories.
func TestSimRemoveLeavesNothing(t *testing.T) {
	p := startSim(t)
	pod := p.runPod()
	ctr := p.create(pod)
	p.start(ctr)
	rt := p.d.Runtime
	p.stop(ctr)
	if _, err := rt.RemoveContainer(p.ctx(), &runtimeapi.RemoveContainerRequest{ContainerId: ctr}); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
	if l, err := rt.ListContainers(p.ctx(), &runtimeapi.ListContainersRequest{}); err != nil || len(l.Containers) != 0 {
		t.Fatalf("containers after RemoveContainer: %v, %v; want none", l, err)
	}
	if _, err := rt.StopPodSandbox(p.ctx(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	p.d.Kill9Restart()
	if st := p.podStatus(pod); st.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("sandbox after stop and kill -9 is %s, want NOTREADY", st.State)
	}
	if _, err := rt.RemovePodSandbox(p.ctx(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	if l, err := rt.ListPodSandbox(p.ctx(), &runtimeapi.ListPodSandboxRequest{}); err != nil || len(l.Items) != 0 {
		t.Fatalf("sandboxes after RemovePodSandbox: %v, %v; want none", l, err)
	}
	if _, err := p.d.Images.RemoveImage(p.ctx(), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: simImage}}); err != nil {
		t.Fatalf("RemoveImage: %v", err)
	}
	if l, err := p.d.Images.ListImages(p.ctx(), &runtimeapi.ListImagesRequest{}); err != nil || len(l.Images) != 0 {
		t.Fatalf("images after RemoveImage: %v, %v; want none", l, err)
	}
	var left []string
	_ = filepath.Walk(filepath.Join(p.dir, "state", "vms"), func(path string, _ os.FileInfo, err error) error {
		if err == nil && path != filepath.Join(p.dir, "state", "vms") {
			left = append(left, path)
		}
		return nil
	})
	if len(left) != 0 {
		t.Errorf("left in the VM directories: %v", left)
	}
}
