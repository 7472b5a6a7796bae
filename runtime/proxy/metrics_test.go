package proxy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func desc(name string, keys ...string) *runtimeapi.MetricDescriptor {
	return &runtimeapi.MetricDescriptor{Name: name, Help: name + " help", LabelKeys: keys}
}

func metric(name string, v uint64, labels ...string) *runtimeapi.Metric {
	return &runtimeapi.Metric{Name: name, LabelValues: labels, MetricType: runtimeapi.MetricType_COUNTER, Value: &runtimeapi.UInt64Value{Value: v}}
}

// TestMetricsMerge: containerd and podvisor both describe cAdvisor's CPU
// metric, with different label keys; kubelet gets one description with
// every key and both runtimes' metrics with values in its order.
func TestMetricsMerge(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	e.primary.metrics = &fakeMetrics{
		descs: []*runtimeapi.MetricDescriptor{desc("container_cpu_usage_seconds_total", "id", "name")},
		pods: []*runtimeapi.PodSandboxMetrics{{PodSandboxId: "s1", ContainerMetrics: []*runtimeapi.ContainerMetrics{{ContainerId: "c1",
			Metrics: []*runtimeapi.Metric{metric("container_cpu_usage_seconds_total", 3, "c1", "web")}}}}},
	}
	e.vm.metrics = &fakeMetrics{
		descs: []*runtimeapi.MetricDescriptor{
			desc("container_cpu_usage_seconds_total", "container", "id", "name", "cpu"),
			desc("container_network_receive_bytes_total", "id", "interface"),
		},
		pods: []*runtimeapi.PodSandboxMetrics{{PodSandboxId: "s1",
			Metrics: []*runtimeapi.Metric{metric("container_network_receive_bytes_total", 100, "s1", "eth0")},
			ContainerMetrics: []*runtimeapi.ContainerMetrics{{ContainerId: "c1",
				Metrics: []*runtimeapi.Metric{metric("container_cpu_usage_seconds_total", 7, "vm", "c1", "pv-c1", "total")}}}}},
	}
	ds, err := e.rt.ListMetricDescriptors(c, &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	wantDescs := []*runtimeapi.MetricDescriptor{
		desc("container_cpu_usage_seconds_total", "id", "name", "container", "cpu"),
		desc("container_network_receive_bytes_total", "id", "interface"),
	}
	if d := cmp.Diff(wantDescs, ds.Descriptors, protocmp.Transform()); d != "" {
		t.Errorf("ListMetricDescriptors (-want +got):\n%s", d)
	}
	ms, err := e.rt.ListPodSandboxMetrics(c, &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := []*runtimeapi.PodSandboxMetrics{
		{PodSandboxId: "s1", ContainerMetrics: []*runtimeapi.ContainerMetrics{{ContainerId: "c1",
			Metrics: []*runtimeapi.Metric{metric("container_cpu_usage_seconds_total", 3, "c1", "web", "", "")}}}},
		{PodSandboxId: "podvisor__s1",
			Metrics: []*runtimeapi.Metric{metric("container_network_receive_bytes_total", 100, "s1", "eth0")},
			ContainerMetrics: []*runtimeapi.ContainerMetrics{{ContainerId: "podvisor__c1",
				Metrics: []*runtimeapi.Metric{metric("container_cpu_usage_seconds_total", 7, "c1", "pv-c1", "vm", "total")}}}},
	}
	if d := cmp.Diff(want, ms.PodMetrics, protocmp.Transform()); d != "" {
		t.Errorf("ListPodSandboxMetrics (-want +got):\n%s", d)
	}
}

// TestMetricsWithoutThePrimary: a containerd without the metrics verbs
// leaves podvisor's; with neither the answer is Unimplemented.
func TestMetricsWithoutThePrimary(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	if _, err := e.rt.ListMetricDescriptors(c, &runtimeapi.ListMetricDescriptorsRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("no runtime with metrics: %v, want Unimplemented", err)
	}
	e.vm.metrics = &fakeMetrics{descs: []*runtimeapi.MetricDescriptor{desc("m", "id")},
		pods: []*runtimeapi.PodSandboxMetrics{{PodSandboxId: "s1", Metrics: []*runtimeapi.Metric{metric("m", 1, "s1")}}}}
	ds, err := e.rt.ListMetricDescriptors(c, &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil || len(ds.Descriptors) != 1 {
		t.Fatalf("ListMetricDescriptors = %v, %v; want podvisor's", ds, err)
	}
	ms, err := e.rt.ListPodSandboxMetrics(c, &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil || len(ms.PodMetrics) != 1 || ms.PodMetrics[0].PodSandboxId != "podvisor__s1" {
		t.Fatalf("ListPodSandboxMetrics = %v, %v; want podvisor's pod", ms, err)
	}
}
