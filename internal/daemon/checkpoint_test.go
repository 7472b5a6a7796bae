package daemon

import (
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The checkpoint verbs over the CRI socket, on the simulated hypervisor
// with podvisor's own VM assembly (qemu-img overlays, cloud-init drive):
// CheckpointPod into kubelet's directory, RestorePod on a second daemon,
// the restored container CREATED and then running; the archive named as
// an image (CRI-O's convention) is present to ImageStatus and restores
// through CreateContainer; bad requests are InvalidArgument.
func TestCRICheckpointRestore(t *testing.T) {
	h := newHarness(t)
	c := ctx(t)
	run, cr := h.createdVM(t, "ck")
	if _, err := h.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	_, err := h.rt.CheckpointPod(c, &runtimeapi.CheckpointPodRequest{PodSandboxId: run.PodSandboxId, OutputPath: out, ContainerIds: []string{cr.ContainerId},
		Options: map[string]string{"podvisor.io/checkpoint-mode": "hot"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"hot"`) {
		t.Errorf("CheckpointPod with a bad option: %v", err)
	}
	if _, err := h.rt.CheckpointPod(c, &runtimeapi.CheckpointPodRequest{PodSandboxId: run.PodSandboxId, OutputPath: out, ContainerIds: []string{cr.ContainerId}}); err != nil {
		t.Fatalf("CheckpointPod: %v", err)
	}
	st, err := h.rt.ContainerStatus(c, &runtimeapi.ContainerStatusRequest{ContainerId: cr.ContainerId})
	if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("after the checkpoint: %v, %v; want running", st.GetStatus().GetState(), err)
	}
	archive := filepath.Join(out, "checkpoint.tar")
	if _, err := h.rt.CheckpointContainer(c, &runtimeapi.CheckpointContainerRequest{ContainerId: cr.ContainerId, Location: filepath.Join(t.TempDir(), "c.tar")}); err != nil {
		t.Errorf("CheckpointContainer: %v", err)
	}

	other := newHarness(t)
	if _, err := other.img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}}); err != nil {
		t.Fatal(err)
	}
	vm := &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "vm"}, Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}}
	if _, err := other.rt.RestorePod(c, &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: sandboxConfig("copy")}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("RestorePod without container configs: %v, want InvalidArgument", err)
	}
	r, err := other.rt.RestorePod(c, &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: sandboxConfig("copy"), ContainerConfigs: []*runtimeapi.ContainerConfig{vm}})
	if err != nil {
		t.Fatalf("RestorePod: %v", err)
	}
	id := r.RestoredContainers[0].ContainerId
	if st, err := other.rt.ContainerStatus(c, &runtimeapi.ContainerStatusRequest{ContainerId: id}); err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("restored: %v, %v; want CREATED", st.GetStatus().GetState(), err)
	}
	if _, err := other.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}

	// CRI-O's convention, on the second daemon.
	is, err := other.img.ImageStatus(c, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: archive}})
	if err != nil || is.Image == nil || !strings.HasPrefix(is.Image.Id, "sha256:") {
		t.Fatalf("ImageStatus of the archive: %v, %v", is, err)
	}
	sb, err := other.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: sandboxConfig("crio")})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := other.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "vm"}, Image: &runtimeapi.ImageSpec{Image: archive}}})
	if err != nil {
		t.Fatalf("CreateContainer with the archive as image: %v", err)
	}
	if _, err := other.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: cc.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
}
