//go:build e2e

package e2e

import (
	"context"
	"os"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ci/e2e.sh pushes the test guest as a KubeVirt containerDisk (one layer,
// the disk under /disk/) to a docker-registry on the node's loopback and
// names it here, with the manifest digest skopeo read back from the registry.
var _ = Describe("a KubeVirt containerDisk from a registry [Slow]", Label("Slow"), func() {
	It("boots as a VM pod selected by RuntimeClass podvisor alone, its image reported by the name and digest pulled", func(ctx context.Context) {
		ref, digest := os.Getenv("PODVISOR_E2E_CONTAINERDISK"), os.Getenv("PODVISOR_E2E_CONTAINERDISK_DIGEST")
		Expect(ref).NotTo(BeEmpty(), "PODVISOR_E2E_CONTAINERDISK is not set: run the suite through ci/e2e.sh")
		Expect(digest).To(HavePrefix("sha256:"), "PODVISOR_E2E_CONTAINERDISK_DIGEST")
		ns := testNamespace(ctx, "podvisor-cd-")
		const name = "vm-from-containerdisk"
		p := runtimeClassVM(ctx, ns, name, ref)
		st := p.Status.ContainerStatuses[0]
		GinkgoWriter.Printf("kubelet reports image %q, imageID %q\n", st.Image, st.ImageID)

		By("asking podvisor for the image by the name kubelet pulled")
		conn, done := criConn()
		defer done()
		img, err := runtimeapi.NewImageServiceClient(conn).ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		Expect(err).NotTo(HaveOccurred())
		Expect(img.GetImage()).NotTo(BeNil(), "podvisor has no image %s", ref)
		Expect(img.GetImage().GetRepoTags()).To(ContainElement(ref))
		repo := ref[:strings.LastIndex(ref, ":")]
		Expect(img.GetImage().GetRepoDigests()).To(ContainElement(repo + "@" + digest))

		By("deleting it: its VM goes away")
		rs := runtimeapi.NewRuntimeServiceClient(conn)
		f := footprint(ctx, rs, string(p.UID))
		Expect(f.containers).To(HaveLen(1))
		Expect(client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{})).To(Succeed())
		Eventually(func() []string { return leftovers(ctx, rs, f) }).WithContext(ctx).
			WithTimeout(cleanupTimeout).WithPolling(poll).Should(BeEmpty())
	})
})
