package cri

import (
	"context"
	"errors"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/errdefs"
)

// An image volume is refused before anything is created (the Server has no
// Lifecycle: reaching it would panic), naming the mount and the image.
func TestCreateContainerRefusesImageVolumes(t *testing.T) {
	s := &Server{}
	req := &runtimeapi.CreateContainerRequest{
		PodSandboxId: "sb",
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "vm"},
			Image:    &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"},
			Mounts: []*runtimeapi.Mount{
				{ContainerPath: "/data", HostPath: "/var/lib/kubelet/pods/x/volumes/data"},
				{ContainerPath: "/tools", Image: &runtimeapi.ImageSpec{Image: "registry.example/tools:1"}, Readonly: true},
			},
		},
	}
	_, err := s.CreateContainer(context.Background(), req)
	if !errors.Is(err, errdefs.ErrUnimplemented) {
		t.Fatalf("CreateContainer with an image volume: got %v, want an Unimplemented error", err)
	}
	for _, want := range []string{"mounts[1]", `"/tools"`, `"registry.example/tools:1"`, "image volumes (CRI Mount.image) are not supported for VM pods"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
