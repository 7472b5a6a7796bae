package processtests

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/internal/daemonproc"
)

// guestMiB is the bench VMs' RAM (the memory limit podvisorStart sets).
const guestMiB = 256

// vmSample is one VM's memory (KiB) once booted and settled.
type vmSample struct {
	domain string
	q      qemuMemory
	// workingSet is what ContainerStats reports (the balloon's figure, or
	// the emulator's RSS when the guest reports nothing).
	workingSet, rssStat uint64
}

// overheadRun is one round: n VMs booted together.
type overheadRun struct {
	n                    int
	cacheMiB             uint // --tcg-translation-cache-mib (0: QEMU's default)
	vms                  []vmSample
	daemonKiB, lvdKiB    uint64 // after the VMs booted
	daemon0KiB, lvd0KiB  uint64 // before
	bootTook, settleTook time.Duration
}

// TestOverheadBench measures docs/bench/overhead.md: host memory per VM
// beyond its guest's RAM for 1 and 10 VMs of the test guest.
func TestOverheadBench(t *testing.T) {
	gate(t, "PODVISOR_BENCH_OVERHEAD")
	guest := filepath.Join(envOr("PODVISOR_GUEST_DIR", "/var/tmp/podvisor-test-guest"), "podvisor-test-guest.qcow2")
	if _, err := os.Stat(guest); err != nil {
		t.Fatalf("the test guest: %v (ci/build-guest.sh builds it)", err)
	}
	load0 := loadavg()
	var runs []overheadRun
	sizes := []int{1, 10}
	if os.Getenv("PODVISOR_BENCH_ROUNDS") == "1" {
		sizes = []int{1, 2}
	}
	// QEMU's own translation cache size, then podvisor's default bound.
	for i, cache := range []uint{0, tcgCacheMiB} {
		b := newLibvirtNode(t, guest, nodeOpts{name: fmt.Sprintf("ovh%d", i), subnet: 78 - i,
			args: []string{"--tcg-translation-cache-mib", fmt.Sprint(cache)}})
		for _, n := range sizes {
			r := b.overheadRound(n)
			r.cacheMiB = cache
			runs = append(runs, r)
			b.removeAll()
		}
	}
	md := overheadReport{runs: runs, load0: load0, load1: loadavg()}.markdown()
	t.Log("\n" + md)
	if out := os.Getenv("PODVISOR_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// overheadRound boots n VMs, lets them settle and reads their memory.
func (b *libvirtNode) overheadRound(n int) overheadRun {
	t := b.t
	lvd := findComm("libvirtd")
	if lvd == 0 {
		t.Fatal("no libvirtd process")
	}
	r := overheadRun{n: n}
	r.daemon0KiB, _ = vmRSS(b.d.PID())
	r.lvd0KiB, _ = vmRSS(lvd)
	start := time.Now()
	var doms, names []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("ovh%d-%d", n, i)
		_, _, dom := b.podvisorStart(name, false)
		doms, names = append(doms, dom), append(names, name)
	}
	for _, name := range names {
		waitCRILog(t, filepath.Join(b.dir, "logs", name, "vm_0.log"), "PODVISOR-GUEST: ready", 10*time.Minute)
	}
	r.bootTook = time.Since(start)
	// Idle guests: let the balloon's statistics (period 10 s) and the
	// emulators' lazily touched memory settle.
	settle := 30 * time.Second
	time.Sleep(settle)
	r.settleTook = settle
	r.daemonKiB, _ = vmRSS(b.d.PID())
	r.lvdKiB, _ = vmRSS(lvd)
	stats := b.statsByDomain()
	for _, dom := range doms {
		pid := findProcess("guest="+dom+",", "-name")
		if pid == 0 {
			t.Fatalf("no emulator process for %s", dom)
		}
		maps, err := readSmaps(pid)
		if err != nil {
			t.Fatalf("smaps of %s (pid %d): %v", dom, pid, err)
		}
		q, err := splitQEMU(maps, guestMiB<<10)
		if err != nil {
			t.Fatalf("%s: %v", dom, err)
		}
		st := stats[dom]
		r.vms = append(r.vms, vmSample{domain: dom, q: q,
			workingSet: st.GetMemory().GetWorkingSetBytes().GetValue() >> 10, rssStat: st.GetMemory().GetRssBytes().GetValue() >> 10})
	}
	return r
}

// statsByDomain is ListContainerStats by domain name ("pv-" and the first
// 16 hex digits of the container ID).
func (b *libvirtNode) statsByDomain() map[string]*runtimeapi.ContainerStats {
	resp, err := b.d.Runtime.ListContainerStats(daemonproc.Ctx(b.t), &runtimeapi.ListContainerStatsRequest{})
	if err != nil {
		b.t.Fatalf("ListContainerStats: %v", err)
	}
	out := map[string]*runtimeapi.ContainerStats{}
	for _, s := range resp.Stats {
		if id := s.GetAttributes().GetId(); len(id) >= 16 {
			out["pv-"+id[:16]] = s
		}
	}
	return out
}

type overheadReport struct {
	runs         []overheadRun
	load0, load1 string
}

func mib(kib uint64) string { return fmt.Sprintf("%.1f", float64(kib)/1024) }

func medianKiB(v []uint64) uint64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// perVM are one run's per-VM figures (KiB), VM by VM.
func (r overheadRun) perVM(f func(q qemuMemory) uint64) []uint64 {
	var out []uint64
	for _, v := range r.vms {
		out = append(out, f(v.q))
	}
	return out
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// share is a daemon's growth over the run, per VM.
func share(before, after uint64, n int) uint64 { return sub(after, before) / uint64(n) }

func kibList(v []uint64) string {
	var f []string
	for _, x := range v {
		f = append(f, mib(x))
	}
	return strings.Join(f, ", ")
}

// beyond is an emulator's memory beyond its guest's RAM and TCG's cache
// (what a KVM node pays), by RSS and by PSS.
func beyondRSS(q qemuMemory) uint64 { return sub(q.rss, q.ramRSS+q.tbRSS) }
func beyondPSS(q qemuMemory) uint64 { return sub(q.pss, q.ramPSS+q.tbPSS) }

func (r overheadReport) markdown() string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# Host memory per VM beyond its guest's RAM\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (`ci/bench-overhead.sh`, `internal/processtests` TestOverheadBench) on %s, %s, %d cores, TCG (no usable KVM). Load average %s at the start, %s at the end. VMs of the busybox test guest with %d MiB of RAM and 1 vCPU, booted together through podvisor's CRI on libvirt, the pod network on a bridge + host-local CNI; read %s after the last one printed its ready marker.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04Z"), host, numCPU(), r.load0, r.load1, guestMiB, r.runs[0].settleTook)
	b.WriteString("| per VM (median over the VMs of the run), MiB | " + r.cols(func(o overheadRun) string { return fmt.Sprintf("%d VM(s), %s", o.n, cacheName(o.cacheMiB)) }) + "\n")
	b.WriteString("|---|" + strings.Repeat("---|", len(r.runs)) + "\n")
	row := func(name string, f func(o overheadRun) uint64) {
		b.WriteString("| " + name + " | " + r.cols(func(o overheadRun) string { return mib(f(o)) }) + "\n")
	}
	med := func(f func(q qemuMemory) uint64) func(o overheadRun) uint64 {
		return func(o overheadRun) uint64 { return medianKiB(o.perVM(f)) }
	}
	row("QEMU RSS", med(func(q qemuMemory) uint64 { return q.rss }))
	row("QEMU PSS", med(func(q qemuMemory) uint64 { return q.pss }))
	row("guest RAM the guest touched (RSS of its RAM mapping)", med(func(q qemuMemory) uint64 { return q.ramRSS }))
	row("TCG translation cache, resident (RSS of the executable anonymous mapping)", med(func(q qemuMemory) uint64 { return q.tbRSS }))
	row("QEMU beyond guest RAM and TCG cache, RSS", med(beyondRSS))
	row("QEMU beyond guest RAM and TCG cache, PSS (shared pages split)", med(beyondPSS))
	podvisor := func(o overheadRun) uint64 { return share(o.daemon0KiB, o.daemonKiB, o.n) }
	libvirtd := func(o overheadRun) uint64 { return share(o.lvd0KiB, o.lvdKiB, o.n) }
	row("podvisor daemon's growth / N (the vmwrapper execs QEMU: no process of its own)", podvisor)
	row("libvirtd's growth / N", libvirtd)
	kvm := func(o overheadRun) uint64 { return medianKiB(o.perVM(beyondPSS)) + podvisor(o) + libvirtd(o) }
	tcg := func(o overheadRun) uint64 {
		return kvm(o) + medianKiB(o.perVM(func(q qemuMemory) uint64 { return q.tbRSS }))
	}
	row("**per VM on a KVM node**: QEMU PSS beyond RAM + podvisor + libvirtd", kvm)
	row("**per VM on this TCG node**: the same + the translation cache", tcg)
	b.WriteString("| goal ≤ 60 MiB (KVM node) | " + r.cols(func(o overheadRun) string {
		if kvm(o) <= 60<<10 {
			return "met"
		}
		return "missed"
	}) + "\n\n")
	r.raw(&b)
	r.findings(&b)
	b.WriteString(overheadMethod)
	return b.String()
}

// findings compares the translation cache's bound with QEMU's default.
func (r overheadReport) findings(b *strings.Builder) {
	var def, cut *overheadRun
	for i := range r.runs {
		o := &r.runs[i]
		if o.n != r.runs[len(r.runs)-1].n {
			continue
		}
		if o.cacheMiB == 0 {
			def = o
		} else {
			cut = o
		}
	}
	if def == nil || cut == nil {
		return
	}
	tb := func(o *overheadRun) uint64 { return medianKiB(o.perVM(func(q qemuMemory) uint64 { return q.tbRSS })) }
	fmt.Fprintf(b, "\nWith %d VMs the translation cache holds %s MiB per VM with QEMU's default size (%s MiB mapped) and %s MiB bounded to %d MiB; the boots took %.1f s and %.1f s.\n",
		def.n, mib(tb(def)), mib(medianKiB(def.perVM(func(q qemuMemory) uint64 { return q.tbSize }))), mib(tb(cut)), cut.cacheMiB, def.bootTook.Seconds(), cut.bootTook.Seconds())
}

const overheadMethod = `
## Method

- Each VM's memory is read from its QEMU process's /proc/PID/smaps: RSS
  and PSS summed over the mappings; the guest's RAM is the anonymous
  mapping of the guest's size (what the guest touched is its RSS); TCG's
  translation cache is the anonymous executable mappings (QEMU's tb-size,
  cut into regions with guard pages between them, mapped whole and
  resident as far as translated code filled it).
- "Beyond guest RAM" is QEMU's PSS less the guest RAM's and the cache's:
  QEMU's own heap, device state, I/O buffers and its share of the shared
  libraries (PSS splits a page shared by 10 QEMUs ten ways, so 10 VMs pay
  less each than 1 does). A KVM node pays this and no translation cache.
- podvisor's and libvirtd's share is their RSS growth from before the
  VMs were made to after they booted and settled, divided by the number
  of VMs; podvisor-vmwrapper execs QEMU and leaves no process.
- The VMs boot together; the figures are read after the last one printed
  its ready marker and the guests idled for the settle time. Medians are
  over the VMs of a run; every VM's figure is listed above.
- Both translation cache sizes ran in the same run, one after the other,
  each on a podvisor started with --tcg-translation-cache-mib.
`

func (r overheadReport) cols(f func(o overheadRun) string) string {
	var c []string
	for _, o := range r.runs {
		c = append(c, f(o))
	}
	return strings.Join(c, " | ") + " |"
}

func (r overheadReport) raw(b *strings.Builder) {
	b.WriteString("Raw numbers (MiB, VM by VM):\n\n")
	for _, o := range r.runs {
		fmt.Fprintf(b, "- %d VM(s), %s, booted in %.1f s: QEMU RSS %s; PSS %s; guest RAM touched %s; TCG cache resident %s (mapped %s); ContainerStats working set %s (emulator RSS %s); podvisor RSS %s → %s, libvirtd RSS %s → %s\n",
			o.n, cacheName(o.cacheMiB), o.bootTook.Seconds(),
			kibList(o.perVM(func(q qemuMemory) uint64 { return q.rss })), kibList(o.perVM(func(q qemuMemory) uint64 { return q.pss })),
			kibList(o.perVM(func(q qemuMemory) uint64 { return q.ramRSS })), kibList(o.perVM(func(q qemuMemory) uint64 { return q.tbRSS })),
			kibList(o.perVM(func(q qemuMemory) uint64 { return q.tbSize })),
			kibList(o.samples(func(v vmSample) uint64 { return v.workingSet })), kibList(o.samples(func(v vmSample) uint64 { return v.rssStat })),
			mib(o.daemon0KiB), mib(o.daemonKiB), mib(o.lvd0KiB), mib(o.lvdKiB))
	}
}

func (r overheadRun) samples(f func(v vmSample) uint64) []uint64 {
	var out []uint64
	for _, v := range r.vms {
		out = append(out, f(v))
	}
	return out
}

// tcgCacheMiB is the bound the bench compares with QEMU's default.
const tcgCacheMiB = 64

func cacheName(mib uint) string {
	if mib == 0 {
		return "TCG cache QEMU's default"
	}
	return fmt.Sprintf("TCG cache %d MiB", mib)
}
