package cri

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
	"github.com/podvisor/podvisor/runtime/pod"
)

// ContainerStats reports the VM's CPU and memory.
func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	if req.GetContainerId() == "" {
		return nil, errdefs.InvalidArgumentf("ContainerStats: container_id is required")
	}
	c, st, err := s.cfg.Lifecycle.Stats(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: s.containerStatsToCRI(c, st)}, nil
}

// ListContainerStats reports stats of the containers matching the filter.
func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	out, err := s.listContainerStats(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainerStatsResponse{Stats: out}, nil
}

// StreamContainerStats sends the stats list in one message.
func (s *Server) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainerStatsResponse]) error {
	out, err := s.listContainerStats(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	return stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: out})
}

func (s *Server) listContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	filter := pod.ContainerFilter{ID: f.GetId(), SandboxID: f.GetPodSandboxId(), LabelSelector: f.GetLabelSelector()}
	var out []*runtimeapi.ContainerStats
	for _, c := range s.cfg.Lifecycle.ListContainers(filter) {
		c, st, err := s.cfg.Lifecycle.Stats(ctx, c.ID)
		if isNotFound(err) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s.containerStatsToCRI(c, st))
	}
	return out, nil
}

// PodSandboxStats reports the pod's usage: its VM's.
func (s *Server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, errdefs.InvalidArgumentf("PodSandboxStats: pod_sandbox_id is required")
	}
	sb, err := s.cfg.Lifecycle.PodSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st, err := s.sandboxStats(ctx, sb)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: st}, nil
}

// ListPodSandboxStats reports stats of the sandboxes matching the filter.
func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	out, err := s.listSandboxStats(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: out}, nil
}

// StreamPodSandboxStats sends the stats list in one message.
func (s *Server) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxStatsResponse]) error {
	out, err := s.listSandboxStats(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	return stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: out})
}

func (s *Server) listSandboxStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) ([]*runtimeapi.PodSandboxStats, error) {
	var out []*runtimeapi.PodSandboxStats
	for _, sb := range s.cfg.Lifecycle.ListPodSandboxes(pod.SandboxFilter{ID: f.GetId(), LabelSelector: f.GetLabelSelector()}) {
		st, err := s.sandboxStats(ctx, *sb)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func (s *Server) sandboxStats(ctx context.Context, sb pod.Sandbox) (*runtimeapi.PodSandboxStats, error) {
	out := &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{
			Id:          sb.ID,
			Metadata:    sandboxMetadataToCRI(sb.Config),
			Labels:      sb.Config.Labels,
			Annotations: sb.Config.Annotations,
		},
		Linux: &runtimeapi.LinuxPodSandboxStats{},
	}
	var cpu, mem, usage uint64
	ts := time.Now()
	for _, c := range s.cfg.Lifecycle.ListContainers(pod.ContainerFilter{SandboxID: sb.ID}) {
		c, st, err := s.cfg.Lifecycle.Stats(ctx, c.ID)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out.Linux.Containers = append(out.Linux.Containers, s.containerStatsToCRI(c, st))
		cpu += uint64(st.CPUTime)
		mem += st.MemoryBytes
		usage += st.Memory.UsageBytes
		ts = st.Timestamp
		if len(st.Interfaces) > 0 {
			// One VM per pod: its emulator's namespace is the pod's.
			out.Linux.Network = networkToCRI(st)
		}
	}
	nano := s.cpu.nanoCores("sandbox/"+sb.ID, ts, cpu)
	out.Linux.Cpu = &runtimeapi.CpuUsage{Timestamp: ts.UnixNano(),
		UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: cpu}, UsageNanoCores: nano}
	out.Linux.Memory = &runtimeapi.MemoryUsage{Timestamp: ts.UnixNano(),
		WorkingSetBytes: &runtimeapi.UInt64Value{Value: mem}, UsageBytes: &runtimeapi.UInt64Value{Value: usage}}
	return out, nil
}

func (s *Server) containerStatsToCRI(c pod.Container, st hypervisor.Stats) *runtimeapi.ContainerStats {
	ts := st.Timestamp.UnixNano()
	cpu := uint64(st.CPUTime)
	m := st.Memory
	return &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Id:          c.ID,
			Metadata:    &runtimeapi.ContainerMetadata{Name: c.Config.Name, Attempt: c.Config.Attempt},
			Labels:      c.Config.Labels,
			Annotations: c.Config.Annotations,
		},
		Cpu: &runtimeapi.CpuUsage{Timestamp: ts, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: cpu},
			UsageNanoCores: s.cpu.nanoCores("container/"+c.ID, st.Timestamp, cpu)},
		Memory: &runtimeapi.MemoryUsage{
			Timestamp:       ts,
			WorkingSetBytes: &runtimeapi.UInt64Value{Value: st.MemoryBytes},
			UsageBytes:      &runtimeapi.UInt64Value{Value: m.UsageBytes},
			RssBytes:        &runtimeapi.UInt64Value{Value: m.RSSBytes},
			AvailableBytes:  available(st),
		},
		WritableLayer: &runtimeapi.FilesystemUsage{Timestamp: ts, FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: c.Dir},
			UsedBytes: &runtimeapi.UInt64Value{Value: writableLayerBytes(st)}},
	}
}

// writableLayerBytes is what the root overlay (the domain's first disk)
// takes on the host: what the guest wrote to its root disk.
func writableLayerBytes(st hypervisor.Stats) uint64 {
	if len(st.Disks) == 0 {
		return 0
	}
	return st.Disks[0].AllocatedBytes
}

// available is the guest's RAM less its working set, as cAdvisor's
// available is the limit less the working set (nil without a limit).
func available(st hypervisor.Stats) *runtimeapi.UInt64Value {
	if st.MemoryLimitBytes == 0 {
		return nil
	}
	return &runtimeapi.UInt64Value{Value: st.MemoryLimitBytes - min(st.MemoryLimitBytes, st.MemoryBytes)}
}

// defaultInterface is the pod's interface kubelet reports as the pod's
// network (its CNI interface, as for container pods).
const defaultInterface = "eth0"

func networkToCRI(st hypervisor.Stats) *runtimeapi.NetworkUsage {
	n := &runtimeapi.NetworkUsage{Timestamp: st.Timestamp.UnixNano()}
	for _, i := range st.Interfaces {
		is := &runtimeapi.NetworkInterfaceUsage{Name: i.Name,
			RxBytes: &runtimeapi.UInt64Value{Value: i.RxBytes}, RxErrors: &runtimeapi.UInt64Value{Value: i.RxErrors},
			TxBytes: &runtimeapi.UInt64Value{Value: i.TxBytes}, TxErrors: &runtimeapi.UInt64Value{Value: i.TxErrors}}
		n.Interfaces = append(n.Interfaces, is)
		if i.Name == defaultInterface || n.DefaultInterface == nil {
			n.DefaultInterface = is
		}
	}
	return n
}

// isNotFound: the object went away between the list and the stats call.
func isNotFound(err error) bool {
	return errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, hypervisor.ErrNotFound)
}
