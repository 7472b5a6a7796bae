package cri

import (
	"context"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/hypervisor"
	"github.com/podvisor/podvisor/runtime/pod"
)

// The CRI metrics verbs serve kubelet's /metrics/cadvisor when its
// PodAndContainerStatsFromCRI gate is on: kubelet turns each descriptor
// into a Prometheus description with the descriptor's label keys as they
// are (kubelet 1.37 adds none), so the metrics carry the names and labels
// cAdvisor's kubelet endpoint has: container, id, image, name, namespace,
// pod, plus cpu, device or interface where cAdvisor has them. Pod-level
// metrics (the network) are reported for container "POD", as cAdvisor
// reports them for the pod's sandbox. The CRI carries integers, so
// container_cpu_usage_seconds_total is in whole seconds, as CRI-O's is.

var baseLabels = []string{"container", "id", "image", "name", "namespace", "pod"}

func withLabels(extra ...string) []string {
	return append(append([]string{}, baseLabels...), extra...)
}

// metricDef is one metric: its descriptor and how a VM's stats give its
// values (one per extra label value set).
type metricDef struct {
	desc   *runtimeapi.MetricDescriptor
	typ    runtimeapi.MetricType
	values func(hypervisor.Stats) []labelled
}

type labelled struct {
	extra []string
	v     uint64
}

func one(v uint64, extra ...string) []labelled { return []labelled{{extra, v}} }

func perDisk(f func(hypervisor.DiskStats) uint64) func(hypervisor.Stats) []labelled {
	return func(st hypervisor.Stats) []labelled {
		var out []labelled
		for _, d := range st.Disks {
			out = append(out, labelled{[]string{d.Target}, f(d)})
		}
		return out
	}
}

func perInterface(f func(hypervisor.InterfaceStats) uint64) func(hypervisor.Stats) []labelled {
	return func(st hypervisor.Stats) []labelled {
		var out []labelled
		for _, i := range st.Interfaces {
			out = append(out, labelled{[]string{i.Name}, f(i)})
		}
		return out
	}
}

func def(name, help string, typ runtimeapi.MetricType, values func(hypervisor.Stats) []labelled, extra ...string) metricDef {
	return metricDef{&runtimeapi.MetricDescriptor{Name: name, Help: help, LabelKeys: withLabels(extra...)}, typ, values}
}

const (
	counter = runtimeapi.MetricType_COUNTER
	gauge   = runtimeapi.MetricType_GAUGE
)

// containerMetrics are reported for the VM container.
var containerMetrics = []metricDef{
	def("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", counter,
		func(st hypervisor.Stats) []labelled { return one(uint64(st.CPUTime.Seconds()), "total") }, "cpu"),
	def("container_memory_working_set_bytes", "Current working set in bytes.", gauge,
		func(st hypervisor.Stats) []labelled { return one(st.MemoryBytes) }),
	def("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", gauge,
		func(st hypervisor.Stats) []labelled { return one(st.Memory.UsageBytes) }),
	def("container_memory_rss", "Size of RSS in bytes.", gauge,
		func(st hypervisor.Stats) []labelled { return one(st.Memory.RSSBytes) }),
	def("container_memory_cache", "Number of bytes of page cache memory.", gauge,
		func(st hypervisor.Stats) []labelled { return one(st.Memory.CacheBytes) }),
	def("container_spec_memory_limit_bytes", "Memory limit for the container.", gauge,
		func(st hypervisor.Stats) []labelled { return one(st.MemoryLimitBytes) }),
	def("container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", gauge,
		perDisk(func(d hypervisor.DiskStats) uint64 { return d.AllocatedBytes }), "device"),
	def("container_fs_reads_bytes_total", "Cumulative count of bytes read", counter,
		perDisk(func(d hypervisor.DiskStats) uint64 { return d.ReadBytes }), "device"),
	def("container_fs_writes_bytes_total", "Cumulative count of bytes written", counter,
		perDisk(func(d hypervisor.DiskStats) uint64 { return d.WriteBytes }), "device"),
	def("container_fs_reads_total", "Cumulative count of reads completed", counter,
		perDisk(func(d hypervisor.DiskStats) uint64 { return d.ReadOps }), "device"),
	def("container_fs_writes_total", "Cumulative count of writes completed", counter,
		perDisk(func(d hypervisor.DiskStats) uint64 { return d.WriteOps }), "device"),
}

// podMetrics are reported for the pod (container "POD"): its network.
var podMetrics = []metricDef{
	def("container_network_receive_bytes_total", "Cumulative count of bytes received", counter,
		perInterface(func(i hypervisor.InterfaceStats) uint64 { return i.RxBytes }), "interface"),
	def("container_network_receive_packets_total", "Cumulative count of packets received", counter,
		perInterface(func(i hypervisor.InterfaceStats) uint64 { return i.RxPackets }), "interface"),
	def("container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", counter,
		perInterface(func(i hypervisor.InterfaceStats) uint64 { return i.RxDropped }), "interface"),
	def("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", counter,
		perInterface(func(i hypervisor.InterfaceStats) uint64 { return i.RxErrors }), "interface"),
	def("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", counter,
		perInterface(func(i hypervisor.InterfaceStats) uint64 { return i.TxBytes }), "interface"),
	def("container_network_transmit_packets_total", "Cumulative count of packets transmitted", counter,
		perInterface(func(i hypervisor.InterfaceStats) uint64 { return i.TxPackets }), "interface"),
	def("container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", counter,
		perInterface(func(i hypervisor.InterfaceStats) uint64 { return i.TxDropped }), "interface"),
	def("container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", counter,
		perInterface(func(i hypervisor.InterfaceStats) uint64 { return i.TxErrors }), "interface"),
}

// ListMetricDescriptors describes every metric ListPodSandboxMetrics reports.
func (s *Server) ListMetricDescriptors(context.Context, *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	out := &runtimeapi.ListMetricDescriptorsResponse{}
	for _, ms := range [][]metricDef{containerMetrics, podMetrics} {
		for _, m := range ms {
			out.Descriptors = append(out.Descriptors, m.desc)
		}
	}
	return out, nil
}

// ListPodSandboxMetrics reports the metrics of every sandbox's running VM.
func (s *Server) ListPodSandboxMetrics(ctx context.Context, _ *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	out, err := s.podSandboxMetrics(ctx)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: out}, nil
}

// StreamPodSandboxMetrics sends the metrics list in one message.
func (s *Server) StreamPodSandboxMetrics(_ *runtimeapi.StreamPodSandboxMetricsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxMetricsResponse]) error {
	out, err := s.podSandboxMetrics(stream.Context())
	if err != nil {
		return err
	}
	return stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: out})
}

func (s *Server) podSandboxMetrics(ctx context.Context) ([]*runtimeapi.PodSandboxMetrics, error) {
	var out []*runtimeapi.PodSandboxMetrics
	for _, sb := range s.cfg.Lifecycle.ListPodSandboxes(pod.SandboxFilter{}) {
		pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: sb.ID}
		running := pod.ContainerRunning
		for _, c := range s.cfg.Lifecycle.ListContainers(pod.ContainerFilter{SandboxID: sb.ID, State: &running}) {
			c, st, err := s.cfg.Lifecycle.Stats(ctx, c.ID)
			if isNotFound(err) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if st.CPUTime == 0 && st.MemoryLimitBytes == 0 {
				continue // stopped meanwhile: no stats
			}
			base := []string{c.Config.Name, c.ID, c.ImageRef, c.DomainName, sb.Config.Namespace, sb.Config.Name}
			pm.ContainerMetrics = append(pm.ContainerMetrics, &runtimeapi.ContainerMetrics{
				ContainerId: c.ID, Metrics: metricsOf(containerMetrics, st, base)})
			podBase := []string{"POD", sb.ID, "", sb.ID, sb.Config.Namespace, sb.Config.Name}
			pm.Metrics = append(pm.Metrics, metricsOf(podMetrics, st, podBase)...)
		}
		out = append(out, pm)
	}
	return out, nil
}

func metricsOf(defs []metricDef, st hypervisor.Stats, base []string) []*runtimeapi.Metric {
	var out []*runtimeapi.Metric
	for _, d := range defs {
		for _, l := range d.values(st) {
			out = append(out, &runtimeapi.Metric{Name: d.desc.Name, Timestamp: st.Timestamp.UnixNano(), MetricType: d.typ,
				LabelValues: append(append([]string{}, base...), l.extra...), Value: &runtimeapi.UInt64Value{Value: l.v}})
		}
	}
	return out
}
