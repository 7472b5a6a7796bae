package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// VM is one running VM's usage, for the per-VM metrics.
type VM struct {
	Namespace, Pod, UID, Container string
	Stats                          hypervisor.Stats
}

// VMs reports the running VMs at each scrape.
type VMs interface {
	VMs(ctx context.Context) []VM
}

// scrapeTimeout bounds the hypervisor calls of one scrape.
const scrapeTimeout = 10 * time.Second

var vmLabels = []string{"namespace", "pod", "uid", "container"}

func vmDesc(name, help string, extra ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, append(append([]string{}, vmLabels...), extra...), nil)
}

// vmMetric is one per-VM metric and how a VM's stats give its values.
type vmMetric struct {
	desc   *prometheus.Desc
	typ    prometheus.ValueType
	values func(hypervisor.Stats) []value
}

type value struct {
	v     float64
	extra []string
}

func single(v uint64) []value { return []value{{v: float64(v)}} }

func disks(f func(hypervisor.DiskStats) uint64) func(hypervisor.Stats) []value {
	return func(st hypervisor.Stats) []value {
		var out []value
		for _, d := range st.Disks {
			out = append(out, value{float64(f(d)), []string{d.Target}})
		}
		return out
	}
}

func nics(f func(hypervisor.InterfaceStats) uint64) func(hypervisor.Stats) []value {
	return func(st hypervisor.Stats) []value {
		var out []value
		for _, i := range st.Interfaces {
			out = append(out, value{float64(f(i)), []string{i.Name}})
		}
		return out
	}
}

var vmMetrics = []vmMetric{
	{vmDesc("podvisor_vm_cpu_seconds_total", "CPU time the VM's emulator used (vCPUs and its own threads)."), prometheus.CounterValue,
		func(st hypervisor.Stats) []value { return []value{{v: st.CPUTime.Seconds()}} }},
	{vmDesc("podvisor_vm_memory_working_set_bytes", "The guest's working set (its RAM less what it reports usable; the emulator's RSS when the guest reports nothing)."), prometheus.GaugeValue,
		func(st hypervisor.Stats) []value { return single(st.MemoryBytes) }},
	{vmDesc("podvisor_vm_memory_usage_bytes", "The guest's memory in use, page cache included."), prometheus.GaugeValue,
		func(st hypervisor.Stats) []value { return single(st.Memory.UsageBytes) }},
	{vmDesc("podvisor_vm_memory_rss_bytes", "Resident memory of the VM's emulator process on the host."), prometheus.GaugeValue,
		func(st hypervisor.Stats) []value { return single(st.Memory.RSSBytes) }},
	{vmDesc("podvisor_vm_memory_limit_bytes", "The guest's configured RAM."), prometheus.GaugeValue,
		func(st hypervisor.Stats) []value { return single(st.MemoryLimitBytes) }},
	{vmDesc("podvisor_vm_disk_read_bytes_total", "Bytes the guest read from the disk.", "device"), prometheus.CounterValue,
		disks(func(d hypervisor.DiskStats) uint64 { return d.ReadBytes })},
	{vmDesc("podvisor_vm_disk_written_bytes_total", "Bytes the guest wrote to the disk.", "device"), prometheus.CounterValue,
		disks(func(d hypervisor.DiskStats) uint64 { return d.WriteBytes })},
	{vmDesc("podvisor_vm_disk_reads_total", "Read operations of the guest on the disk.", "device"), prometheus.CounterValue,
		disks(func(d hypervisor.DiskStats) uint64 { return d.ReadOps })},
	{vmDesc("podvisor_vm_disk_writes_total", "Write operations of the guest on the disk.", "device"), prometheus.CounterValue,
		disks(func(d hypervisor.DiskStats) uint64 { return d.WriteOps })},
	{vmDesc("podvisor_vm_disk_allocated_bytes", "Host bytes the disk's image file takes (for the root overlay: what the guest wrote).", "device"), prometheus.GaugeValue,
		disks(func(d hypervisor.DiskStats) uint64 { return d.AllocatedBytes })},
	{vmDesc("podvisor_vm_network_receive_bytes_total", "Bytes received on an interface of the pod's network namespace.", "interface"), prometheus.CounterValue,
		nics(func(i hypervisor.InterfaceStats) uint64 { return i.RxBytes })},
	{vmDesc("podvisor_vm_network_transmit_bytes_total", "Bytes sent on an interface of the pod's network namespace.", "interface"), prometheus.CounterValue,
		nics(func(i hypervisor.InterfaceStats) uint64 { return i.TxBytes })},
	{vmDesc("podvisor_vm_network_receive_packets_total", "Packets received on an interface of the pod's network namespace.", "interface"), prometheus.CounterValue,
		nics(func(i hypervisor.InterfaceStats) uint64 { return i.RxPackets })},
	{vmDesc("podvisor_vm_network_transmit_packets_total", "Packets sent on an interface of the pod's network namespace.", "interface"), prometheus.CounterValue,
		nics(func(i hypervisor.InterfaceStats) uint64 { return i.TxPackets })},
	{vmDesc("podvisor_vm_network_receive_errors_total", "Receive errors on an interface of the pod's network namespace.", "interface"), prometheus.CounterValue,
		nics(func(i hypervisor.InterfaceStats) uint64 { return i.RxErrors })},
	{vmDesc("podvisor_vm_network_transmit_errors_total", "Transmit errors on an interface of the pod's network namespace.", "interface"), prometheus.CounterValue,
		nics(func(i hypervisor.InterfaceStats) uint64 { return i.TxErrors })},
}

// AddVMs exports every running VM's usage at each scrape, labelled by its
// pod and container, and the hypervisor's accelerator as
// podvisor_accelerator_info.
func (m *Metrics) AddVMs(vms VMs, info hypervisor.Info) {
	m.reg.MustRegister(&vmCollector{vms: vms, info: info,
		accel: prometheus.NewDesc("podvisor_accelerator_info",
			"The accelerator the node's VMs get (kvm, tcg or sim), from the hypervisor; always 1.",
			[]string{"accelerator", "hypervisor", "version"}, nil)})
}

type vmCollector struct {
	vms   VMs
	info  hypervisor.Info
	accel *prometheus.Desc
}

func (c *vmCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.accel
	for _, m := range vmMetrics {
		ch <- m.desc
	}
}

func (c *vmCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.accel, prometheus.GaugeValue, 1, c.info.Accelerator, c.info.Name, c.info.Version)
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	for _, vm := range c.vms.VMs(ctx) {
		labels := []string{vm.Namespace, vm.Pod, vm.UID, vm.Container}
		for _, m := range vmMetrics {
			for _, v := range m.values(vm.Stats) {
				ch <- prometheus.MustNewConstMetric(m.desc, m.typ, v.v, append(append([]string{}, labels...), v.extra...)...)
			}
		}
	}
}
