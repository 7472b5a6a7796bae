package libvirt

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/podvisor/podvisor/runtime/hypervisor"
	"github.com/podvisor/podvisor/runtime/hypervisor/netdev"
	lv "libvirt.org/go/libvirt"
)

// statsTypes are the groups of virDomainListGetStats Stats reads in one
// call: the cgroup's CPU time (vCPUs and emulator threads), the balloon
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
	for _, b := range r.Block {
		if b.BackingIndexSet && b.BackingIndex > 0 {
			continue // a backing image, not what the guest writes
		}
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
