package cri

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/pod"
)

// RunPodSandbox creates and starts a pod sandbox.
func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	cfg := req.GetConfig()
	if cfg == nil || cfg.GetMetadata() == nil {
		return nil, errdefs.InvalidArgumentf("RunPodSandbox: config.metadata is required")
	}
	id, err := s.cfg.Lifecycle.RunPodSandbox(ctx, sandboxConfigFromCRI(cfg, req.GetRuntimeHandler()))
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// StopPodSandbox stops the sandbox's VM and its network.
func (s *Server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, errdefs.InvalidArgumentf("StopPodSandbox: pod_sandbox_id is required")
	}
	if err := s.cfg.Lifecycle.StopPodSandbox(ctx, req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// RemovePodSandbox removes the sandbox and its containers.
func (s *Server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, errdefs.InvalidArgumentf("RemovePodSandbox: pod_sandbox_id is required")
	}
	if err := s.cfg.Lifecycle.RemovePodSandbox(ctx, req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

// PodSandboxStatus reports a sandbox, its IPs and (verbose) its containers.
func (s *Server) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, errdefs.InvalidArgumentf("PodSandboxStatus: pod_sandbox_id is required")
	}
	sb, err := s.cfg.Lifecycle.PodSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: sandboxStatusToCRI(sb)}
	for _, c := range s.cfg.Lifecycle.ListContainers(pod.ContainerFilter{SandboxID: sb.ID}) {
		resp.ContainersStatuses = append(resp.ContainersStatuses, containerStatusToCRI(*c))
	}
	if req.GetVerbose() {
		resp.Info = map[string]string{"info": sandboxInfoJSON(sb)}
	}
	return resp, nil
}

// ListPodSandbox lists sandboxes matching the filter.
func (s *Server) ListPodSandbox(_ context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	resp := &runtimeapi.ListPodSandboxResponse{}
	if err := s.fillSandboxes(resp, req.GetFilter()); err != nil {
		return nil, err
	}
	return resp, nil
}

// StreamPodSandboxes sends the sandbox list in one message.
func (s *Server) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxesResponse]) error {
	resp := &runtimeapi.StreamPodSandboxesResponse{}
	if err := s.fillSandboxes(resp, req.GetFilter()); err != nil {
		return err
	}
	return stream.Send(resp)
}

// fillSandboxes puts the matching sandboxes into resp's field 1 (see
// encodedList).
func (s *Server) fillSandboxes(resp proto.Message, f *runtimeapi.PodSandboxFilter) error {
	filter := pod.SandboxFilter{ID: f.GetId(), LabelSelector: f.GetLabelSelector()}
	if st := f.GetState(); st != nil {
		v := sandboxStateFromCRI(st.GetState())
		filter.State = &v
	}
	all := filter.ID == "" && filter.State == nil && len(filter.LabelSelector) == 0
	return s.sandboxes.fill(resp, s.cfg.Lifecycle.ListPodSandboxes(filter), all)
}
