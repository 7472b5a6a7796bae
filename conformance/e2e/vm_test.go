//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/podvisor/podvisor/internal/rfb"
	"github.com/podvisor/podvisor/internal/syncbuf"
	"github.com/podvisor/podvisor/runtime/domain"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

const (
	deployName   = "testvm"
	userDataName = "testvm-userdata"
	runtimeClass = "podvisor"
	// The ConfigMap's user-data is a script the test guest runs; its
	// output on the console proves the ConfigMap reached the VM.
	userDataMarker = "E2E-USERDATA: from a ConfigMap on"
)

// vmContainer is the VM "container" of every VM pod: the test guest,
// 256 MiB of RAM, stdin open so that `kubectl attach -i` reaches the console.
func vmContainer() corev1.Container {
	return corev1.Container{
		Name:            "vm",
		Image:           cfg.vmImage,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Stdin:           true,
		Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
			corev1.ResourceMemory: resource.MustParse("256Mi"),
		}},
	}
}

var _ = Describe("podvisor on a one-node Kubernetes [Conformance] [Disruptive] [Slow]",
	Label("Conformance", "Disruptive", "Slow"), Ordered, ContinueOnFailure, func() {
		var (
			ns       string
			vmPods   []corev1.Pod
			rcPod    = "vm-by-runtimeclass"
			ctrPod   = "plain-container"
			vmLabels = map[string]string{"app": deployName}
		)

		BeforeAll(func(ctx context.Context) {
			ns = testNamespace(ctx, "podvisor-e2e-")
		})

		It("runs a Deployment of 2 VM replicas (virtlet.cloud image, Virtlet annotations, ConfigMap user-data)", func(ctx context.Context) {
			_, err := client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: userDataName},
				Data:       map[string]string{"user-data": "#!/bin/sh\necho \"" + userDataMarker + " $(hostname)\"\n"},
			}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			_, err = client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: deployName},
				Spec: appsv1.DeploymentSpec{
					Replicas: ptr.To[int32](2),
					Selector: &metav1.LabelSelector{MatchLabels: vmLabels},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{
							Labels: vmLabels,
							// A Virtlet manifest's annotations, unchanged.
							Annotations: map[string]string{
								"kubernetes.io/target-runtime":      "virtlet.cloud",
								"VirtletDiskDriver":                 "virtio",
								"VirtletVCPUCount":                  "1",
								"VirtletCloudInitUserDataSource":    "configmap/" + userDataName,
								"VirtletCloudInitUserDataSourceKey": "user-data",
							},
						},
						Spec: corev1.PodSpec{
							Containers:                    []corev1.Container{vmContainer()},
							TerminationGracePeriodSeconds: ptr.To[int64](30),
						},
					},
				},
			}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			vmPods = runningPods(ctx, ns, "app="+deployName, 2)
			for _, p := range vmPods {
				Expect(p.Spec.NodeName).To(Equal(cfg.node))
				Expect(p.Status.ContainerStatuses).To(HaveLen(1))
				// criproxy prefixes the IDs of podvisor's objects.
				Expect(p.Status.ContainerStatuses[0].ContainerID).To(ContainSubstring("podvisor__"), "pod %s was not run by podvisor", p.Name)
				waitConsole(ctx, ns, p.Name, guestReady)
			}
			GinkgoWriter.Printf("VM pods: %v\n", names(vmPods))
		})

		It("labels the node with its accelerator and why (the DaemonSet's --node-name and RBAC)", func(ctx context.Context) {
			Eventually(func(g Gomega) {
				n, err := client.CoreV1().Nodes().Get(ctx, cfg.node, metav1.GetOptions{})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(n.Labels).To(HaveKeyWithValue(hypervisor.NodeLabelAccelerator, BeElementOf("kvm", "tcg")))
				g.Expect(n.Annotations).To(HaveKeyWithValue(hypervisor.NodeAnnotationAcceleratorReason, Not(BeEmpty())))
			}).WithContext(ctx).WithTimeout(2 * time.Minute).WithPolling(poll).Should(Succeed())
		})

		It("shows the serial console in kubectl logs", func(ctx context.Context) {
			Expect(vmPods).To(HaveLen(2), "the Deployment spec did not get its pods running")
			for _, p := range vmPods {
				log, err := consoleLog(ctx, ns, p.Name)
				Expect(err).NotTo(HaveOccurred())
				Expect(log).To(ContainSubstring("PODVISOR-GUEST: hostname=" + p.Name))
				Expect(log).To(ContainSubstring("PODVISOR-GUEST: ip=" + p.Status.PodIP))
				Expect(log).To(ContainSubstring(guestReady))
			}
		})

		It("answers on each pod IP", func(ctx context.Context) {
			Expect(vmPods).To(HaveLen(2), "the Deployment spec did not get its pods running")
			for _, p := range vmPods {
				Expect(askHostname(ctx, p.Status.PodIP)).To(Equal(p.Name), "%s:8080", p.Status.PodIP)
			}
		})

		It("reports a VM's CPU, memory and writable layer in kubelet's summary API (what kubectl top and eviction read)", func(ctx context.Context) {
			Expect(vmPods).NotTo(BeEmpty(), "the Deployment spec did not get its pods running")
			p := vmPods[0]
			Eventually(func(g Gomega) {
				raw, err := client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", cfg.node, "proxy", "stats", "summary").DoRaw(ctx)
				g.Expect(err).NotTo(HaveOccurred())
				var sum summary
				g.Expect(json.Unmarshal(raw, &sum)).To(Succeed())
				ps, ok := sum.pod(ns, p.Name)
				g.Expect(ok).To(BeTrue(), "pod %s not in the summary", p.Name)
				GinkgoWriter.Printf("summary of %s: %+v\n", p.Name, ps)
				g.Expect(ps.Containers).To(HaveLen(1))
				c := ps.Containers[0]
				g.Expect(c.Name).To(Equal("vm"))
				g.Expect(c.CPU.UsageCoreNanoSeconds).To(BeNumerically(">", 0))
				g.Expect(c.CPU.UsageNanoCores).To(BeNumerically(">", 0))
				g.Expect(c.Memory.WorkingSetBytes).To(BeNumerically(">", 0))
				g.Expect(c.Memory.WorkingSetBytes).To(BeNumerically("<=", 256<<20))
				g.Expect(c.Rootfs.UsedBytes).To(BeNumerically(">", 0), "the root overlay's bytes")
				g.Expect(ps.EphemeralStorage.UsedBytes).To(BeNumerically(">=", c.Rootfs.UsedBytes))
			}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(10 * time.Second).Should(Succeed())
		})

		It("reaches the serial console with kubectl attach", func(ctx context.Context) {
			Expect(vmPods).NotTo(BeEmpty(), "the Deployment spec did not get its pods running")
			p := vmPods[0]
			actx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(actx, cfg.kubectl, "--kubeconfig", cfg.kubeconfig, "-n", ns, "attach", "-i", p.Name, "-c", "vm")
			stdin, err := cmd.StdinPipe()
			Expect(err).NotTo(HaveOccurred())
			var out syncbuf.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			Expect(cmd.Start()).To(Succeed())
			defer cmd.Process.Kill()
			// The shell computes the marker: the echo of the typed line
			// does not contain it, only the command's output does.
			Eventually(func(g Gomega) {
				_, err := io.WriteString(stdin, "echo $((6*7))-attached-to-$(hostname)\n")
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(out.String()).To(ContainSubstring("42-attached-to-" + p.Name))
			}).WithContext(actx).WithTimeout(2*time.Minute).WithPolling(3*time.Second).Should(Succeed(), "attach output:\n%s", out.String())
			// Ctrl-] detaches; kubectl attach then returns.
			_, err = io.WriteString(stdin, "\x1d")
			Expect(err).NotTo(HaveOccurred())
			stdin.Close()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			Eventually(done).WithTimeout(time.Minute).Should(Receive(), "kubectl attach did not return after the detach key")
		})

		It("reaches the serial console with podvisorctl console", func(ctx context.Context) {
			Expect(vmPods).NotTo(BeEmpty(), "the Deployment spec did not get its pods running")
			p := vmPods[1]
			actx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(actx, cfg.podvisorctl, "--kubectl", cfg.kubectl, "--kubeconfig", cfg.kubeconfig, "-n", ns, "console", p.Name)
			stdin, err := cmd.StdinPipe()
			Expect(err).NotTo(HaveOccurred())
			var out, errOut syncbuf.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errOut
			Expect(cmd.Start()).To(Succeed())
			defer cmd.Process.Kill()
			Eventually(func(g Gomega) {
				_, err := io.WriteString(stdin, "echo $((6*7))-podvisorctl-console-$(hostname)\n")
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(out.String()).To(ContainSubstring("42-podvisorctl-console-" + p.Name))
			}).WithContext(actx).WithTimeout(2*time.Minute).WithPolling(3*time.Second).Should(Succeed(), "console output:\n%s\nstderr:\n%s", out.String(), errOut.String())
			// podvisorctl names the pod's domain as podvisor does.
			_, id, _ := strings.Cut(p.Status.ContainerStatuses[0].ContainerID, "podvisor__")
			Expect(errOut.String()).To(ContainSubstring("Serial console of %s/%s (domain %s on node %s)", ns, p.Name, domain.NameFor(id), cfg.node))
			_, err = io.WriteString(stdin, "\x1d")
			Expect(err).NotTo(HaveOccurred())
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var werr error
			Eventually(done).WithTimeout(time.Minute).Should(Receive(&werr), "podvisorctl console did not return after the detach key")
			Expect(werr).NotTo(HaveOccurred(), "stderr:\n%s", errOut.String())
		})

		It("forwards a guest port for podvisorctl ssh (a stand-in ssh client reads the guest's port 8080)", func(ctx context.Context) {
			Expect(vmPods).NotTo(BeEmpty(), "the Deployment spec did not get its pods running")
			p := vmPods[0]
			// podvisorctl runs "ssh -p LOCAL-PORT -o ... HOST": the stand-in
			// records that and reads what the tunnel brings from the guest.
			dir := GinkgoT().TempDir()
			argsFile := filepath.Join(dir, "args")
			script := filepath.Join(dir, "ssh")
			Expect(os.WriteFile(script, []byte("#!/bin/bash\nset -e\necho \"$*\" > "+argsFile+"\n[ \"$1\" = -p ]\nexec 3<>\"/dev/tcp/127.0.0.1/$2\"\ncat <&3\n"), 0o755)).To(Succeed())
			actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			var out, errOut syncbuf.Buffer
			cmd := exec.CommandContext(actx, cfg.podvisorctl, "--kubectl", cfg.kubectl, "--kubeconfig", cfg.kubeconfig, "-n", ns, "ssh", "--port", "8080", "--ssh", script, "e2e@"+p.Name)
			cmd.Stdout, cmd.Stderr = &out, &errOut
			Expect(cmd.Run()).To(Succeed(), "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
			Expect(strings.TrimSpace(out.String())).To(Equal(p.Name))
			args, err := os.ReadFile(argsFile)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(args)).To(MatchRegexp(`^-p \d+ -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR e2e@127\.0\.0\.1\n$`))
		})

		It("shows a VM's display through podvisorctl vnc (an RFB handshake reads the protocol version and a framebuffer size)", func(ctx context.Context) {
			Expect(vmPods).NotTo(BeEmpty(), "the Deployment spec did not get its pods running")
			p := vmPods[1]
			_, id, _ := strings.Cut(p.Status.ContainerStatuses[0].ContainerID, "podvisor__")
			actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			var out, errOut syncbuf.Buffer
			cmd := exec.CommandContext(actx, cfg.podvisorctl, "--kubectl", cfg.kubectl, "--kubeconfig", cfg.kubeconfig, "-n", ns, "vnc", "--viewer", "none", p.Name)
			cmd.Stdout, cmd.Stderr = &out, &errOut
			Expect(cmd.Start()).To(Succeed())
			defer cmd.Process.Kill()
			addr := regexp.MustCompile(`vnc://(127\.0\.0\.1:\d+)\n`)
			Eventually(out.String).WithContext(actx).WithTimeout(time.Minute).WithPolling(time.Second).Should(MatchRegexp(addr.String()), "stderr:\n%s", errOut.String())
			Expect(out.String()).To(ContainSubstring("VNC display of %s/%s (domain %s on node %s)", ns, p.Name, domain.NameFor(id), cfg.node))
			// A viewer connects twice (as viewers reconnect): one tunnel.
			for i := range 2 {
				conn, err := net.Dial("tcp", addr.FindStringSubmatch(out.String())[1])
				Expect(err).NotTo(HaveOccurred())
				hctx, hcancel := context.WithTimeout(actx, 30*time.Second)
				si, err := rfb.Handshake(hctx, conn)
				hcancel()
				conn.Close()
				Expect(err).NotTo(HaveOccurred(), "connection %d; podvisorctl said:\n%s", i, errOut.String())
				GinkgoWriter.Printf("display of %s: %+v\n", p.Name, si)
				Expect(si.Version).To(HavePrefix("RFB 003."))
				Expect(si.Width).To(BeNumerically(">", 0))
				Expect(si.Height).To(BeNumerically(">", 0))
				Expect(si.Name).To(ContainSubstring(domain.NameFor(id)))
			}
			// Ctrl-C ends the forward, and podvisorctl with it.
			Expect(cmd.Process.Signal(os.Interrupt)).To(Succeed())
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var werr error
			Eventually(done).WithTimeout(30*time.Second).Should(Receive(&werr), "podvisorctl vnc did not end on SIGINT")
			Expect(werr).NotTo(HaveOccurred(), "stderr:\n%s", errOut.String())
		})

		It("applies user-data taken from a ConfigMap", func(ctx context.Context) {
			Expect(vmPods).To(HaveLen(2), "the Deployment spec did not get its pods running")
			for _, p := range vmPods {
				waitConsole(ctx, ns, p.Name, userDataMarker+" "+p.Name)
			}
		})

		It("runs a plain container pod beside the VMs on containerd", func(ctx context.Context) {
			_, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: ctrPod, Labels: map[string]string{"app": ctrPod}},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name: "busybox", Image: cfg.containerImage, ImagePullPolicy: corev1.PullNever,
						Command: []string{"sleep", "3600"},
					}},
					TerminationGracePeriodSeconds: ptr.To[int64](1),
				},
			}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			p := runningPods(ctx, ns, "app="+ctrPod, 1)[0]
			Expect(p.Status.ContainerStatuses[0].ContainerID).NotTo(ContainSubstring("podvisor__"), "the container pod went to podvisor")
			out, err := kubectl(ctx, "-n", ns, "exec", ctrPod, "--", "echo", "exec-in-containerd")
			Expect(err).NotTo(HaveOccurred())
			Expect(strings.TrimSpace(out)).To(Equal("exec-in-containerd"))
			if len(vmPods) > 0 {
				By("the container reaches a VM's pod IP")
				vm := vmPods[0]
				Eventually(func(g Gomega) {
					out, err := kubectl(ctx, "-n", ns, "exec", ctrPod, "--", "nc", "-w", "5", vm.Status.PodIP, "8080")
					g.Expect(err).NotTo(HaveOccurred())
					g.Expect(strings.TrimSpace(out)).To(Equal(vm.Name))
				}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(poll).Should(Succeed())
			}
		})

		It("lists the VM pods with podvisorctl list (domain, node, accelerator; not the container pod)", func(ctx context.Context) {
			Expect(vmPods).To(HaveLen(2), "the Deployment spec did not get its pods running")
			out, err := exec.CommandContext(ctx, cfg.podvisorctl, "--kubectl", cfg.kubectl, "--kubeconfig", cfg.kubeconfig, "-n", ns, "list", "-o", "json").Output()
			Expect(err).NotTo(HaveOccurred())
			var l struct {
				Items []struct {
					Name, Node, Domain, Accelerator, Phase string
					VCPUs                                  int   `json:"vcpus"`
					MemoryBytes                            int64 `json:"memoryBytes"`
				} `json:"items"`
			}
			Expect(json.Unmarshal(out, &l)).To(Succeed(), "%s", out)
			n, err := client.CoreV1().Nodes().Get(ctx, cfg.node, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			listed := map[string]bool{}
			for _, it := range l.Items {
				listed[it.Name] = true
			}
			for _, p := range vmPods {
				Expect(listed).To(HaveKey(p.Name), "%s", out)
				_, id, _ := strings.Cut(p.Status.ContainerStatuses[0].ContainerID, "podvisor__")
				for _, it := range l.Items {
					if it.Name == p.Name {
						Expect(it.Domain).To(Equal(domain.NameFor(id)))
						Expect(it.Node).To(Equal(cfg.node))
						Expect(it.Phase).To(Equal("Running"))
						Expect(it.Accelerator).To(Equal(n.Labels[hypervisor.NodeLabelAccelerator]))
						Expect(it.VCPUs).To(Equal(1))
						Expect(it.MemoryBytes).To(Equal(int64(256 << 20)))
					}
				}
			}
			Expect(listed).NotTo(HaveKey(ctrPod))
			table, err := exec.CommandContext(ctx, cfg.podvisorctl, "--kubectl", cfg.kubectl, "--kubeconfig", cfg.kubeconfig, "-n", ns, "list").Output()
			Expect(err).NotTo(HaveOccurred())
			GinkgoWriter.Printf("podvisorctl list:\n%s", table)
			Expect(string(table)).To(HavePrefix("NAME "))
		})

		// The DaemonSet restarted, upgraded and its libvirt killed under
		// the two VMs of the Deployment (upgrade_test.go).
		upgradeSpecs(func() string { return ns }, func() []corev1.Pod { return vmPods })

		It("runs a VM pod selected by RuntimeClass handler podvisor, without any annotation, its image named by a VirtletImageMapping", func(ctx context.Context) {
			// The name is in no translation file: only the mapping object
			// (watched by podvisor in its own namespace, kube-system) gives
			// its URL.
			mapping := fmt.Sprintf(`{"apiVersion": "virtlet.k8s/v1", "kind": "VirtletImageMapping",
 "metadata": {"name": %q, "namespace": "kube-system"},
 "spec": {"translations": [{"name": "e2e/mapped-testvm", "url": %q}]}}`, ns, cfg.vmImageURL)
			Expect(kubectlStdin(ctx, mapping, "apply", "-f", "-")).Error().NotTo(HaveOccurred())
			DeferCleanup(func(ctx context.Context) {
				Expect(kubectl(ctx, "-n", "kube-system", "delete", "virtletimagemapping", ns)).Error().NotTo(HaveOccurred())
			})
			_, err := client.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{
				ObjectMeta: metav1.ObjectMeta{Name: runtimeClass},
				Handler:    "podvisor",
			}, metav1.CreateOptions{})
			if !apierrors.IsAlreadyExists(err) {
				Expect(err).NotTo(HaveOccurred())
			}
			p := runtimeClassVM(ctx, ns, rcPod, "virtlet.cloud/e2e/mapped-testvm")

			rs, done := criClient()
			defer done()
			f := footprint(ctx, rs, string(p.UID))
			Expect(f.containers).To(HaveLen(1))
			By("deleting it: its VM goes away")
			Expect(client.CoreV1().Pods(ns).Delete(ctx, rcPod, metav1.DeleteOptions{})).To(Succeed())
			Eventually(func() []string { return leftovers(ctx, rs, f) }).WithContext(ctx).
				WithTimeout(cleanupTimeout).WithPolling(poll).Should(BeEmpty())
		})

		It("removes the VMs with no leak when the Deployment scales to 0", func(ctx context.Context) {
			Expect(vmPods).To(HaveLen(2), "the Deployment spec did not get its pods running")
			rs, done := criClient()
			defer done()
			var fps []vmFootprint
			for _, p := range vmPods {
				f := footprint(ctx, rs, string(p.UID))
				Expect(f.sandboxes).To(HaveLen(1), "podvisor's sandboxes of %s", p.Name)
				Expect(f.containers).To(HaveLen(1), "podvisor's containers of %s", p.Name)
				Expect(leftovers(ctx, rs, vmFootprint{podUID: "none", containers: f.containers})).
					To(ContainElement(ContainSubstring("libvirt domain")), "the running VM of %s is not visible in libvirt", p.Name)
				fps = append(fps, f)
			}
			_, err := client.AppsV1().Deployments(ns).Patch(ctx, deployName, types.MergePatchType,
				[]byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{})
			Expect(err).NotTo(HaveOccurred())
			Eventually(func(g Gomega) {
				list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + deployName})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(list.Items).To(BeEmpty())
			}).WithContext(ctx).WithTimeout(cleanupTimeout).WithPolling(poll).Should(Succeed())
			for _, f := range fps {
				Eventually(func() []string { return leftovers(ctx, rs, f) }).WithContext(ctx).
					WithTimeout(cleanupTimeout).WithPolling(poll).Should(BeEmpty(), "pod %s", f.podUID)
			}
			fmt.Fprintf(GinkgoWriter, "no leak: %d sandboxes, %d VMs gone\n", len(fps), len(fps))
		})
	})

// summary is the part of kubelet's /stats/summary the stats spec reads.
type summary struct {
	Pods []podStats `json:"pods"`
}

type podStats struct {
	PodRef struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"podRef"`
	Containers []struct {
		Name string `json:"name"`
		CPU  struct {
			UsageNanoCores       uint64 `json:"usageNanoCores"`
			UsageCoreNanoSeconds uint64 `json:"usageCoreNanoSeconds"`
		} `json:"cpu"`
		Memory struct {
			WorkingSetBytes uint64 `json:"workingSetBytes"`
		} `json:"memory"`
		Rootfs struct {
			UsedBytes uint64 `json:"usedBytes"`
		} `json:"rootfs"`
	} `json:"containers"`
	EphemeralStorage struct {
		UsedBytes uint64 `json:"usedBytes"`
	} `json:"ephemeral-storage"`
}

func (s summary) pod(ns, name string) (podStats, bool) {
	for _, p := range s.Pods {
		if p.PodRef.Namespace == ns && p.PodRef.Name == name {
			return p, true
		}
	}
	return podStats{}, false
}
