package pod_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/podvisor/podvisor/fakes/simhv"
	"github.com/podvisor/podvisor/runtime/pod"
)

// BenchmarkListContainers500 lists 500 containers, as kubelet's relist
// does every second.
func BenchmarkListContainers500(b *testing.B) {
	e := newEnv(b)
	for i := 0; i < 500; i++ {
		sb, err := e.m.RunPodSandbox(context.Background(), sandboxCfg(fmt.Sprintf("b%d", i)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.m.CreateContainer(context.Background(), sb, pod.ContainerConfig{Name: "vm", Image: "img-a",
			Labels: map[string]string{"io.kubernetes.pod.name": "x", "io.kubernetes.pod.namespace": "y", "io.kubernetes.container.name": "vm"}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if n := len(e.m.ListContainers(pod.ContainerFilter{})); n != 500 {
			b.Fatalf("%d containers", n)
		}
	}
}

// BenchmarkMonitorStatusCalls500 measures what the monitor costs the
// hypervisor with 500 running VMs and the default intervals (PollInterval
// 1 s, ResyncInterval 10 s): Status calls per second in a steady state over
// 30 s, and how long a VM crash takes to show in ListContainers. "poll" is
// a hypervisor without state events (the monitor polls every VM each
// PollInterval); "events" is simhv's WatchStates. It runs in real time,
// about 40 s per case:
//
//	go test -run '^$' -bench MonitorStatusCalls500 ./runtime/pod/
func BenchmarkMonitorStatusCalls500(b *testing.B) {
	const (
		vms    = 500
		window = 30 * time.Second
		probes = 5
	)
	for _, tc := range []struct {
		name string
		opts []envOpt
	}{
		{"poll", []envOpt{intervals(0, 0), withoutWatcher}},
		{"events", []envOpt{intervals(0, 0)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b, tc.opts...)
			ctx := context.Background()
			var cids []string
			for i := 0; i < vms; i++ {
				sb, err := e.m.RunPodSandbox(ctx, sandboxCfg(fmt.Sprintf("s%03d", i)))
				if err != nil {
					b.Fatal(err)
				}
				cid, err := e.m.CreateContainer(ctx, sb, pod.ContainerConfig{Name: "vm", Image: "img-a"})
				if err != nil {
					b.Fatal(err)
				}
				if err := e.m.StartContainer(ctx, cid); err != nil {
					b.Fatal(err)
				}
				cids = append(cids, cid)
			}
			// Let the checks the starts caused pass.
			time.Sleep(2 * time.Second)
			b.ResetTimer()
			before, t0 := e.hv.CallCount(simhv.OpStatus, ""), time.Now()
			time.Sleep(window)
			rate := float64(e.hv.CallCount(simhv.OpStatus, "")-before) / time.Since(t0).Seconds()

			var total time.Duration
			for _, cid := range cids[:probes] {
				t1 := time.Now()
				if err := e.hv.Crash(pod.DomainName(cid)); err != nil {
					b.Fatal(err)
				}
				for e.listed(cid).State != pod.ContainerExited {
					if time.Since(t1) > time.Minute {
						b.Fatalf("crash of %s not noticed within a minute", cid[:8])
					}
					time.Sleep(time.Millisecond)
				}
				total += time.Since(t1)
			}
			b.ReportMetric(rate, "Status-calls/s")
			b.ReportMetric(float64(total.Milliseconds())/probes, "ms-to-EXITED")
			b.ReportMetric(0, "ns/op")
		})
	}
}
