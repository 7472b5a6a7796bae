package pod_test

import (
	"context"
	"fmt"
	"testing"

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
