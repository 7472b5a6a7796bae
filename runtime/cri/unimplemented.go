package cri

import (
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The verbs below are not built yet. Each answers codes.Unimplemented with
// what is missing, so kubelet and users see why.

// GetContainerEvents: kubelet falls back to polling (generic PLEG).
func (s *Server) GetContainerEvents(*runtimeapi.GetEventsRequest, grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	return unimplemented("GetContainerEvents: podvisor does not stream container events yet; kubelet's polling (generic PLEG) sees every change")
}
