package cri

import (
	"context"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The verbs below are not built yet. Each answers codes.Unimplemented with
// what is missing, so kubelet and users see why.

// CheckpointContainer would snapshot the VM.
func (s *Server) CheckpointContainer(context.Context, *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	return nil, unimplemented("CheckpointContainer: VM snapshots are not built yet")
}

// CheckpointPod would snapshot the pod's VM.
func (s *Server) CheckpointPod(context.Context, *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	return nil, unimplemented("CheckpointPod: VM snapshots are not built yet")
}

// RestorePod would restore a VM snapshot.
func (s *Server) RestorePod(context.Context, *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	return nil, unimplemented("RestorePod: VM snapshots are not built yet")
}

// GetContainerEvents: kubelet falls back to polling (generic PLEG).
func (s *Server) GetContainerEvents(*runtimeapi.GetEventsRequest, grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	return unimplemented("GetContainerEvents: podvisor does not stream container events yet; kubelet's polling (generic PLEG) sees every change")
}
