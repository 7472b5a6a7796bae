//go:build e2e

package e2e

import (
	"context"
	"strconv"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// guestSize is the VM's nproc and MemTotal (kB), read in the guest.
func guestSize(ctx context.Context, ns, pod string) (int, int64) {
	out := vmExec(ctx, ns, pod, "nproc; sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo")
	f := strings.Fields(out)
	Expect(f).To(HaveLen(2), "nproc and MemTotal of %s: %q", pod, out)
	n, err := strconv.Atoi(f[0])
	Expect(err).NotTo(HaveOccurred())
	mem, err := strconv.ParseInt(f[1], 10, 64)
	Expect(err).NotTo(HaveOccurred())
	return n, mem
}

// resizePod patches the pod's resize subresource: the VM container's CPU
// and memory limits (requests unchanged: the QoS class stays Burstable).
func resizePod(ctx context.Context, ns, pod, cpu, memory string) {
	patch := `{"spec":{"containers":[{"name":"vm","resources":{"limits":{"cpu":"` + cpu + `","memory":"` + memory + `"}}}]}}`
	out, err := kubectl(ctx, "-n", ns, "patch", "pod", pod, "--subresource", "resize", "--type", "strategic", "-p", patch)
	Expect(err).NotTo(HaveOccurred(), "resizing %s: %s", pod, out)
}

var _ = Describe("in-place resize of a VM pod [Slow]", Label("Slow"), Ordered, func() {
	const pod = "resized-vm"
	var (
		ns          string
		containerID string
		mem0        int64
	)

	BeforeAll(func(ctx context.Context) {
		ns = testNamespace(ctx, "podvisor-resize-")
		c := vmContainer()
		c.Resources = corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("256Mi")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		}
		c.ResizePolicy = []corev1.ContainerResizePolicy{
			{ResourceName: corev1.ResourceCPU, RestartPolicy: corev1.NotRequired},
			{ResourceName: corev1.ResourceMemory, RestartPolicy: corev1.NotRequired},
		}
		_, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			// No VirtletVCPUCount: the CPU limit sets the vCPUs. The
			// RuntimeClass, not Virtlet's annotation: its podFixed overhead
			// is in the pod's memory limit, which is what lets kubelet lower
			// the container's limit below QEMU's usage with the guest's
			// RAM (the first run by annotation: "below current usage").
			ObjectMeta: metav1.ObjectMeta{Name: pod, Labels: map[string]string{"app": pod}},
			Spec: corev1.PodSpec{RuntimeClassName: ptr.To(runtimeClass), Containers: []corev1.Container{c},
				TerminationGracePeriodSeconds: ptr.To[int64](30)},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		p := runningPods(ctx, ns, "app="+pod, 1)[0]
		containerID = p.Status.ContainerStatuses[0].ContainerID
		waitConsole(ctx, ns, pod, guestReady)
	})

	It("boots with the vCPUs of its CPU limit and the RAM of its memory limit", func(ctx context.Context) {
		var n int
		n, mem0 = guestSize(ctx, ns, pod)
		Expect(n).To(Equal(1), "nproc with a CPU limit of 1")
		Expect(mem0).To(BeNumerically(">", 192<<10), "MemTotal with 256Mi")
	})

	It("grows to 2 vCPUs on kubectl patch --subresource resize, without a restart", func(ctx context.Context) {
		resizePod(ctx, ns, pod, "2", "256Mi")
		Eventually(func(g Gomega) {
			n, _ := guestSize(ctx, ns, pod)
			g.Expect(n).To(Equal(2), "nproc")
		}).WithContext(ctx).WithTimeout(bootTimeout).WithPolling(poll).Should(Succeed())
		expectNotRestarted(ctx, ns, pod, containerID)
	})

	It("shrinks back to 1 vCPU", func(ctx context.Context) {
		resizePod(ctx, ns, pod, "1", "256Mi")
		Eventually(func(g Gomega) {
			n, _ := guestSize(ctx, ns, pod)
			g.Expect(n).To(Equal(1), "nproc")
		}).WithContext(ctx).WithTimeout(bootTimeout).WithPolling(poll).Should(Succeed())
		expectNotRestarted(ctx, ns, pod, containerID)
	})

	// kubelet lowers a memory limit only when the pod's cgroup uses less
	// than the new limit; the balloon's free page reporting keeps QEMU's
	// memory near what the guest uses, which is what lets it through.
	It("gives back 64 MiB through the balloon on a lower memory limit, without a restart", func(ctx context.Context) {
		resizePod(ctx, ns, pod, "1", "192Mi")
		Eventually(func(g Gomega) {
			_, mem := guestSize(ctx, ns, pod)
			g.Expect(mem0-mem).To(BeNumerically("~", 64<<10, 4<<10), "MemTotal %d kB, was %d kB", mem, mem0)
		}).WithContext(ctx).WithTimeout(bootTimeout).WithPolling(poll).Should(Succeed())
		expectNotRestarted(ctx, ns, pod, containerID)
	})
})

// expectNotRestarted: the pod's VM container is the one it started with,
// never restarted, and kubelet reports the resize done (no pending or
// in-progress condition left).
func expectNotRestarted(ctx context.Context, ns, pod, containerID string) {
	Eventually(func(g Gomega) {
		p, err := client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(p.Status.ContainerStatuses).To(HaveLen(1))
		cs := p.Status.ContainerStatuses[0]
		g.Expect(cs.ContainerID).To(Equal(containerID), "the VM container was replaced")
		g.Expect(cs.RestartCount).To(BeZero())
		for _, c := range p.Status.Conditions {
			g.Expect(c.Type).NotTo(BeElementOf(corev1.PodResizePending, corev1.PodResizeInProgress), "pod %s: %s", pod, describe(*p))
		}
	}).WithContext(ctx).WithTimeout(bootTimeout).WithPolling(poll).Should(Succeed())
}
