package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Hierarchy is one mounted cgroup hierarchy: a v1 hierarchy with its
// controllers, or the v2 unified one (Controllers empty, Unified).
type Hierarchy struct {
	Mount       string
	Controllers []string
	Unified     bool
}

func (h Hierarchy) has(ctrl string) bool {
	for _, c := range h.Controllers {
		if c == ctrl {
			return true
		}
	}
	return false
}

func (h Hierarchy) name() string {
	if h.Unified {
		return "unified"
	}
	return strings.Join(h.Controllers, ",")
}

// FS is the node's cgroup hierarchies. V2 is true on a unified (v2 only)
// host; on a v1 host a unified hierarchy beside the others (hybrid) is
// joined but holds no limits.
type FS struct {
	V2          bool
	Hierarchies []Hierarchy
}

// Limits are a VM's resource limits; zero fields are unset (no limit).
type Limits struct {
	// CPUShares is the relative weight (cpu.shares; cpu.weight on v2).
	CPUShares int64
	// CPUQuota and CPUPeriod are CFS bandwidth, microseconds.
	CPUQuota  int64
	CPUPeriod int64
	// MemoryBytes caps QEMU's memory: the guest's RAM and its overhead.
	MemoryBytes int64
}

// DefaultCPUPeriod is the CFS period kubelet uses.
const DefaultCPUPeriod = 100000

// Detect reads the hierarchies mounted in this mount namespace.
func Detect() (*FS, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("finding the cgroup hierarchies: %w", err)
	}
	defer f.Close()
	return parseMountinfo(f)
}

// parseMountinfo keeps the cgroup and cgroup2 mounts of a mountinfo file
// (proc(5)): mount point is field 5, the fs type and super options follow
// the " - " separator.
func parseMountinfo(r io.Reader) (*FS, error) {
	fs := &FS{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 3 {
			continue
		}
		mount := unescapeMount(fields[4])
		switch tail[0] {
		case "cgroup2":
			if !seen[mount] {
				fs.Hierarchies = append(fs.Hierarchies, Hierarchy{Mount: mount, Unified: true})
			}
		case "cgroup":
			var ctrls []string
			for _, o := range strings.Split(tail[2], ",") {
				if o == "rw" || o == "ro" || strings.HasPrefix(o, "release_agent=") || o == "clone_children" || o == "noprefix" || o == "xattr" || o == "cpuset_v2_mode" {
					continue
				}
				ctrls = append(ctrls, o)
			}
			if len(ctrls) > 0 && !seen[mount] {
				fs.Hierarchies = append(fs.Hierarchies, Hierarchy{Mount: mount, Controllers: ctrls})
			}
		default:
			continue
		}
		seen[mount] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	v1 := false
	for _, h := range fs.Hierarchies {
		v1 = v1 || !h.Unified
	}
	fs.V2 = !v1 && len(fs.Hierarchies) > 0
	if len(fs.Hierarchies) == 0 {
		return nil, errors.New("no cgroup hierarchy is mounted (is /sys/fs/cgroup mounted?)")
	}
	return fs, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// limitHierarchies are the hierarchies holding limits: the cpu and memory
// ones on v1, the unified one on v2.
func (fs *FS) limitHierarchy(ctrl string) (Hierarchy, bool) {
	for _, h := range fs.Hierarchies {
		if fs.V2 && h.Unified || !fs.V2 && h.has(ctrl) {
			return h, true
		}
	}
	return Hierarchy{}, false
}

// Create makes the VM's cgroup at path (see VMPath) in every hierarchy
// and sets its limits. Existing directories are reused.
func (fs *FS) Create(path string, l Limits) error {
	for _, h := range fs.joined() {
		if _, err := fs.mkdirCgroup(h, path); err != nil {
			return err
		}
	}
	if fs.V2 {
		fs.enableV2Controllers(path)
	}
	return fs.Set(path, l)
}

// Set writes the limits of the cgroup at path.
func (fs *FS) Set(path string, l Limits) error {
	if fs.V2 {
		return fs.setV2(path, l)
	}
	return fs.setV1(path, l)
}

func (fs *FS) setV1(path string, l Limits) error {
	if h, ok := fs.limitHierarchy("cpu"); ok {
		dir := filepath.Join(h.Mount, path)
		shares := l.CPUShares
		if shares == 0 {
			shares = 1024 // the kernel's default
		}
		period, quota := cpuBandwidth(l)
		// The quota is lifted first: a new period must never meet an old
		// quota the kernel would refuse with it.
		for _, w := range []struct{ file, value string }{
			{"cpu.shares", itoa(shares)}, {"cpu.cfs_quota_us", "-1"},
			{"cpu.cfs_period_us", itoa(period)}, {"cpu.cfs_quota_us", itoa(quota)},
		} {
			if err := write(dir, w.file, w.value); err != nil {
				return err
			}
		}
	} else if l.CPUQuota > 0 || l.CPUShares > 0 {
		return errors.New("setting CPU limits: no cgroup v1 cpu hierarchy is mounted")
	}
	if h, ok := fs.limitHierarchy("memory"); ok {
		mem := int64(-1)
		if l.MemoryBytes > 0 {
			mem = l.MemoryBytes
		}
		return write(filepath.Join(h.Mount, path), "memory.limit_in_bytes", itoa(mem))
	} else if l.MemoryBytes > 0 {
		return errors.New("setting the memory limit: no cgroup v1 memory hierarchy is mounted")
	}
	return nil
}

func (fs *FS) setV2(path string, l Limits) error {
	h, _ := fs.limitHierarchy("")
	dir := filepath.Join(h.Mount, path)
	period, quota := cpuBandwidth(l)
	max := "max"
	if quota > 0 {
		max = itoa(quota)
	}
	mem := "max"
	if l.MemoryBytes > 0 {
		mem = itoa(l.MemoryBytes)
	}
	for _, w := range []struct{ file, value string }{
		{"cpu.weight", itoa(SharesToWeight(l.CPUShares))},
		{"cpu.max", max + " " + itoa(period)},
		{"memory.max", mem},
	} {
		if err := write(dir, w.file, w.value); err != nil {
			return err
		}
	}
	return nil
}

// cpuBandwidth gives the period (default DefaultCPUPeriod) and the quota
// (-1: none).
func cpuBandwidth(l Limits) (period, quota int64) {
	period, quota = l.CPUPeriod, l.CPUQuota
	if period <= 0 {
		period = DefaultCPUPeriod
	}
	if quota <= 0 {
		quota = -1
	}
	return period, quota
}

// SharesToWeight converts cgroup v1 shares to a v2 weight the way kubelet
// and runc do (2..262144 onto 1..10000); 0 gives the default weight 100.
func SharesToWeight(shares int64) int64 {
	if shares <= 0 {
		return 100
	}
	shares = min(max(shares, 2), 262144)
	return 1 + ((shares-2)*9999)/262142
}

// enableV2Controllers turns cpu and memory on for the children of every
// level above path; kubelet has done it for its own cgroups, and a
// controller that cannot be enabled shows up when the limits are written.
func (fs *FS) enableV2Controllers(path string) {
	h, _ := fs.limitHierarchy("")
	dir := h.Mount
	for _, c := range strings.Split(strings.Trim(filepath.Dir(path), "/"), "/") {
		for _, ctrl := range []string{"+cpu", "+memory"} {
			_ = write(dir, "cgroup.subtree_control", ctrl)
		}
		if c == "" {
			break
		}
		dir = filepath.Join(dir, c)
	}
	for _, ctrl := range []string{"+cpu", "+memory"} {
		_ = write(dir, "cgroup.subtree_control", ctrl)
	}
}

// Read returns the limits set at path (for tests and status).
func (fs *FS) Read(path string) (Limits, error) {
	var l Limits
	var err error
	if fs.V2 {
		h, _ := fs.limitHierarchy("")
		dir := filepath.Join(h.Mount, path)
		var cpuMax, mem string
		if cpuMax, err = read(dir, "cpu.max"); err != nil {
			return l, err
		}
		q, p, _ := strings.Cut(cpuMax, " ")
		l.CPUPeriod, _ = strconv.ParseInt(p, 10, 64)
		l.CPUQuota, _ = strconv.ParseInt(q, 10, 64) // "max": 0
		if mem, err = read(dir, "memory.max"); err != nil {
			return l, err
		}
		l.MemoryBytes, _ = strconv.ParseInt(mem, 10, 64)
		return l, nil
	}
	if h, ok := fs.limitHierarchy("cpu"); ok {
		dir := filepath.Join(h.Mount, path)
		if l.CPUShares, err = readInt(dir, "cpu.shares"); err != nil {
			return l, err
		}
		if l.CPUPeriod, err = readInt(dir, "cpu.cfs_period_us"); err != nil {
			return l, err
		}
		if l.CPUQuota, err = readInt(dir, "cpu.cfs_quota_us"); err != nil {
			return l, err
		}
		l.CPUQuota = max(l.CPUQuota, 0)
	}
	if h, ok := fs.limitHierarchy("memory"); ok {
		if l.MemoryBytes, err = readInt(filepath.Join(h.Mount, path), "memory.limit_in_bytes"); err != nil {
			return l, err
		}
	}
	return l, nil
}

// Remove deletes the VM's cgroup from every hierarchy; one already gone
// is fine. A cgroup with processes left cannot be removed: the error says so.
func (fs *FS) Remove(path string) error {
	var errs []error
	for _, h := range fs.joined() {
		err := os.Remove(filepath.Join(h.Mount, path))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing cgroup %s (%s): %w", path, h.name(), err))
		}
	}
	return errors.Join(errs...)
}

// Join moves the process pid (0: the caller) into the cgroup at path in
// every hierarchy but devices (libvirt keeps QEMU's device ACL in its own
// devices cgroup), creating what is missing: a VM belongs to its pod in
// each, so kubelet's pod teardown and accounting see it.
func (fs *FS) Join(path string, pid int) error {
	if pid == 0 {
		pid = os.Getpid()
	}
	var errs []error
	for _, h := range fs.joined() {
		made, err := fs.mkdirCgroup(h, path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !made {
			continue
		}
		if err := write(filepath.Join(h.Mount, path), "cgroup.procs", strconv.Itoa(pid)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// joined are the hierarchies a VM joins: all but the v1 devices one.
func (fs *FS) joined() []Hierarchy {
	var out []Hierarchy
	for _, h := range fs.Hierarchies {
		if h.has("devices") || fs.V2 && !h.Unified {
			continue
		}
		out = append(out, h)
	}
	return out
}

// mkdirCgroup makes path in h, and its missing parents in the hierarchies
// that hold limits (cpu, memory; v2's). In the others a VM joins its pod
// only where the pod's cgroup exists (kubelet made it): podvisor would
// otherwise leave parents there that nobody removes. made says path is
// there. A new v1 cpuset has no CPUs or memory nodes, so it gets its
// parent's.
func (fs *FS) mkdirCgroup(h Hierarchy, path string) (made bool, err error) {
	limits := fs.V2 && h.Unified || h.has("cpu") || h.has("memory")
	if parent := filepath.Join(h.Mount, filepath.Dir(path)); !limits {
		if _, err := os.Stat(parent); errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
	}
	return true, mkdirAll(h, path)
}

func mkdirAll(h Hierarchy, path string) error {
	dir := h.Mount
	for _, c := range strings.Split(strings.Trim(path, "/"), "/") {
		if c == "" {
			continue
		}
		parent := dir
		dir = filepath.Join(dir, c)
		if err := os.Mkdir(dir, 0o755); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue
			}
			return fmt.Errorf("creating cgroup %s (%s): %w", dir, h.name(), err)
		}
		if !h.Unified && h.has("cpuset") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := read(parent, f)
				if err == nil {
					err = write(dir, f, v)
				}
				if err != nil {
					return fmt.Errorf("creating cgroup %s: copying %s from its parent: %w", dir, f, err)
				}
			}
		}
	}
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func write(dir, file, value string) error {
	p := filepath.Join(dir, file)
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("writing %q to %s: %w", value, p, err)
	}
	return nil
}

func read(dir, file string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", filepath.Join(dir, file), err)
	}
	return strings.TrimSpace(string(b)), nil
}

func readInt(dir, file string) (int64, error) {
	s, err := read(dir, file)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %q is not a number", filepath.Join(dir, file), s)
	}
	return n, nil
}

// RaiseMemory makes the memory limit of the cgroup at path (a pod's, which
// kubelet made) at least bytes, and says what it was: unchanged when it is
// already that high, unlimited, or the cgroup or its memory controller is
// not there. A VM pod without the RuntimeClass's overhead gets a pod
// cgroup of its container's limit alone, the guest's RAM, where QEMU's
// overhead does not fit; Virtlet never charged it to the pod.
func (fs *FS) RaiseMemory(path string, bytes int64) (old int64, raised bool, err error) {
	file := "memory.limit_in_bytes"
	if fs.V2 {
		file = "memory.max"
	}
	h, ok := fs.limitHierarchy("memory")
	if !ok || bytes <= 0 {
		return 0, false, nil
	}
	dir := filepath.Join(h.Mount, path)
	cur, err := read(dir, file)
	if errors.Is(err, os.ErrNotExist) || cur == "max" {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	old, err = strconv.ParseInt(cur, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("reading %s: %q is not a number", filepath.Join(dir, file), cur)
	}
	if old >= bytes {
		return old, false, nil
	}
	if err := write(dir, file, itoa(bytes)); err != nil {
		return old, false, err
	}
	return old, true, nil
}
