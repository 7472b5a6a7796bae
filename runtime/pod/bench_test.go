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

// monitorBenchCases are the two ways the monitor learns of stops, with
// the default intervals (PollInterval 1 s, ResyncInterval 10 s): "poll" is
// a hypervisor without state events (the monitor checks every VM each
// PollInterval); "events" is simhv's WatchStates (a changed domain is
// checked at once, every VM each ResyncInterval).
var monitorBenchCases = []struct {
	name string
	opts []envOpt
}{
	{"poll", []envOpt{intervals(0, 0), withoutWatcher}},
	{"events", []envOpt{intervals(0, 0)}},
}

// runningVMs starts n sandboxes, each with a running VM, and returns the
// sandbox and container IDs.
func runningVMs(b *testing.B, e *env, n int) (sbs, cids []string) {
	b.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
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
		sbs, cids = append(sbs, sb), append(cids, cid)
	}
	return sbs, cids
}

// waitStatusCalls waits until simhv has answered at least n Status calls.
func waitStatusCalls(b *testing.B, e *env, n int, deadline time.Duration) {
	b.Helper()
	t0 := time.Now()
	for e.hv.CallCount(simhv.OpStatus, "") < n {
		if time.Since(t0) > deadline {
			b.Fatalf("%d Status calls after %v, want %d", e.hv.CallCount(simhv.OpStatus, ""), deadline, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkMonitorStatusCalls500 measures what the monitor costs the
// hypervisor with 500 running VMs and nothing happening. One op is one round
// in which the monitor checks all 500 VMs (one Status call each): ns/op is
// the time between rounds, Status-calls/s the steady load. It runs in real
// time (a round is 1 s when polling, 10 s with events; about 15 s per
// case):
//
//	go test -run '^$' -bench MonitorStatusCalls500 ./runtime/pod/
func BenchmarkMonitorStatusCalls500(b *testing.B) {
	const vms = 500
	for _, tc := range monitorBenchCases {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b, tc.opts...)
			runningVMs(b, e, vms)
			// Let the checks the starts caused pass, then align to a
			// round: each later one adds exactly vms calls.
			time.Sleep(2 * time.Second)
			c0 := e.hv.CallCount(simhv.OpStatus, "") + vms
			waitStatusCalls(b, e, c0, time.Minute)
			b.ResetTimer()
			for i := 1; i <= b.N; i++ {
				waitStatusCalls(b, e, c0+i*vms, time.Minute)
			}
			b.StopTimer()
			calls := e.hv.CallCount(simhv.OpStatus, "") - c0
			b.ReportMetric(float64(calls)/b.Elapsed().Seconds(), "Status-calls/s")
		})
	}
}

// BenchmarkMonitorCrashToExited500: with 500 running VMs, one op is one VM
// crashing until ListContainers (kubelet's relist) shows it EXITED. The
// crashed VM is replaced by a new container in its sandbox outside the
// timer, so 500 keep running. Real time: up to 1 s per op when polling.
//
//	go test -run '^$' -bench MonitorCrashToExited500 ./runtime/pod/
func BenchmarkMonitorCrashToExited500(b *testing.B) {
	const vms = 500
	ctx := context.Background()
	for _, tc := range monitorBenchCases {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b, tc.opts...)
			sbs, cids := runningVMs(b, e, vms)
			time.Sleep(2 * time.Second) // the checks the starts caused
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % vms
				t1 := time.Now()
				if err := e.hv.Crash(pod.DomainName(cids[j])); err != nil {
					b.Fatal(err)
				}
				for e.listed(cids[j]).State != pod.ContainerExited {
					if time.Since(t1) > time.Minute {
						b.Fatalf("crash of %s not noticed within a minute", cids[j][:8])
					}
					time.Sleep(100 * time.Microsecond)
				}
				b.StopTimer()
				if err := e.m.RemoveContainer(ctx, cids[j]); err != nil {
					b.Fatal(err)
				}
				cid, err := e.m.CreateContainer(ctx, sbs[j], pod.ContainerConfig{Name: "vm", Attempt: uint32(i/vms + 1), Image: "img-a"})
				if err != nil {
					b.Fatal(err)
				}
				if err := e.m.StartContainer(ctx, cid); err != nil {
					b.Fatal(err)
				}
				cids[j] = cid
				b.StartTimer()
			}
		})
	}
}
