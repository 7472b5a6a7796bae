package libvirt

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/podvisor/podvisor/runtime/hypervisor"
	"github.com/podvisor/podvisor/runtime/hypervisor/netdev"
	lv "libvirt.org/go/libvirt"
)

// statsTypes are the groups of virDomainListGetStats Stats reads in one
// call: the CPU time (libvirt's cgroup's; Stats prefers the emulator
// process's own), the balloon
// (the guest's own statistics, which the domain's <stats period> makes the
// driver poll) and the disks.
const statsTypes = lv.DOMAIN_STATS_STATE | lv.DOMAIN_STATS_CPU_TOTAL | lv.DOMAIN_STATS_BALLOON | lv.DOMAIN_STATS_BLOCK

// Stats reports CPU time, memory, disks and the pod network's interfaces
// of a running domain.
func (h *Hypervisor) Stats(ctx context.Context, name string) (hypervisor.Stats, error) {
	var s hypervisor.Stats
	err := h.do(ctx, func(c *lv.Connect) error {
		d, err := c.LookupDomainByName(name)
		if err != nil {
			return err
		}
		defer d.Free()
		s, err = domainStats(c, d)
		return err
	})
	if err != nil {
		return hypervisor.Stats{}, wrapErr(fmt.Sprintf("reading stats of domain %q", name), err)
	}
	if pid, _ := h.emulatorPID(name); pid > 0 {
		// libvirt's CPU time is its cgroup's, which QEMU leaves for its
		// pod's when it runs through podvisor-vmwrapper: the figure
		// stops growing there. The process's own time is the VM's.
		if cpu, err := processCPUTime(pid); err == nil {
			s.CPUTime = cpu
		}
		// The emulator runs in the pod's network namespace (the vmwrapper
		// enters it), so its /proc/<pid>/net/dev lists the pod's links.
		if ifs, err := netdev.ReadPID(pid); err == nil {
			s.Interfaces = ifs
		}
	}
	return s, nil
}

func domainStats(c *lv.Connect, d *lv.Domain) (hypervisor.Stats, error) {
	var s hypervisor.Stats
	info, err := d.GetInfo()
	if err != nil {
		return s, err
	}
	if info.State != lv.DOMAIN_RUNNING && info.State != lv.DOMAIN_PAUSED && info.State != lv.DOMAIN_BLOCKED {
		return s, fmt.Errorf("%w: the domain is not running", hypervisor.ErrInvalidState)
	}
	s.Timestamp = time.Now()
	s.CPUTime = time.Duration(info.CpuTime)
	s.MemoryLimitBytes = info.MaxMem * 1024
	s.Memory = hypervisor.MemoryStats{WorkingSetBytes: info.Memory * 1024, UsageBytes: info.Memory * 1024}
	recs, err := c.GetAllDomainStats([]*lv.Domain{d}, statsTypes, 0)
	if err != nil {
		return s, err
	}
	for _, r := range recs {
		fillStats(&s, r)
		_ = r.Domain.Free()
	}
	s.MemoryBytes = s.Memory.WorkingSetBytes
	return s, nil
}

// fillStats copies one virDomainListGetStats record into s.
func fillStats(s *hypervisor.Stats, r lv.DomainStats) {
	if c := r.Cpu; c != nil && c.TimeSet {
		s.CPUTime = time.Duration(c.Time)
	}
	if b := r.Balloon; b != nil {
		s.Memory = memoryStats(b, s.Memory)
	}
	// Without VIR_CONNECT_GET_ALL_DOMAINS_STATS_BACKING libvirt lists one
	// record per disk, its top image (what the guest writes to); under
	// -blockdev even that one carries a backingIndex (its node's number).
	for _, b := range r.Block {
		ds := hypervisor.DiskStats{Target: b.Name, Path: b.Path,
			ReadBytes: b.RdBytes, WriteBytes: b.WrBytes, ReadOps: b.RdReqs, WriteOps: b.WrReqs}
		ds.AllocatedBytes = allocatedBytes(b.Path)
		s.Disks = append(s.Disks, ds)
	}
}

// memoryStats prefers the guest's balloon statistics (KiB): the working
// set is the RAM the guest has less what it reports usable (MemAvailable:
// free memory and reclaimable caches), as cAdvisor's working set leaves out
// inactive file pages; usage is the RAM less free memory. Without them
// both are the emulator's RSS, then fallback.
func memoryStats(b *lv.DomainStatsBalloon, fallback hypervisor.MemoryStats) hypervisor.MemoryStats {
	m := fallback
	if b.RssSet {
		m.RSSBytes = b.Rss * 1024
		m.WorkingSetBytes, m.UsageBytes = m.RSSBytes, m.RSSBytes
	}
	if !b.AvailableSet || !b.UnusedSet || b.Available < b.Unused {
		return m
	}
	m.FromGuest = true
	m.UsageBytes = (b.Available - b.Unused) * 1024
	m.WorkingSetBytes = m.UsageBytes
	if b.UsableSet && b.Usable <= b.Available {
		m.WorkingSetBytes = (b.Available - b.Usable) * 1024
	}
	if b.DiskCachesSet {
		m.CacheBytes = b.DiskCaches * 1024
	}
	return m
}

// userHZ is the unit of /proc/<pid>/stat's times, fixed by the kernel's
// ABI whatever the kernel's own tick rate.
const userHZ = 100

// processCPUTime is the CPU time (user and system) of process pid and all
// its threads, the exited ones included, from /proc/<pid>/stat.
func processCPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStatCPU(string(b))
}

// parseProcStatCPU reads utime and stime (fields 14 and 15) of a
// /proc/<pid>/stat line; the command (field 2) may hold spaces and
// parentheses, so the fields are counted after its last ")".
func parseProcStatCPU(line string) (time.Duration, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, fmt.Errorf("reading CPU time from %q: no command field", line)
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state): utime is field 14, f[11].
	if len(f) < 13 {
		return 0, fmt.Errorf("reading CPU time from %q: %d fields after the command, want at least 13", line, len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading CPU time from /proc/<pid>/stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// allocatedBytes is the space a disk's image file takes on the host
// (0 when it cannot be read).
func allocatedBytes(path string) uint64 {
	if path == "" {
		return 0
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Blocks > 0 {
		return uint64(st.Blocks) * 512
	}
	return 0
}
