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

// TestStatsListsMerge: both runtimes' containers and sandboxes, each
// once, podvisor's under its prefix; a filter on a podvisor ID asks
// podvisor only.
func TestStatsListsMerge(t *testing.T) {
	e := newEnv(t)
	c := ctx(t)
	pod := runPod(t, e, "web", "", nil)
	vm := runPod(t, e, "vm", "podvisor", nil)
	var want []string
	for sb, img := range map[string]string{pod: "busybox", vm: "virtlet.cloud/cirros"} {
		cr, err := e.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: sb,
			Config: &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: img}}})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, cr.ContainerId)
	}
	cs, err := e.rt.ListContainerStats(c, &runtimeapi.ListContainerStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range cs.Stats {
		got = append(got, s.Attributes.Id)
	}
	if d := cmp.Diff(sorted(want...), sorted(got...)); d != "" {
		t.Errorf("ListContainerStats (-want +got):\n%s", d)
	}
	ps, err := e.rt.ListPodSandboxStats(c, &runtimeapi.ListPodSandboxStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, s := range ps.Stats {
		got = append(got, s.Attributes.Id)
	}
	if d := cmp.Diff(sorted(pod, vm), sorted(got...)); d != "" {
		t.Errorf("ListPodSandboxStats (-want +got):\n%s", d)
	}
	one, err := e.rt.ListPodSandboxStats(c, &runtimeapi.ListPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{Id: vm}})
	if err != nil || len(one.Stats) != 1 || one.Stats[0].Attributes.Id != vm {
		t.Errorf("ListPodSandboxStats of %s = %v, %v", vm, one, err)
	}
	if e.primary.sawCall("ListPodSandboxStats " + vm) {
		t.Error("a filter on a podvisor ID reached containerd")
	}
}
