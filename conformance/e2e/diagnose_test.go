//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/domain"
)

// vmDiagnosis says what the node knows of a pod's VM when a wait for it
// fails: whether the guest runs (its CPU time grows, its agent answers),
// whether podvisor holds its console (QEMU's `info chardev` says
// "disconnected" when no one does), and what reached the container log.
// It tells a hung guest from a console that is not copied.
func vmDiagnosis(ctx context.Context, ns, pod string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	var b strings.Builder
	fmt.Fprintf(&b, "\n--- diagnosis of %s/%s ---\n", ns, pod)
	out, _ := kubectl(ctx, "-n", ns, "get", "pod", pod, "-o", "wide")
	b.WriteString(out)
	p, err := client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		fmt.Fprintf(&b, "getting the pod: %v\n", err)
		return b.String()
	}
	rs, done := criClient()
	defer done()
	for _, id := range footprint(ctx, rs, string(p.UID)).containers {
		diagnoseContainer(ctx, &b, rs, id)
	}
	return b.String()
}

func diagnoseContainer(ctx context.Context, b *strings.Builder, rs runtimeapi.RuntimeServiceClient, id string) {
	name := domain.NameFor(id)
	fmt.Fprintf(b, "container %s, domain %s\n", id, name)
	if st, err := rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id}); err != nil {
		fmt.Fprintf(b, "  ContainerStatus: %v\n", err)
	} else {
		s := st.Status
		fmt.Fprintf(b, "  state %s, started %s, log %s\n", s.State, time.Unix(0, s.StartedAt).UTC().Format(time.RFC3339), s.LogPath)
		if fi, err := os.Stat(s.LogPath); err != nil {
			fmt.Fprintf(b, "  log: %v\n", err)
		} else {
			fmt.Fprintf(b, "  log: %d bytes, modified %s\n", fi.Size(), fi.ModTime().UTC().Format(time.RFC3339))
		}
	}
	virsh := func(args ...string) string {
		out, err := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", "qemu:///system"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Sprintf("%s (%v)", strings.TrimSpace(string(out)), err)
		}
		return strings.TrimSpace(string(out))
	}
	fmt.Fprintf(b, "  domstate: %s\n", virsh("domstate", "--reason", name))
	cpu := func() string {
		for _, l := range strings.Split(virsh("dominfo", name), "\n") {
			if strings.HasPrefix(l, "CPU time:") {
				return strings.TrimSpace(strings.TrimPrefix(l, "CPU time:"))
			}
		}
		return "?"
	}
	first := cpu()
	time.Sleep(3 * time.Second)
	fmt.Fprintf(b, "  CPU time: %s, 3 s later %s\n", first, cpu())
	fmt.Fprintf(b, "  info chardev:\n%s\n", indent(virsh("qemu-monitor-command", "--hmp", name, "info chardev")))
	regs := strings.Split(virsh("qemu-monitor-command", "--hmp", name, "info registers"), "\n")
	fmt.Fprintf(b, "  registers:\n%s\n", indent(strings.Join(regs[:min(len(regs), 3)], "\n")))
	fmt.Fprintf(b, "  guest-ping: %s\n", virsh("qemu-agent-command", "--timeout", "5", name, `{"execute":"guest-ping"}`))
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
