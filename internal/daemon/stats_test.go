package daemon

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestStatsOfARunningVM: the CRI stats of a VM on the simulated
// hypervisor (2 vCPUs at 10% each, a NIC and disks whose counters grow
// with guest time, doc.go of fakes/simhv) as kubelet reads them.
func TestStatsOfARunningVM(t *testing.T) {
	h := newHarness(t)
	h.stop()
	h.cfg.MetricsAddr = "127.0.0.1:0"
	h.start()
	c := ctx(t)
	run, cr := h.createdVM(t, "st")
	if _, err := h.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatal(err)
	}
	first := containerStats(t, h, cr.ContainerId)
	if first.Cpu.UsageNanoCores != nil {
		t.Errorf("first sample's UsageNanoCores = %v, want none (no earlier sample: kubelet computes its own)", first.Cpu.UsageNanoCores)
	}
	var second *runtimeapi.ContainerStats
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		second = containerStats(t, h, cr.ContainerId)
		if second.Cpu.UsageCoreNanoSeconds.GetValue() > first.Cpu.UsageCoreNanoSeconds.GetValue() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time does not grow: %v then %v", first.Cpu, second.Cpu)
		}
	}
	// The simulated guest uses 10% of each of its 2 vCPUs.
	if got := second.Cpu.UsageNanoCores.GetValue(); got < 199e6 || got > 201e6 {
		t.Errorf("UsageNanoCores = %d, want 2e8 (0.2 cores)", got)
	}
	if ws, lim := second.Memory.WorkingSetBytes.GetValue(), uint64(1<<30); ws != lim/4 || second.Memory.UsageBytes.GetValue() != lim/2 {
		t.Errorf("memory = %v, want a working set of a quarter and usage of half of the default 1 GiB", second.Memory)
	}
	if got := second.WritableLayer.GetUsedBytes().GetValue(); got == 0 {
		t.Errorf("writable layer = %v, want the root overlay's allocated bytes", second.WritableLayer)
	}

	ps, err := h.rt.PodSandboxStats(c, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: run.PodSandboxId})
	if err != nil {
		t.Fatal(err)
	}
	net := ps.Stats.GetLinux().GetNetwork()
	if net.GetDefaultInterface().GetName() != "eth0" || net.GetDefaultInterface().GetRxBytes().GetValue() == 0 {
		t.Errorf("pod network = %v, want eth0 with bytes received", net)
	}
	if len(ps.Stats.GetLinux().GetContainers()) != 1 || ps.Stats.GetLinux().GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 {
		t.Errorf("pod stats = %v, want the VM's CPU and its container", ps.Stats.GetLinux())
	}
	checkCRIMetrics(t, h, run.PodSandboxId, cr.ContainerId)
	checkVMMetrics(t, h)
}

func containerStats(t *testing.T, h *harness, id string) *runtimeapi.ContainerStats {
	t.Helper()
	st, err := h.rt.ContainerStats(ctx(t), &runtimeapi.ContainerStatsRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	return st.Stats
}

// checkCRIMetrics: every metric has a descriptor and as many label values
// as it has keys (else kubelet drops it), with cAdvisor's names.
func checkCRIMetrics(t *testing.T, h *harness, sandboxID, containerID string) {
	t.Helper()
	c := ctx(t)
	ds, err := h.rt.ListMetricDescriptors(c, &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, d := range ds.Descriptors {
		keys[d.Name] = d.LabelKeys
	}
	ms, err := h.rt.ListPodSandboxMetrics(c, &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms.PodMetrics) != 1 || ms.PodMetrics[0].PodSandboxId != sandboxID || len(ms.PodMetrics[0].ContainerMetrics) != 1 ||
		ms.PodMetrics[0].ContainerMetrics[0].ContainerId != containerID {
		t.Fatalf("ListPodSandboxMetrics = %v, want the sandbox and its VM container", ms)
	}
	seen := map[string]string{}
	check := func(m *runtimeapi.Metric) {
		k, ok := keys[m.Name]
		if !ok || len(k) != len(m.LabelValues) {
			t.Errorf("metric %s: labels %v for keys %v (described: %v)", m.Name, m.LabelValues, k, ok)
			return
		}
		var l []string
		for i := range k {
			l = append(l, fmt.Sprintf("%s=%s", k[i], m.LabelValues[i]))
		}
		seen[m.Name] += strings.Join(l, ",") + "; "
	}
	for _, m := range ms.PodMetrics[0].Metrics {
		check(m)
	}
	for _, m := range ms.PodMetrics[0].ContainerMetrics[0].Metrics {
		check(m)
	}
	for name, want := range map[string]string{
		"container_cpu_usage_seconds_total":     "container=vm,id=" + containerID,
		"container_memory_working_set_bytes":    "namespace=default,pod=st",
		"container_fs_usage_bytes":              "device=sda",
		"container_network_receive_bytes_total": "container=POD,id=" + sandboxID,
	} {
		if !strings.Contains(seen[name], want) {
			t.Errorf("metric %s has labels %q, want %s", name, seen[name], want)
		}
	}
}

func checkVMMetrics(t *testing.T, h *harness) {
	t.Helper()
	resp, err := http.Get("http://" + h.d.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	labels := `container="vm",namespace="default",pod="st",uid="uid-st"`
	for _, want := range []string{
		`podvisor_accelerator_info{accelerator="sim",hypervisor="sim"`,
		`podvisor_vm_cpu_seconds_total{` + labels + `} `,
		`podvisor_vm_memory_working_set_bytes{` + labels + `} 2.68435456e+08`,
		`podvisor_vm_memory_limit_bytes{` + labels + `} 1.073741824e+09`,
		`podvisor_vm_disk_allocated_bytes{container="vm",device="sda",namespace="default",pod="st",uid="uid-st"} `,
		`podvisor_vm_network_receive_bytes_total{container="vm",interface="eth0",namespace="default",pod="st",uid="uid-st"} `,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
