package daemon

import (
	"context"
	"time"

	"github.com/podvisor/podvisor/runtime/cloudinit"
	"github.com/podvisor/podvisor/runtime/image"
	"github.com/podvisor/podvisor/runtime/metrics"
	"github.com/podvisor/podvisor/runtime/pod"
)

// managerCounts reads the manager's counts at scrape time: the metrics are
// made before the manager, which reports its steps to them.
type managerCounts struct{ m **pod.Manager }

func (c managerCounts) SandboxCounts() map[string]int {
	if *c.m == nil {
		return nil
	}
	return (*c.m).SandboxCounts()
}

func (c managerCounts) ContainerCounts() map[string]int {
	if *c.m == nil {
		return nil
	}
	return (*c.m).ContainerCounts()
}

// managerVMs reads the running VMs' stats at scrape time.
type managerVMs struct{ m **pod.Manager }

func (v managerVMs) VMs(ctx context.Context) []metrics.VM {
	m := *v.m
	if m == nil {
		return nil
	}
	running := pod.ContainerRunning
	var out []metrics.VM
	for _, c := range m.ListContainers(pod.ContainerFilter{State: &running}) {
		sb, err := m.PodSandbox(c.SandboxID)
		if err != nil {
			continue // removed meanwhile
		}
		_, st, err := m.Stats(ctx, c.ID)
		if err != nil || st.MemoryLimitBytes == 0 {
			continue // gone or stopped meanwhile, or the hypervisor failed: no sample
		}
		out = append(out, metrics.VM{Namespace: sb.Config.Namespace, Pod: sb.Config.Name, UID: sb.Config.UID,
			Container: c.Config.Name, Stats: st})
	}
	return out
}

// timedAssembly returns vmbuild's root disk and cloud-init drive steps,
// each reporting its duration to the metrics.
func timedAssembly(mx *metrics.Metrics) (
	overlay func(ctx context.Context, base, path string, minSize int64) (int64, error),
	writeISO func(ctx context.Context, c *cloudinit.Contents, path string) error,
) {
	overlay = func(ctx context.Context, base, path string, minSize int64) (int64, error) {
		start := time.Now()
		defer func() { mx.ObserveStep(metrics.StepOverlay, time.Since(start)) }()
		return image.CreateOverlay(ctx, base, path, minSize)
	}
	writeISO = func(ctx context.Context, c *cloudinit.Contents, path string) error {
		start := time.Now()
		defer func() { mx.ObserveStep(metrics.StepCloudInit, time.Since(start)) }()
		return cloudinit.WriteISO(ctx, c, path)
	}
	return overlay, writeISO
}
