//go:build e2e

package e2e

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Checkpoints through kubelet's checkpoint API (POST
// /checkpoint/{ns}/{pod}/{container}, reached through the API server's
// node proxy by podvisorctl snapshot) and the restore as a new pod
// (podvisorctl restore: a pod whose image names the archive).
var _ = Describe("checkpoints of VM pods [Slow]", Label("Slow"), Ordered, func() {
	var ns string
	BeforeAll(func(ctx context.Context) {
		ns = testNamespace(ctx, "podvisor-e2e-ckpt-")
	})

	count := func(ctx context.Context, pod string) int {
		out, err := kubectl(ctx, "-n", ns, "exec", pod, "--", "cat", "/tmp/count")
		Expect(err).NotTo(HaveOccurred())
		n, err := strconv.Atoi(strings.TrimSpace(out))
		Expect(err).NotTo(HaveOccurred(), "the count %q", out)
		return n
	}
	podvisorctl := func(ctx context.Context, args ...string) string {
		cmd := exec.CommandContext(ctx, cfg.podvisorctl, append([]string{"--kubectl", cfg.kubectl, "--kubeconfig", cfg.kubeconfig, "-n", ns}, args...)...)
		out, err := cmd.Output()
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		Expect(err).NotTo(HaveOccurred(), "podvisorctl %v: %s", args, stderr)
		return strings.TrimSpace(string(out))
	}

	It("checkpoints a VM pod through kubelet's API and restores it as a new pod whose guest counts on", func(ctx context.Context) {
		const name = "ckpt-vm"
		_, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}, Annotations: map[string]string{
				"kubernetes.io/target-runtime":   "virtlet.cloud",
				"VirtletDiskDriver":              "virtio",
				"VirtletCloudInitUserDataScript": "#!/bin/sh\n(i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 1; done) &\n",
			}},
			// The RuntimeClass's overhead gives the pod's cgroup room for
			// QEMU beside the guest's RAM: without it the pod's limit is the
			// guest's RAM, and the save (QEMU migrating to a file) had QEMU
			// OOM-killed by the pod's cgroup in the first run.
			// podvisorctl restore --from copies it.
			Spec: corev1.PodSpec{RuntimeClassName: ptr.To("podvisor"), Containers: []corev1.Container{vmContainer()}, TerminationGracePeriodSeconds: ptr.To[int64](30)},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		runningPods(ctx, ns, "app="+name, 1)
		waitConsole(ctx, ns, name, guestReady)
		var before int
		Eventually(func() int { before = count(ctx, name); return before }).WithContext(ctx).
			WithTimeout(time.Minute).WithPolling(poll).Should(BeNumerically(">=", 3))

		By("podvisorctl snapshot: kubelet's checkpoint API")
		archive := podvisorctl(ctx, "snapshot", name)
		Expect(archive).To(HavePrefix("/var/lib/kubelet/checkpoints/checkpoint-"))
		Expect(count(ctx, name)).To(BeNumerically(">=", before), "the VM runs on after its checkpoint")

		By("podvisorctl restore: a new pod from the archive")
		podvisorctl(ctx, "restore", archive, "--node", cfg.node, "--from", name, "--name", "ckpt-copy")
		var restored *corev1.Pod
		Eventually(func(g Gomega) {
			restored, err = client.CoreV1().Pods(ns).Get(ctx, "ckpt-copy", metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(restored.Status.Phase).To(Equal(corev1.PodRunning), describe(*restored))
			g.Expect(restored.Status.PodIP).NotTo(BeEmpty())
		}).WithContext(ctx).WithTimeout(podStartTimeout).WithPolling(poll).Should(Succeed())
		Expect(restored.Status.ContainerStatuses[0].ContainerID).To(ContainSubstring("podvisor__"))
		Expect(count(ctx, "ckpt-copy")).To(BeNumerically(">=", before), "the restored guest continued the checkpointed one")
		addr, err := kubectl(ctx, "-n", ns, "exec", "ckpt-copy", "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0")
		Expect(err).NotTo(HaveOccurred())
		Expect(addr).To(ContainSubstring("inet "+restored.Status.PodIP+"/"), "the restored guest has the new pod's address")
		Expect(askHostname(ctx, restored.Status.PodIP)).To(Equal(name), "the restored guest answers on its new address (its hostname is the checkpointed pod's)")
		Expect(count(ctx, name)).To(BeNumerically(">", before), "the original runs on beside its copy")
	})
})
