package cri

import (
	"context"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The verbs below are not built yet. Each answers codes.Unimplemented with
// what is missing, so kubelet and users see why.

// GetContainerEvents: kubelet falls back to polling (generic PLEG).
func (s *Server) GetContainerEvents(*runtimeapi.GetEventsRequest, grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	return unimplemented("GetContainerEvents: podvisor does not stream container events yet; kubelet's polling (generic PLEG) sees every change")
}

// ListMetricDescriptors: the Prometheus endpoint is not built yet.
func (s *Server) ListMetricDescriptors(context.Context, *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	return nil, unimplemented("ListMetricDescriptors: podvisor does not export CRI pod metrics yet; use ContainerStats")
}

// ListPodSandboxMetrics: the Prometheus endpoint is not built yet.
func (s *Server) ListPodSandboxMetrics(context.Context, *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	return nil, unimplemented("ListPodSandboxMetrics: podvisor does not export CRI pod metrics yet; use ContainerStats")
}

// StreamPodSandboxMetrics: see ListPodSandboxMetrics.
func (s *Server) StreamPodSandboxMetrics(*runtimeapi.StreamPodSandboxMetricsRequest, grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxMetricsResponse]) error {
	return unimplemented("StreamPodSandboxMetrics: podvisor does not export CRI pod metrics yet; use ContainerStats")
}
