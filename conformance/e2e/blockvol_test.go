//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// localBlockPV makes a loop device over a sparse file of size bytes (ext4
// on it when mkfs) and a local PersistentVolume of volumeMode Block on it,
// of storage class sc, on the node: what an operator's local-storage
// class gives. All removed at the end.
func localBlockPV(ctx context.Context, name, sc string, size int64, mkfs bool) {
	f := filepath.Join(GinkgoT().TempDir(), name+".img")
	Expect(os.WriteFile(f, nil, 0o600)).To(Succeed())
	Expect(os.Truncate(f, size)).To(Succeed())
	if mkfs {
		out, err := exec.Command("mkfs.ext4", "-q", "-F", f).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "mkfs.ext4: %s", out)
	}
	out, err := exec.Command("losetup", "--find", "--show", f).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "losetup: %s", out)
	dev := strings.TrimSpace(string(out))
	DeferCleanup(func() {
		out, err := exec.Command("losetup", "--detach", dev).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "losetup --detach %s: %s", dev, out)
	})
	_, err = client.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(size, resource.BinarySI)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			VolumeMode:                    ptr.To(corev1.PersistentVolumeBlock),
			StorageClassName:              sc,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dev}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{cfg.node}}},
			}}}},
		},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func(ctx context.Context) {
		err := client.CoreV1().PersistentVolumes().Delete(ctx, name, metav1.DeleteOptions{})
		if !apierrors.IsNotFound(err) {
			Expect(err).NotTo(HaveOccurred())
		}
		Eventually(func() bool {
			_, err := client.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		}).WithContext(ctx).WithTimeout(cleanupTimeout).WithPolling(poll).Should(BeTrue(), "PV %s never went away", name)
	})
}

// vmExec runs a shell command in a VM pod (kubectl exec, through the
// guest agent) and returns its output.
func vmExec(ctx context.Context, ns, pod, script string) string {
	var out string
	Eventually(func() error {
		var err error
		out, err = kubectl(ctx, "-n", ns, "exec", pod, "--", "sh", "-c", script)
		return err
	}).WithContext(ctx).WithTimeout(2*time.Minute).WithPolling(poll).Should(Succeed(), "exec %q in %s", script, pod)
	return out
}

var _ = Describe("podvisor block volumes on a one-node Kubernetes [Disruptive] [Slow]",
	Label("Disruptive", "Slow", "BlockVolumes"), Ordered, func() {
		const (
			sts  = "vm-persistent"
			sc   = "podvisor-e2e-local-block"
			mark = "E2E-PERSISTENT"
		)
		var ns string

		BeforeAll(func(ctx context.Context) {
			n, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "podvisor-e2e-block-"},
			}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			ns = n.Name
			_, err = client.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
				ObjectMeta:        metav1.ObjectMeta{Name: sc},
				Provisioner:       "kubernetes.io/no-provisioner",
				VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
			}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func(ctx context.Context) {
				Expect(client.StorageV1().StorageClasses().Delete(ctx, sc, metav1.DeleteOptions{})).To(Succeed())
			})
			// Cleanups run last-in first-out: the namespace (pods, PVCs)
			// goes before the PVs and their loop devices.
			localBlockPV(ctx, ns+"-root", sc, 128<<20, false)
			localBlockPV(ctx, ns+"-data", sc, 32<<20, true)
			DeferCleanup(func(ctx context.Context) {
				Expect(client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})).To(Succeed())
				Eventually(func() bool {
					_, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
					return apierrors.IsNotFound(err)
				}).WithContext(ctx).WithTimeout(cleanupTimeout).WithPolling(poll).Should(BeTrue(), "namespace %s never went away", ns)
			})
			Eventually(func() error {
				_, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
				return err
			}).WithContext(ctx).WithTimeout(2 * time.Minute).WithPolling(poll).Should(Succeed())
		})

		claim := func(name string, size string) corev1.PersistentVolumeClaim {
			return corev1.PersistentVolumeClaim{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					VolumeMode:       ptr.To(corev1.PersistentVolumeBlock),
					StorageClassName: ptr.To(sc),
					Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
				},
			}
		}

		It("keeps a StatefulSet VM's persistent root (devicePath /) across pod deletion, and links a block volume at its devicePath for the user-data's mount", func(ctx context.Context) {
			c := vmContainer()
			c.VolumeDevices = []corev1.VolumeDevice{{Name: "root", DevicePath: "/"}, {Name: "data", DevicePath: "/dev/testpvc"}}
			labels := map[string]string{"app": sts}
			_, err := client.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{
				ObjectMeta: metav1.ObjectMeta{Name: sts},
				Spec: appsv1.StatefulSetSpec{
					Replicas:    ptr.To[int32](1),
					ServiceName: sts,
					Selector:    &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
							"kubernetes.io/target-runtime": "virtlet.cloud",
							"VirtletDiskDriver":            "virtio",
							// deploy/examples/ubuntu-vm-statefulset-block.yaml's mount.
							"VirtletCloudInitUserData": "mounts:\n- [\"/dev/testpvc\", \"/mnt\"]\n",
						}},
						Spec: corev1.PodSpec{Containers: []corev1.Container{c}, TerminationGracePeriodSeconds: ptr.To[int64](30)},
					},
					VolumeClaimTemplates: []corev1.PersistentVolumeClaim{claim("root", "128Mi"), claim("data", "32Mi")},
				},
			}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())

			pods := runningPods(ctx, ns, "app="+sts, 1)
			first := pods[0]
			waitConsole(ctx, ns, first.Name, guestReady, "podvisor: linked /dev/testpvc to /dev/vdb", "cloud-config: mounted /dev/testpvc on /mnt")
			token := fmt.Sprintf("%s-%d", mark, time.Now().UnixNano())
			By("the first pod writes on its root disk and in a file on the block volume mounted at /mnt")
			// The test guest's root file system is its initramfs: it
			// writes on its root disk itself, in the last sector.
			vmExec(ctx, ns, first.Name, "s=$(($(cat /sys/block/vda/size)-1)) && echo "+token+" | dd of=/dev/vda bs=512 seek=$s conv=fsync 2>/dev/null && echo "+token+" >/mnt/data.txt && sync")

			By("deleting pod " + first.Name)
			Expect(client.CoreV1().Pods(ns).Delete(ctx, first.Name, metav1.DeleteOptions{})).To(Succeed())
			Eventually(func(g Gomega) {
				p, err := client.CoreV1().Pods(ns).Get(ctx, first.Name, metav1.GetOptions{})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(p.UID).NotTo(Equal(first.UID), "the StatefulSet has not made the pod again")
			}).WithContext(ctx).WithTimeout(cleanupTimeout).WithPolling(poll).Should(Succeed())
			second := runningPods(ctx, ns, "app="+sts, 1)[0]
			waitConsole(ctx, ns, second.Name, guestReady, "cloud-config: mounted /dev/testpvc on /mnt")
			By("the new pod reads what the first left")
			got := vmExec(ctx, ns, second.Name, "s=$(($(cat /sys/block/vda/size)-1)) && dd if=/dev/vda bs=512 skip=$s count=1 2>/dev/null | head -n1 && cat /mnt/data.txt")
			Expect(strings.Fields(got)).To(Equal([]string{token, token}))
		})
	})
