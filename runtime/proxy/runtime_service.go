package proxy

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Every RPC of runtimeapi.RuntimeServiceServer is implemented below; the
// embedded Unimplemented server only satisfies gRPC's forward-compatibility
// rule (TestEveryRPCIsForwarded checks that none falls through to it).

// Version comes from the primary: kubelet reports it as the node's runtime.
func (p *Proxy) Version(ctx context.Context, req *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return forward(ctx, p.primary, req, p.primary.rt.Version)
}

// Status comes from the primary.
func (p *Proxy) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	return forward(ctx, p.primary, req, p.primary.rt.Status)
}

// RuntimeConfig (the cgroup driver) comes from the primary.
func (p *Proxy) RuntimeConfig(ctx context.Context, req *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	return forward(ctx, p.primary, req, p.primary.rt.RuntimeConfig)
}

// UpdateRuntimeConfig goes to every runtime; the primary's answer is
// returned. The request is kept and replayed to a runtime that reconnects.
func (p *Proxy) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	p.mu.Lock()
	p.lastConfig = clone(req)
	p.mu.Unlock()
	if _, err := fanOut(ctx, p, "UpdateRuntimeConfig", func(ctx context.Context, b *backend) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
		return b.rt.UpdateRuntimeConfig(ctx, clone(req))
	}); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

// RunPodSandbox routes the new pod (see forSandbox); the returned ID is
// prefixed with the runtime's name unless it is the primary.
func (p *Proxy) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	b, err := p.forSandbox(req.GetConfig(), req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	p.log.Debug("RunPodSandbox routed", "pod", req.GetConfig().GetMetadata().GetName(), "runtime", b.name, "handler", req.GetRuntimeHandler())
	return forward(ctx, b, req, b.rt.RunPodSandbox)
}

func (p *Proxy) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	b := p.forID(req.GetPodSandboxId())
	return forward(ctx, b, req, b.rt.StopPodSandbox)
}

func (p *Proxy) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	b := p.forID(req.GetPodSandboxId())
	return forward(ctx, b, req, b.rt.RemovePodSandbox)
}

func (p *Proxy) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	b := p.forID(req.GetPodSandboxId())
	return forward(ctx, b, req, b.rt.UpdatePodSandboxResources)
}

func (p *Proxy) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	b := p.forID(req.GetPodSandboxId())
	return forwardStatus(ctx, p, b, "PodSandboxStatus", req, b.rt.PodSandboxStatus)
}

// ListPodSandbox goes to the owner of filter.id, else to every runtime.
func (p *Proxy) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	if id := req.GetFilter().GetId(); id != "" {
		b := p.forID(id)
		return forward(ctx, b, req, b.rt.ListPodSandbox)
	}
	items, err := listAll(ctx, p, "ListPodSandbox", req,
		func(b *backend) unary[*runtimeapi.ListPodSandboxRequest, *runtimeapi.ListPodSandboxResponse] {
			return b.rt.ListPodSandbox
		},
		(*runtimeapi.ListPodSandboxResponse).GetItems)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxResponse{Items: items}, nil
}

func (p *Proxy) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, s grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxesResponse]) error {
	return relay(s.Context(), p, "StreamPodSandboxes", p.owners(req.GetFilter().GetId()), req,
		func(b *backend) opener[*runtimeapi.StreamPodSandboxesRequest, runtimeapi.StreamPodSandboxesResponse] {
			return b.rt.StreamPodSandboxes
		}, s.Send)
}

// owners is the runtime owning id, or every runtime when id is empty.
func (p *Proxy) owners(id string) []*backend {
	if id == "" {
		return p.all
	}
	return []*backend{p.forID(id)}
}

// CreateContainer goes to the sandbox's runtime; an image that belongs to
// another runtime is refused, since no runtime can run another's images.
func (p *Proxy) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	b := p.forID(req.GetPodSandboxId())
	if img := req.GetConfig().GetImage(); img != nil {
		if ib := p.forImage(img); ib != b {
			return nil, status.Errorf(codes.FailedPrecondition,
				"image %q belongs to runtime %q (%s) but pod sandbox %s runs on runtime %q: a pod's containers must use images of its runtime (for %s use images named %s<name>)",
				img.GetImage(), ib.name, p.imageRule(ib), req.GetPodSandboxId(), b.name, b.name, b.imagePrefixOrNone())
		}
	}
	return forward(ctx, b, req, b.rt.CreateContainer)
}

// imageRule says why an image belongs to runtime b, for error messages.
func (p *Proxy) imageRule(b *backend) string {
	if b.primary {
		return "images without a runtime's domain"
	}
	return "images named " + b.imagePrefix + "<name>"
}

func (b *backend) imagePrefixOrNone() string {
	if b.primary {
		return "without a domain of another runtime, e.g. "
	}
	return b.imagePrefix
}

func (p *Proxy) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	b := p.forID(req.GetContainerId())
	return forward(ctx, b, req, b.rt.StartContainer)
}

func (p *Proxy) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	b := p.forID(req.GetContainerId())
	return forward(ctx, b, req, b.rt.StopContainer)
}

func (p *Proxy) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	b := p.forID(req.GetContainerId())
	return forward(ctx, b, req, b.rt.RemoveContainer)
}

// containerOwners is the owner of the filter's container or sandbox ID,
// else every runtime.
func (p *Proxy) containerOwners(id, sandboxID string) []*backend {
	if id != "" {
		return []*backend{p.forID(id)}
	}
	return p.owners(sandboxID)
}

func (p *Proxy) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	if bs := p.containerOwners(req.GetFilter().GetId(), req.GetFilter().GetPodSandboxId()); len(bs) == 1 {
		return forward(ctx, bs[0], req, bs[0].rt.ListContainers)
	}
	items, err := listAll(ctx, p, "ListContainers", req,
		func(b *backend) unary[*runtimeapi.ListContainersRequest, *runtimeapi.ListContainersResponse] {
			return b.rt.ListContainers
		},
		(*runtimeapi.ListContainersResponse).GetContainers)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainersResponse{Containers: items}, nil
}

func (p *Proxy) StreamContainers(req *runtimeapi.StreamContainersRequest, s grpc.ServerStreamingServer[runtimeapi.StreamContainersResponse]) error {
	return relay(s.Context(), p, "StreamContainers", p.containerOwners(req.GetFilter().GetId(), req.GetFilter().GetPodSandboxId()), req,
		func(b *backend) opener[*runtimeapi.StreamContainersRequest, runtimeapi.StreamContainersResponse] {
			return b.rt.StreamContainers
		}, s.Send)
}

func (p *Proxy) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	b := p.forID(req.GetContainerId())
	return forwardStatus(ctx, p, b, "ContainerStatus", req, b.rt.ContainerStatus)
}

func (p *Proxy) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	b := p.forID(req.GetContainerId())
	return forward(ctx, b, req, b.rt.UpdateContainerResources)
}

func (p *Proxy) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	b := p.forID(req.GetContainerId())
	return forward(ctx, b, req, b.rt.ReopenContainerLog)
}

func (p *Proxy) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	b := p.forID(req.GetContainerId())
	return forward(ctx, b, req, b.rt.ExecSync)
}

// Exec, Attach and PortForward return the runtime's streaming URL
// unchanged: the client talks to the runtime's streaming server directly.
func (p *Proxy) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	b := p.forID(req.GetContainerId())
	return forward(ctx, b, req, b.rt.Exec)
}

func (p *Proxy) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	b := p.forID(req.GetContainerId())
	return forward(ctx, b, req, b.rt.Attach)
}

func (p *Proxy) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	b := p.forID(req.GetPodSandboxId())
	return forward(ctx, b, req, b.rt.PortForward)
}

func (p *Proxy) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	b := p.forID(req.GetContainerId())
	return forward(ctx, b, req, b.rt.ContainerStats)
}

func (p *Proxy) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	if bs := p.containerOwners(req.GetFilter().GetId(), req.GetFilter().GetPodSandboxId()); len(bs) == 1 {
		return forward(ctx, bs[0], req, bs[0].rt.ListContainerStats)
	}
	items, err := listAll(ctx, p, "ListContainerStats", req,
		func(b *backend) unary[*runtimeapi.ListContainerStatsRequest, *runtimeapi.ListContainerStatsResponse] {
			return b.rt.ListContainerStats
		},
		(*runtimeapi.ListContainerStatsResponse).GetStats)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainerStatsResponse{Stats: items}, nil
}

func (p *Proxy) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, s grpc.ServerStreamingServer[runtimeapi.StreamContainerStatsResponse]) error {
	return relay(s.Context(), p, "StreamContainerStats", p.containerOwners(req.GetFilter().GetId(), req.GetFilter().GetPodSandboxId()), req,
		func(b *backend) opener[*runtimeapi.StreamContainerStatsRequest, runtimeapi.StreamContainerStatsResponse] {
			return b.rt.StreamContainerStats
		}, s.Send)
}

func (p *Proxy) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	b := p.forID(req.GetPodSandboxId())
	return forward(ctx, b, req, b.rt.PodSandboxStats)
}

func (p *Proxy) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	if id := req.GetFilter().GetId(); id != "" {
		b := p.forID(id)
		return forward(ctx, b, req, b.rt.ListPodSandboxStats)
	}
	items, err := listAll(ctx, p, "ListPodSandboxStats", req,
		func(b *backend) unary[*runtimeapi.ListPodSandboxStatsRequest, *runtimeapi.ListPodSandboxStatsResponse] {
			return b.rt.ListPodSandboxStats
		},
		(*runtimeapi.ListPodSandboxStatsResponse).GetStats)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: items}, nil
}

func (p *Proxy) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, s grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxStatsResponse]) error {
	return relay(s.Context(), p, "StreamPodSandboxStats", p.owners(req.GetFilter().GetId()), req,
		func(b *backend) opener[*runtimeapi.StreamPodSandboxStatsRequest, runtimeapi.StreamPodSandboxStatsResponse] {
			return b.rt.StreamPodSandboxStats
		}, s.Send)
}

func (p *Proxy) CheckpointContainer(ctx context.Context, req *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	b := p.forID(req.GetContainerId())
	return forward(ctx, b, req, b.rt.CheckpointContainer)
}

func (p *Proxy) CheckpointPod(ctx context.Context, req *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	b := p.forID(req.GetPodSandboxId())
	return forward(ctx, b, req, b.rt.CheckpointPod)
}

// RestorePod creates a sandbox, so it is routed like RunPodSandbox.
func (p *Proxy) RestorePod(ctx context.Context, req *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	b, err := p.forSandbox(req.GetConfig(), req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	return forward(ctx, b, req, b.rt.RestorePod)
}

func (p *Proxy) StreamPodSandboxMetrics(req *runtimeapi.StreamPodSandboxMetricsRequest, s grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxMetricsResponse]) error {
	return relay(s.Context(), p, "StreamPodSandboxMetrics", p.all, req,
		func(b *backend) opener[*runtimeapi.StreamPodSandboxMetricsRequest, runtimeapi.StreamPodSandboxMetricsResponse] {
			return b.rt.StreamPodSandboxMetrics
		}, s.Send)
}

// GetContainerEvents merges the event streams of every runtime. The call
// ends with the primary's stream (an Unimplemented primary makes kubelet
// fall back to polling); another runtime's stream that breaks is reopened
// with backoff, and one that is unimplemented is left out.
func (p *Proxy) GetContainerEvents(req *runtimeapi.GetEventsRequest, s grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	ctx, cancel := context.WithCancel(s.Context())
	defer cancel()
	events := make(chan *runtimeapi.ContainerEventResponse)
	primaryDone := make(chan error, 1)
	send := func(ev *runtimeapi.ContainerEventResponse) error {
		select {
		case events <- ev:
			return nil
		case <-ctx.Done():
			return sendError{ctx.Err()}
		}
	}
	for _, b := range p.all {
		go func() {
			if b.primary {
				primaryDone <- b.wrap(relayOne(ctx, b, clone(req), b.rt.GetContainerEvents, send))
				return
			}
			p.followEvents(ctx, b, req, send)
		}()
	}
	for {
		select {
		case ev := <-events:
			if err := s.Send(ev); err != nil {
				return err
			}
		case err := <-primaryDone:
			return err
		}
	}
}

func (p *Proxy) followEvents(ctx context.Context, b *backend, req *runtimeapi.GetEventsRequest, send func(*runtimeapi.ContainerEventResponse) error) {
	delay := 100 * time.Millisecond
	for {
		err := relayOne(ctx, b, proto.Clone(req).(*runtimeapi.GetEventsRequest), b.rt.GetContainerEvents, send)
		if ctx.Err() != nil {
			return
		}
		if status.Code(err) == codes.Unimplemented {
			p.log.Debug("GetContainerEvents: runtime has no event stream", "runtime", b.name)
			return
		}
		p.log.Warn("GetContainerEvents: runtime's stream ended; reopening", "runtime", b.name, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}
