//go:build e2e

package e2e

import (
	"context"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"
)

// The e2e node's second CNI network (ci/k8s/e2e-node.sh): a bridge network
// in the node's CNI directory that is nobody's default.
const (
	secondNetwork = "podvisor-e2e-b"
	secondSubnet  = "10.240.89."
)

var _ = Describe("podvisor extra networks on a one-node Kubernetes [Conformance] [Slow]",
	Label("Conformance", "Slow"), Ordered, func() {
		var ns string

		BeforeAll(func(ctx context.Context) {
			ns = testNamespace(ctx, "podvisor-e2e-nets-")
		})

		It("gives a VM pod a second NIC on the network Multus's annotation names: both addresses in the guest, the second in CRI's additional_ips", func(ctx context.Context) {
			name := "vm-two-networks"
			_, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name},
					Annotations: map[string]string{
						"kubernetes.io/target-runtime": "virtlet.cloud",
						"k8s.v1.cni.cncf.io/networks":  secondNetwork,
					}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{vmContainer()}, TerminationGracePeriodSeconds: ptr.To[int64](30)},
			}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			p := runningPods(ctx, ns, "app="+name, 1)[0]

			rs, done := criClient()
			defer done()
			f := footprint(ctx, rs, string(p.UID))
			Expect(f.sandboxes).To(HaveLen(1))
			st, err := rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: f.sandboxes[0]})
			Expect(err).NotTo(HaveOccurred())
			Expect(st.Status.Network.Ip).To(Equal(p.Status.PodIP))
			Expect(st.Status.Network.AdditionalIps).To(HaveLen(1))
			second := st.Status.Network.AdditionalIps[0].Ip
			Expect(strings.HasPrefix(second, secondSubnet)).To(BeTrue(), "additional IP %s is not on %s (%s0/24)", second, secondNetwork, secondSubnet)

			// The guest configured both NICs from cloud-init's
			// network-config and answers on both addresses.
			waitConsole(ctx, ns, name, "PODVISOR-GUEST: net=static ip="+p.Status.PodIP, "PODVISOR-GUEST: net=static ip="+second, guestReady)
			Expect(askHostname(ctx, p.Status.PodIP)).To(Equal(name))
			Expect(askHostname(ctx, second)).To(Equal(name))
			// kubelet keeps one address per family in status.podIPs: the
			// second network's address is CRI's only.
			Expect(p.Status.PodIPs).To(ConsistOf(corev1.PodIP{IP: p.Status.PodIP}))
			GinkgoWriter.Printf("pod %s: eth0 %s, net1 %s\n", name, p.Status.PodIP, second)

			By("deleting it: both networks are torn down with the VM")
			Expect(client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{})).To(Succeed())
			Eventually(func() []string { return leftovers(ctx, rs, f) }).WithContext(ctx).
				WithTimeout(cleanupTimeout).WithPolling(poll).Should(BeEmpty())
		})

		It("refuses a VM pod naming an unknown network, saying which annotation and what there is", func(ctx context.Context) {
			name := "vm-unknown-network"
			_, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{
					"kubernetes.io/target-runtime": "virtlet.cloud",
					"k8s.v1.cni.cncf.io/networks":  "no-such-network",
				}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{vmContainer()}, TerminationGracePeriodSeconds: ptr.To[int64](30)},
			}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			// kubelet reports the failed RunPodSandbox as an event.
			Eventually(func() string {
				evs, err := client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
				if err != nil {
					return err.Error()
				}
				var msgs []string
				for _, e := range evs.Items {
					msgs = append(msgs, e.Message)
				}
				return strings.Join(msgs, "\n")
			}).WithContext(ctx).WithTimeout(podStartTimeout).WithPolling(poll).Should(And(
				ContainSubstring(`annotation k8s.v1.cni.cncf.io/networks: network "no-such-network"`),
				ContainSubstring(secondNetwork)))
			p, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})).To(Succeed())
			// Every failed RunPodSandbox was undone: no sandbox, no namespace.
			rs, done := criClient()
			defer done()
			Eventually(func() []string { return leftovers(ctx, rs, footprint(ctx, rs, string(p.UID))) }).WithContext(ctx).
				WithTimeout(cleanupTimeout).WithPolling(poll).Should(BeEmpty())
		})
	})
