package cgroups

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestVMPath(t *testing.T) {
	for _, tc := range []struct {
		parent, want, err string
	}{
		{parent: "", want: "/podvisor/pv-1"},
		{parent: "/kubepods/burstable/pod1234", want: "/kubepods/burstable/pod1234/pv-1"},
		{parent: "/kubepods//besteffort/pod9/", want: "/kubepods/besteffort/pod9/pv-1"},
		{parent: "/", want: "/pv-1"},
		// kubelet's systemd driver: slices nest at each '-'.
		{parent: "kubepods-burstable-pod12_34.slice", want: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12_34.slice/pv-1"},
		{parent: "kubepods.slice", want: "/kubepods.slice/pv-1"},
		{parent: "-.slice", want: "/pv-1"},
		{parent: "kubepods", err: "want an absolute path"},
		{parent: "a--b.slice", err: "not a systemd slice name"},
		{parent: "-a.slice", err: "not a systemd slice name"},
		{parent: "/kubepods/../etc", err: `".." is not a cgroup name`},
		{parent: "/kube pods", err: "has a space"},
	} {
		got, err := VMPath(tc.parent, "pv-1")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("VMPath(%q) = %q, %v; want an error with %q", tc.parent, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("VMPath(%q) = %q, %v; want %q", tc.parent, got, err, tc.want)
		}
	}
	if _, err := VMPath("", "../x"); err == nil {
		t.Error("VMPath with a domain name of '../x' succeeded")
	}
}

func TestParseMountinfo(t *testing.T) {
	v1 := `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
35 30 0:32 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	fs, err := parseMountinfo(strings.NewReader(v1))
	if err != nil {
		t.Fatal(err)
	}
	want := &FS{Hierarchies: []Hierarchy{
		{Mount: "/sys/fs/cgroup/cpu,cpuacct", Controllers: []string{"cpu", "cpuacct"}},
		{Mount: "/sys/fs/cgroup/memory", Controllers: []string{"memory"}},
		{Mount: "/sys/fs/cgroup/devices", Controllers: []string{"devices"}},
		{Mount: "/sys/fs/cgroup/systemd", Controllers: []string{"name=systemd"}},
		{Mount: "/sys/fs/cgroup/unified", Unified: true},
	}}
	if d := cmp.Diff(want, fs); d != "" {
		t.Errorf("v1 host (-want +got):\n%s", d)
	}
	fs, err = parseMountinfo(strings.NewReader("25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"))
	if err != nil || !fs.V2 || len(fs.Hierarchies) != 1 {
		t.Errorf("v2 host: %+v, %v; want one unified hierarchy, V2", fs, err)
	}
	if _, err := parseMountinfo(strings.NewReader("1 0 0:1 / / rw - ext4 /dev/sda rw\n")); err == nil {
		t.Error("no cgroup mounts: no error")
	}
}

// fakeV1 lays out v1 hierarchies as plain directories with the files a
// parent cgroup has.
func fakeV1(t *testing.T) *FS {
	root := t.TempDir()
	fs := &FS{}
	for _, ctrls := range [][]string{{"cpu", "cpuacct"}, {"memory"}, {"cpuset"}, {"devices"}, {"pids"}} {
		dir := filepath.Join(root, strings.Join(ctrls, ","))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		fs.Hierarchies = append(fs.Hierarchies, Hierarchy{Mount: dir, Controllers: ctrls})
	}
	// kubelet's pod cgroup exists in cpuset (with its CPUs), not in pids.
	pod := filepath.Join(root, "cpuset", "kubepods", "pod1")
	if err := os.MkdirAll(pod, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, v := range map[string]string{"cpuset.cpus": "0-1\n", "cpuset.mems": "0\n"} {
		if err := os.WriteFile(filepath.Join(pod, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return fs
}

func TestCreateSetReadV1(t *testing.T) {
	fs := fakeV1(t)
	const path = "/kubepods/pod1/pv-1"
	l := Limits{CPUShares: 512, CPUQuota: 150000, CPUPeriod: 100000, MemoryBytes: 300 << 20}
	if err := fs.Create(path, l); err != nil {
		t.Fatal(err)
	}
	got, err := fs.Read(path)
	if err != nil || got != l {
		t.Errorf("Read after Create = %+v, %v; want %+v", got, err, l)
	}
	cpus, err := os.ReadFile(filepath.Join(fs.Hierarchies[2].Mount, path, "cpuset.cpus"))
	if err != nil || string(cpus) != "0-1" {
		t.Errorf("a new cpuset has cpus %q, %v; want its parent's 0-1", cpus, err)
	}
	if _, err := os.Stat(filepath.Join(fs.Hierarchies[3].Mount, path)); !os.IsNotExist(err) {
		t.Errorf("the devices hierarchy got the VM's cgroup (%v): libvirt keeps QEMU's devices cgroup", err)
	}
	if _, err := os.Stat(filepath.Join(fs.Hierarchies[4].Mount, "kubepods")); !os.IsNotExist(err) {
		t.Errorf("the pids hierarchy, where the pod has no cgroup, got one (%v): nobody would remove it", err)
	}
	// No limits: the kernel's defaults and no quota or memory limit.
	if err := fs.Set(path, Limits{}); err != nil {
		t.Fatal(err)
	}
	got, _ = fs.Read(path)
	if want := (Limits{CPUShares: 1024, CPUPeriod: DefaultCPUPeriod, MemoryBytes: -1}); got != want {
		t.Errorf("Read after Set of no limits = %+v; want %+v", got, want)
	}
	if err := fs.Join(path, 4242); err != nil {
		t.Fatal(err)
	}
	procs, _ := os.ReadFile(filepath.Join(fs.Hierarchies[1].Mount, path, "cgroup.procs"))
	if string(procs) != "4242" {
		t.Errorf("memory cgroup.procs after Join = %q; want 4242", procs)
	}
	if err := fs.Remove("/not/there"); err != nil {
		t.Errorf("Remove of a missing cgroup: %v", err)
	}
}

func TestSetV2(t *testing.T) {
	root := t.TempDir()
	fs := &FS{V2: true, Hierarchies: []Hierarchy{{Mount: root, Unified: true}}}
	const path = "/kubepods.slice/kubepods-pod1.slice/pv-1"
	if err := fs.Create(path, Limits{CPUShares: 1024, CPUQuota: 50000, CPUPeriod: 100000, MemoryBytes: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{"cpu.max": "50000 100000", "memory.max": "1073741824", "cpu.weight": "39"} {
		b, err := os.ReadFile(filepath.Join(root, path, file))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", file, b, err, want)
		}
	}
	sub, _ := os.ReadFile(filepath.Join(root, "kubepods.slice/kubepods-pod1.slice/cgroup.subtree_control"))
	if !strings.Contains(string(sub), "memory") {
		t.Errorf("the parent's subtree_control = %q; want memory enabled for the VM", sub)
	}
	if err := fs.Set(path, Limits{}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(root, path, "cpu.max"))
	if string(b) != "max 100000" {
		t.Errorf("cpu.max without a quota = %q; want \"max 100000\"", b)
	}
}

func TestSharesToWeight(t *testing.T) {
	for shares, want := range map[int64]int64{0: 100, 2: 1, 1024: 39, 262144: 10000, 1 << 40: 10000} {
		if got := SharesToWeight(shares); got != want {
			t.Errorf("SharesToWeight(%d) = %d; want %d", shares, got, want)
		}
	}
}

func TestRaiseMemory(t *testing.T) {
	v1 := fakeV1(t)
	v2root := t.TempDir()
	v2 := &FS{V2: true, Hierarchies: []Hierarchy{{Mount: v2root, Unified: true}}}
	for _, tt := range []struct {
		name       string
		fs         *FS
		file, cur  string // "" cur: no cgroup
		ask        int64
		wantOld    int64
		wantRaised bool
		wantFile   string
	}{
		{"v1 below", v1, "memory.limit_in_bytes", "167772160", 260 << 20, 160 << 20, true, "272629760"},
		{"v1 enough", v1, "memory.limit_in_bytes", "272629760", 256 << 20, 260 << 20, false, "272629760"},
		{"v1 unlimited", v1, "memory.limit_in_bytes", "9223372036854771712", 256 << 20, 9223372036854771712, false, "9223372036854771712"},
		{"v1 no pod cgroup", v1, "memory.limit_in_bytes", "", 256 << 20, 0, false, ""},
		{"v2 below", v2, "memory.max", "167772160", 260 << 20, 160 << 20, true, "272629760"},
		{"v2 max", v2, "memory.max", "max", 256 << 20, 0, false, "max"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := tt.fs.limitHierarchy("memory")
			path := "/kubepods/burstable/pod-" + strings.ReplaceAll(tt.name, " ", "-")
			dir := filepath.Join(h.Mount, path)
			if tt.cur != "" {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, tt.file), []byte(tt.cur+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			old, raised, err := tt.fs.RaiseMemory(path, tt.ask)
			if err != nil || old != tt.wantOld || raised != tt.wantRaised {
				t.Errorf("RaiseMemory = %d, %v, %v; want %d, %v, nil", old, raised, err, tt.wantOld, tt.wantRaised)
			}
			if tt.cur == "" {
				return
			}
			b, _ := os.ReadFile(filepath.Join(dir, tt.file))
			if got := strings.TrimSpace(string(b)); got != tt.wantFile {
				t.Errorf("%s = %q; want %q", tt.file, got, tt.wantFile)
			}
		})
	}
}
