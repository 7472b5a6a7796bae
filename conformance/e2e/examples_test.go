//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podvisor/podvisor/deploy"
)

// exampleKey is the comment of the public key every example gives its VM.
const exampleKey = "me@localhost"

// vmExample is one file of deploy/examples and what its comment promises,
// checked in the running guest.
type vmExample struct {
	file, pod, does string
	check           func(ctx context.Context, ns string, p corev1.Pod)
}

// imageLine is an example's VM image: the only thing the suite changes,
// since the examples name distribution images this machine cannot fetch.
var imageLine = regexp.MustCompile(`(?m)^(\s*image:\s*)virtlet\.cloud/\S+\s*$`)

var _ = Describe("Virtlet's example VM pods, applied as they are but for their image [Slow]",
	// ContinueOnFailure: each example is independent of the others.
	Label("Slow", "Examples"), Ordered, ContinueOnFailure, func() {
		var ns string
		examples := []vmExample{
			{"cirros-vm.yaml", "cirros-vm", "a CirrOS VM with SSH keys, a 1 GiB root disk and 160 MiB of RAM", func(ctx context.Context, ns string, p corev1.Pod) {
				Expect(metaData(ctx, ns, p.Name)).To(ContainSubstring(exampleKey))
				Expect(diskSectors(ctx, ns, p.Name)).To(ContainElement(int64(1<<30/512)), "a virtio disk of VirtletRootVolumeSize 1Gi")
				Expect(memTotalKiB(ctx, ns, p.Name)).To(BeNumerically("<=", 160<<10))
			}},
			{"cirros-vm-deployment.yaml", "", "a Deployment of CirrOS VMs: a deleted VM is replaced by a new one", func(ctx context.Context, ns string, p corev1.Pod) {
				Expect(client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{})).To(Succeed())
				Eventually(func(g Gomega) {
					pods := runningPods(ctx, ns, "app=cirros", 1)
					g.Expect(pods[0].Name).NotTo(Equal(p.Name))
				}).WithContext(ctx).WithTimeout(podStartTimeout).WithPolling(poll).Should(Succeed())
				waitConsole(ctx, ns, runningPods(ctx, ns, "app=cirros", 1)[0].Name, guestReady)
			}},
			{"ubuntu-vm.yaml", "ubuntu-vm", "its own user-data with a user, the SSH keys in meta-data as Virtlet put them", func(ctx context.Context, ns string, p corev1.Pod) {
				Expect(userData(ctx, ns, p.Name)).To(ContainSubstring("name: testuser"))
				Expect(metaData(ctx, ns, p.Name)).To(ContainSubstring(exampleKey))
			}},
			{"fedora-vm.yaml", "fedora-vm", "a Fedora VM with SSH keys and 256 MiB of RAM", func(ctx context.Context, ns string, p corev1.Pod) {
				Expect(metaData(ctx, ns, p.Name)).To(ContainSubstring(exampleKey))
				Expect(memTotalKiB(ctx, ns, p.Name)).To(And(BeNumerically("<=", 256<<10), BeNumerically(">", 160<<10)))
			}},
			{"ubuntu-vm-9p-volumes.yaml", "ubuntu-vm-9p-volumes", "an emptyDir shared over 9p at its mountPath, owned by uid 1000, its files in the volume on the node", func(ctx context.Context, ns string, p corev1.Pod) {
				Expect(vmExec(ctx, ns, p.Name, "grep ' /data 9p ' /proc/mounts")).NotTo(BeEmpty())
				Expect(strings.TrimSpace(vmExec(ctx, ns, p.Name, "stat -c %u /data"))).To(Equal("1000"))
				vmExec(ctx, ns, p.Name, "echo written-in-the-guest > /data/from-guest && sync")
				onNode := filepath.Join("/var/lib/kubelet/pods", string(p.UID), "volumes/kubernetes.io~empty-dir/data/from-guest")
				Eventually(func() (string, error) {
					b, err := os.ReadFile(onNode)
					return string(b), err
				}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(poll).Should(Equal("written-in-the-guest\n"))
			}},
			{"ubuntu-vm-ssh-keys-secret.yaml", "ubuntu-vm-ssh-keys-secret", "SSH keys from a Secret (VirtletSSHKeySource)", func(ctx context.Context, ns string, p corev1.Pod) {
				Expect(metaData(ctx, ns, p.Name)).To(ContainSubstring(exampleKey))
			}},
			{"ubuntu-vm-userdata-configmap.yaml", "ubuntu-vm-userdata-configmap", "user-data from a ConfigMap key: its write_files and runcmd applied, SSH keys merged", func(ctx context.Context, ns string, p corev1.Pod) {
				Expect(vmExec(ctx, ns, p.Name, "cat /run/userdata-configmap")).To(Equal("user-data from a ConfigMap applied\n"))
				Expect(vmExec(ctx, ns, p.Name, "cat /etc/motd")).To(ContainSubstring("from the ubuntu-vm-userdata ConfigMap"))
				Expect(metaData(ctx, ns, p.Name)).To(ContainSubstring(exampleKey))
			}},
			{"ubuntu-vm-with-libvirt-cpusetting.yaml", "ubuntu-vm-with-libvirt-cpusetting", "the guest's CPU from VirtletLibvirtCPUSetting (Westmere, no AVX)", func(ctx context.Context, ns string, p corev1.Pod) {
				Expect(vmExec(ctx, ns, p.Name, "grep -m1 'model name' /proc/cpuinfo")).To(ContainSubstring("Westmere"))
				Expect(strings.TrimSpace(vmExec(ctx, ns, p.Name, "grep -c -w avx /proc/cpuinfo || true"))).To(Equal("0"))
			}},
		}

		BeforeAll(func(ctx context.Context) {
			ns = testNamespace(ctx, "podvisor-examples-")
			// The operator's step of docs/deploy.md (RBAC) for a namespace
			// whose pods name Secrets: deploy/ grants them per namespace.
			_, err := kubectl(ctx, "-n", ns, "create", "rolebinding", "podvisor-secrets",
				"--clusterrole=podvisor-secrets", "--serviceaccount=kube-system:podvisor")
			Expect(err).NotTo(HaveOccurred())
			// All at once: the VMs boot side by side, as a user's would.
			for _, ex := range examples {
				applyExample(ctx, ns, ex.file)
			}
		})

		for _, ex := range examples {
			It(ex.file+": "+ex.does, func(ctx context.Context) {
				p := examplePod(ctx, ns, ex)
				waitConsole(ctx, ns, p.Name, guestReady)
				ex.check(ctx, ns, p)
			})
		}

		It("leaves nothing of the examples' VMs behind once they are deleted", func(ctx context.Context) {
			rs, done := criClient()
			defer done()
			list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			Expect(err).NotTo(HaveOccurred())
			var fs []vmFootprint
			for _, p := range list.Items {
				fs = append(fs, footprint(ctx, rs, string(p.UID)))
			}
			_, err = kubectl(ctx, "-n", ns, "delete", "--wait", "--timeout=5m", "deployments,pods", "--all")
			Expect(err).NotTo(HaveOccurred())
			for _, f := range fs {
				Eventually(func() []string { return leftovers(ctx, rs, f) }).WithContext(ctx).
					WithTimeout(cleanupTimeout).WithPolling(poll).Should(BeEmpty())
			}
		})
	})

// applyExample applies deploy/examples/file in ns with its VM image
// replaced by the test guest's.
func applyExample(ctx context.Context, ns, file string) {
	b, err := deploy.Example(file)
	Expect(err).NotTo(HaveOccurred())
	y := imageLine.ReplaceAllString(string(b), "${1}"+cfg.vmImage)
	Expect(y).NotTo(Equal(string(b)), "%s names no virtlet.cloud image", file)
	_, err = kubectlStdin(ctx, y, "-n", ns, "apply", "-f", "-")
	Expect(err).NotTo(HaveOccurred(), "applying %s", file)
}

// examplePod waits for the example's pod (by name, or the Deployment's
// only one) to run.
func examplePod(ctx context.Context, ns string, ex vmExample) corev1.Pod {
	if ex.pod == "" {
		return runningPods(ctx, ns, "app=cirros", 1)[0]
	}
	var p *corev1.Pod
	Eventually(func(g Gomega) {
		var err error
		p, err = client.CoreV1().Pods(ns).Get(ctx, ex.pod, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), "pod %s: %s", p.Name, describe(*p))
	}).WithContext(ctx).WithTimeout(podStartTimeout).WithPolling(poll).Should(Succeed())
	return *p
}

// userData is the user-data on the VM's cloud-init drive, as the guest
// reads it (the test guest keeps the drive mounted at /mnt/cidata).
func userData(ctx context.Context, ns, pod string) string {
	return vmExec(ctx, ns, pod, "cat /mnt/cidata/user-data 2>/dev/null || cat /mnt/cidata/openstack/latest/user_data")
}

// metaData is the meta-data on the VM's cloud-init drive, where the SSH
// keys of VirtletSSHKeys are (public-keys), as Virtlet put them.
func metaData(ctx context.Context, ns, pod string) string {
	return vmExec(ctx, ns, pod, "cat /mnt/cidata/meta-data 2>/dev/null || cat /mnt/cidata/openstack/latest/meta_data.json")
}

// memTotalKiB is the guest's MemTotal.
func memTotalKiB(ctx context.Context, ns, pod string) int64 {
	out := vmExec(ctx, ns, pod, "sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo")
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	Expect(err).NotTo(HaveOccurred(), "MemTotal of %s: %q", pod, out)
	return n
}

// diskSectors lists the sizes of the guest's virtio disks in 512-byte sectors.
func diskSectors(ctx context.Context, ns, pod string) []int64 {
	var out []int64
	for _, f := range strings.Fields(vmExec(ctx, ns, pod, "cat /sys/block/vd*/size")) {
		n, err := strconv.ParseInt(f, 10, 64)
		Expect(err).NotTo(HaveOccurred(), "a disk size of %s: %q", pod, f)
		out = append(out, n)
	}
	return out
}
