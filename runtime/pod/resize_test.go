package pod_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/podvisor/podvisor/runtime/cgroups"
	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/pod"
	"github.com/podvisor/podvisor/runtime/vmbuild"
)

// fakeCgroups records what the VM resources did to cgroups.
type fakeCgroups struct {
	mu      sync.Mutex
	limits  map[string]cgroups.Limits
	sets    []cgroups.Limits
	removed []string
}

func (f *fakeCgroups) Create(path string, l cgroups.Limits) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.limits == nil {
		f.limits = map[string]cgroups.Limits{}
	}
	f.limits[path] = l
	return nil
}

func (f *fakeCgroups) Set(path string, l cgroups.Limits) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.limits[path]; !ok {
		return errors.New("no such cgroup " + path)
	}
	f.limits[path] = l
	f.sets = append(f.sets, l)
	return nil
}

func (f *fakeCgroups) Remove(path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.limits, path)
	f.removed = append(f.removed, path)
	return nil
}

// A VM starts in its cgroup with its container's limits (memory plus
// QEMU's overhead), is resized in place within what it was created with
// (the cgroup widened before, narrowed after), refuses more naming what
// cannot change, and its cgroup goes with it.
func TestUpdateContainerResourcesResizesInPlace(t *testing.T) {
	cg := &fakeCgroups{}
	res, err := vmbuild.New(vmbuild.Config{DomainType: "qemu", Cgroups: cg})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpt{cfg: func(c *pod.Config) { c.Resources = res }})
	e.asm.maxVCPUs = 2
	ctx := context.Background()
	sb := e.run("vm")
	one := pod.Resources{MemoryLimitBytes: 256 << 20, CPUQuota: 100000, CPUPeriod: 100000}
	id, err := e.m.CreateContainer(ctx, sb, pod.ContainerConfig{Name: "vm", Image: "img-cirros", Resources: one})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	c := e.state(id)
	path := "/podvisor/" + c.DomainName
	overhead := vmbuild.MemoryOverheadBytes("qemu", 0)
	if got, want := cg.limits[path], (cgroups.Limits{CPUQuota: 100000, CPUPeriod: 100000, MemoryBytes: 256<<20 + overhead}); got != want {
		t.Fatalf("the VM's cgroup at start: %+v; want %+v", got, want)
	}
	pidOf := func() int {
		st, err := e.hv.Status(ctx, c.DomainName)
		if err != nil {
			t.Fatal(err)
		}
		return st.PID
	}
	pid := pidOf()

	// 2 CPUs and 128 MiB: a vCPU more, 128 MiB less.
	two := pod.Resources{MemoryLimitBytes: 128 << 20, CPUQuota: 200000, CPUPeriod: 100000}
	if err := e.m.UpdateContainerResources(ctx, id, two); err != nil {
		t.Fatal(err)
	}
	size, err := e.hv.Sizing(ctx, c.DomainName)
	if err != nil || size.VCPUs != 2 || size.MemoryBytes != 128<<20 {
		t.Errorf("after the resize the VM has %+v, %v; want 2 vCPUs, 128 MiB", size, err)
	}
	wider := cgroups.Limits{CPUQuota: 200000, CPUPeriod: 100000, MemoryBytes: 256<<20 + overhead}
	final := cgroups.Limits{CPUQuota: 200000, CPUPeriod: 100000, MemoryBytes: 128<<20 + overhead}
	if len(cg.sets) != 2 || cg.sets[0] != wider || cg.sets[1] != final {
		t.Errorf("cgroup limits set %+v; want the wider %+v, then %+v", cg.sets, wider, final)
	}
	if got := e.state(id); got.Config.Resources != two || pidOf() != pid {
		t.Errorf("after the resize: resources %+v, PID %d; want %+v, the same PID %d", got.Config.Resources, pidOf(), two, pid)
	}

	for _, tc := range []struct {
		res  pod.Resources
		want string
	}{
		{pod.Resources{MemoryLimitBytes: 512 << 20, CPUQuota: 200000, CPUPeriod: 100000}, "at most 256 MiB, its RAM when it was created"},
		{pod.Resources{MemoryLimitBytes: 128 << 20, CPUQuota: 300000, CPUPeriod: 100000}, "3 vCPUs asked, but the VM of container " + id + " can have at most 2"},
		{pod.Resources{MemoryLimitBytes: 1 << 20}, "memory_limit_in_bytes"},
	} {
		err := e.m.UpdateContainerResources(ctx, id, tc.res)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("resize to %+v: %v; want InvalidArgument with %q", tc.res, err, tc.want)
		}
	}
	if got := e.state(id); got.Config.Resources != two || len(cg.sets) != 2 {
		t.Errorf("refused resizes changed something: resources %+v, %d cgroup writes", got.Config.Resources, len(cg.sets))
	}

	if err := e.m.RemoveContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, ok := cg.limits[path]; ok || len(cg.removed) != 1 {
		t.Errorf("after RemoveContainer the cgroups are %v (removed %v); want %s gone", cg.limits, cg.removed, path)
	}
}

// A VM whose VirtletVCPUCount is fixed keeps its vCPUs; a CPU limit below
// them is refused naming both.
func TestUpdateContainerResourcesFixedVCPUs(t *testing.T) {
	cg := &fakeCgroups{}
	res, err := vmbuild.New(vmbuild.Config{DomainType: "qemu", Cgroups: cg})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpt{cfg: func(c *pod.Config) { c.Resources = res }})
	e.asm.maxVCPUs = 2
	ctx := context.Background()
	cfg := sandboxCfg("fixed")
	cfg.Annotations = map[string]string{"VirtletVCPUCount": "2"}
	sb, err := e.m.RunPodSandbox(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.m.CreateContainer(ctx, sb, pod.ContainerConfig{Name: "vm", Image: "img-cirros", Resources: pod.Resources{MemoryLimitBytes: 256 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.m.UpdateContainerResources(ctx, id, pod.Resources{MemoryLimitBytes: 256 << 20, CPUQuota: 200000, CPUPeriod: 100000}); err != nil {
		t.Fatal(err)
	}
	c := e.state(id)
	// The test assembler's domain boots 1 vCPU; a fixed count is never
	// hot-plugged by a new CPU limit.
	if size, _ := e.hv.Sizing(ctx, c.DomainName); size.VCPUs != 1 {
		t.Errorf("a new CPU limit changed the vCPUs of a fixed VirtletVCPUCount to %d", size.VCPUs)
	}
	err = e.m.UpdateContainerResources(ctx, id, pod.Resources{MemoryLimitBytes: 256 << 20, CPUQuota: 100000, CPUPeriod: 100000})
	want := `annotation VirtletVCPUCount: invalid value "2": 2 vCPUs are more than the container's CPU limit allows`
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), want) {
		t.Errorf("1 CPU for 2 fixed vCPUs: %v; want InvalidArgument with %q", err, want)
	}
}
