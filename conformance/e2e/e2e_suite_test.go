//go:build e2e

package e2e

import (
	"os"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// env is what ci/e2e.sh tells the suite about the node it started.
type env struct {
	kubeconfig     string // admin kubeconfig
	kubectl        string // kubectl binary
	podvisorctl    string // bin/podvisorctl
	node           string // node name
	vmImage        string // virtlet.cloud/... image of the test guest
	vmImageURL     string // where the test guest is served, for a VirtletImageMapping
	containerImage string // busybox image imported into containerd
	podvisorSocket string // podvisor's own CRI socket (behind the proxy)
	stateDir       string // podvisor's --state-dir
}

var (
	cfg    env
	client kubernetes.Interface
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "podvisor e2e")
}

var _ = BeforeSuite(func() {
	get := func(name string) string {
		v := os.Getenv(name)
		Expect(v).NotTo(BeEmpty(), "%s is not set: run the suite through ci/e2e.sh (make e2e), which starts the cluster and sets it", name)
		return v
	}
	cfg = env{
		kubeconfig:     get("KUBECONFIG"),
		kubectl:        get("PODVISOR_E2E_KUBECTL"),
		podvisorctl:    get("PODVISOR_E2E_PODVISORCTL"),
		node:           get("PODVISOR_E2E_NODE"),
		vmImage:        get("PODVISOR_E2E_VM_IMAGE"),
		vmImageURL:     get("PODVISOR_E2E_VM_IMAGE_URL"),
		containerImage: get("PODVISOR_E2E_CONTAINER_IMAGE"),
		podvisorSocket: get("PODVISOR_E2E_PODVISOR_SOCKET"),
		stateDir:       get("PODVISOR_E2E_STATE_DIR"),
	}
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	Expect(err).NotTo(HaveOccurred(), "loading %s", cfg.kubeconfig)
	client, err = kubernetes.NewForConfig(rc)
	Expect(err).NotTo(HaveOccurred())
})
