package cri

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/pod"
)

// CreateContainer defines the sandbox's VM.
func (s *Server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	cfg := req.GetConfig()
	switch {
	case req.GetPodSandboxId() == "":
		return nil, errdefs.InvalidArgumentf("CreateContainer: pod_sandbox_id is required")
	case cfg == nil || cfg.GetMetadata() == nil:
		return nil, errdefs.InvalidArgumentf("CreateContainer: config.metadata is required")
	case cfg.GetImage() == nil || cfg.GetImage().GetImage() == "":
		return nil, errdefs.InvalidArgumentf("CreateContainer: config.image.image is required")
	}
	if err := refuseImageMounts(cfg.GetMounts()); err != nil {
		return nil, err
	}
	id, err := s.cfg.Lifecycle.CreateContainer(ctx, req.GetPodSandboxId(), containerConfigFromCRI(cfg))
	if err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

// refuseImageMounts refuses Kubernetes image volumes (CRI Mount.image): they
// mount an OCI image's file system into the container, and a VM has no
// container file system to mount it into (docs/volumes.md). Said at
// CreateContainer, so kubelet reports it on the pod instead of a VM
// booting without the volume.
func refuseImageMounts(mounts []*runtimeapi.Mount) error {
	for i, m := range mounts {
		if img := m.GetImage().GetImage(); img != "" {
			return errdefs.Unimplementedf("CreateContainer: mounts[%d] (container_path %q) is an image volume of %q: "+
				"image volumes (CRI Mount.image) are not supported for VM pods, a VM cannot mount an OCI image's file system; "+
				"use a containerDisk as the pod's image, or a PVC, emptyDir, ConfigMap or Secret volume", i, m.GetContainerPath(), img)
		}
	}
	return nil
}

// StartContainer boots the VM.
func (s *Server) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgumentf("StartContainer: container_id is required")
	}
	if err := s.cfg.Lifecycle.StartContainer(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.StartContainerResponse{}, nil
}

// StopContainer powers the VM off: ACPI until the timeout, then destroy.
func (s *Server) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgumentf("StopContainer: container_id is required")
	}
	if req.GetTimeout() < 0 {
		return nil, errdefs.InvalidArgumentf("StopContainer: timeout must not be negative, got %d", req.GetTimeout())
	}
	if err := s.cfg.Lifecycle.StopContainer(ctx, req.GetContainerId(), time.Duration(req.GetTimeout())*time.Second); err != nil {
		return nil, err
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

// RemoveContainer removes the VM and its disks.
func (s *Server) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgumentf("RemoveContainer: container_id is required")
	}
	if err := s.cfg.Lifecycle.RemoveContainer(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

// ListContainers lists containers matching the filter.
func (s *Server) ListContainers(_ context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	resp := &runtimeapi.ListContainersResponse{}
	if err := s.fillContainers(resp, req.GetFilter()); err != nil {
		return nil, err
	}
	return resp, nil
}

// StreamContainers sends the container list in one message.
func (s *Server) StreamContainers(req *runtimeapi.StreamContainersRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainersResponse]) error {
	resp := &runtimeapi.StreamContainersResponse{}
	if err := s.fillContainers(resp, req.GetFilter()); err != nil {
		return err
	}
	return stream.Send(resp)
}

// fillContainers puts the matching containers into resp's field 1 (see
// encodedList).
func (s *Server) fillContainers(resp proto.Message, f *runtimeapi.ContainerFilter) error {
	filter := pod.ContainerFilter{ID: f.GetId(), SandboxID: f.GetPodSandboxId(), LabelSelector: f.GetLabelSelector()}
	if st := f.GetState(); st != nil {
		v := containerStateFromCRI(st.GetState())
		filter.State = &v
	}
	all := filter.ID == "" && filter.SandboxID == "" && filter.State == nil && len(filter.LabelSelector) == 0
	return s.containers.fill(resp, s.cfg.Lifecycle.ListContainers(filter), all)
}

// ContainerStatus reports a container with its state read from the
// hypervisor.
func (s *Server) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgumentf("ContainerStatus: container_id is required")
	}
	c, err := s.cfg.Lifecycle.ContainerStatus(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: containerStatusToCRI(c)}
	if req.GetVerbose() {
		resp.Info = map[string]string{"info": containerInfoJSON(c)}
	}
	return resp, nil
}

// UpdateContainerResources resizes the VM in place (kubelet's in-place
// pod resize): its CPU limit and memory limit; the other Linux resources
// (cpuset, hugepages, unified, OOM score) have no VM meaning and are
// ignored, as they are at CreateContainer.
func (s *Server) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgumentf("UpdateContainerResources: container_id is required")
	}
	r := req.GetLinux()
	if r == nil {
		return nil, errdefs.InvalidArgumentf("UpdateContainerResources: linux resources are required (podvisor's VMs are Linux containers to kubelet)")
	}
	res := resourcesFromCRI(r)
	if err := s.cfg.Lifecycle.UpdateContainerResources(ctx, req.GetContainerId(), res); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// UpdatePodSandboxResources is kubelet's notice that it has resized the
// pod's cgroup (which it owns); the VM's own limits change with
// UpdateContainerResources, so there is nothing more to do.
func (s *Server) UpdatePodSandboxResources(_ context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, errdefs.InvalidArgumentf("UpdatePodSandboxResources: pod_sandbox_id is required")
	}
	if _, err := s.cfg.Lifecycle.PodSandbox(req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}

// ReopenContainerLog reopens the console log after rotation.
func (s *Server) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgumentf("ReopenContainerLog: container_id is required")
	}
	if err := s.cfg.Lifecycle.ReopenContainerLog(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}
