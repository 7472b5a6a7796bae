//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"

	"github.com/podvisor/podvisor/runtime/domain"
)

// Generous deadlines: VMs boot under TCG on 2 shared cores.
const (
	podStartTimeout = 6 * time.Minute
	bootTimeout     = 5 * time.Minute
	cleanupTimeout  = 4 * time.Minute
	poll            = 2 * time.Second
)

// guestReady is the test guest's console line once it is up.
const guestReady = "PODVISOR-GUEST: ready"

// kubectl runs kubectl with the suite's kubeconfig and returns its stdout.
func kubectl(ctx context.Context, args ...string) (string, error) {
	return kubectlStdin(ctx, "", args...)
}

// kubectlStdin runs kubectl with stdin.
func kubectlStdin(ctx context.Context, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cfg.kubectl, append([]string{"--kubeconfig", cfg.kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// consoleLog is `kubectl logs` of a pod's VM container.
func consoleLog(ctx context.Context, ns, pod string) (string, error) {
	return kubectl(ctx, "-n", ns, "logs", pod)
}

// waitConsole waits until the pod's log (its serial console) contains every want.
func waitConsole(ctx context.Context, ns, pod string, want ...string) string {
	var log string
	Eventually(func(g Gomega) {
		var err error
		log, err = consoleLog(ctx, ns, pod)
		g.Expect(err).NotTo(HaveOccurred())
		for _, w := range want {
			g.Expect(log).To(ContainSubstring(w), "console of %s/%s", ns, pod)
		}
	}).WithContext(ctx).WithTimeout(bootTimeout).WithPolling(poll).Should(Succeed(), func() string {
		return vmDiagnosis(ctx, ns, pod)
	})
	return log
}

// runningPods waits for n Running and Ready pods matching selector.
func runningPods(ctx context.Context, ns, selector string, n int) []corev1.Pod {
	var pods []corev1.Pod
	Eventually(func(g Gomega) {
		list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		g.Expect(err).NotTo(HaveOccurred())
		pods = nil
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil {
				pods = append(pods, p)
			}
		}
		g.Expect(pods).To(HaveLen(n), "pods %s", selector)
		for _, p := range pods {
			g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), "pod %s: %s", p.Name, describe(p))
			g.Expect(p.Status.PodIP).NotTo(BeEmpty(), "pod %s has no IP", p.Name)
		}
	}).WithContext(ctx).WithTimeout(podStartTimeout).WithPolling(poll).Should(Succeed())
	return pods
}

// describe summarises why a pod is not running, for failure messages.
func describe(p corev1.Pod) string {
	var parts []string
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			parts = append(parts, fmt.Sprintf("%s=%s %s", c.Type, c.Status, c.Message))
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			parts = append(parts, fmt.Sprintf("%s waiting: %s %s", cs.Name, w.Reason, w.Message))
		}
		if t := cs.State.Terminated; t != nil {
			parts = append(parts, fmt.Sprintf("%s terminated: %s %s", cs.Name, t.Reason, t.Message))
		}
	}
	return fmt.Sprintf("phase %s; %s", p.Status.Phase, strings.Join(parts, "; "))
}

// askHostname connects to ip:8080, where the test guest answers its hostname.
func askHostname(ctx context.Context, ip string) string {
	var answer string
	Eventually(func(g Gomega) {
		d := net.Dialer{Timeout: 5 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, "8080"))
		g.Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(conn)
		g.Expect(err).NotTo(HaveOccurred())
		answer = strings.TrimSpace(string(b))
		g.Expect(answer).NotTo(BeEmpty())
	}).WithContext(ctx).WithTimeout(2 * time.Minute).WithPolling(poll).Should(Succeed())
	return answer
}

// criClient connects to podvisor's own CRI socket, behind the proxy, to see
// what podvisor still holds.
func criClient() (runtimeapi.RuntimeServiceClient, func()) {
	conn, done := criConn()
	return runtimeapi.NewRuntimeServiceClient(conn), done
}

// criConn is a connection to podvisor's own CRI socket, for both services.
func criConn() (*grpc.ClientConn, func()) {
	conn, err := grpc.NewClient("unix://"+cfg.podvisorSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	Expect(err).NotTo(HaveOccurred(), "connecting to podvisor at %s", cfg.podvisorSocket)
	return conn, func() { conn.Close() }
}

// vmFootprint is what podvisor created for one pod: CRI objects, libvirt
// domains, VM directories and network namespaces.
type vmFootprint struct {
	podUID     string
	sandboxes  []string
	containers []string
}

// footprint asks podvisor for the sandboxes and containers of a pod.
func footprint(ctx context.Context, rs runtimeapi.RuntimeServiceClient, uid string) vmFootprint {
	f := vmFootprint{podUID: uid}
	sel := map[string]string{"io.kubernetes.pod.uid": uid}
	sbs, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: sel}})
	Expect(err).NotTo(HaveOccurred())
	for _, s := range sbs.Items {
		f.sandboxes = append(f.sandboxes, s.Id)
	}
	cs, err := rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{LabelSelector: sel}})
	Expect(err).NotTo(HaveOccurred())
	for _, c := range cs.Containers {
		f.containers = append(f.containers, c.Id)
	}
	return f
}

// leftovers lists what is still there of a footprint; empty means no leak.
func leftovers(ctx context.Context, rs runtimeapi.RuntimeServiceClient, f vmFootprint) []string {
	var left []string
	now := footprint(ctx, rs, f.podUID)
	for _, s := range now.sandboxes {
		left = append(left, "podvisor still lists sandbox "+s)
	}
	for _, c := range now.containers {
		left = append(left, "podvisor still lists container "+c)
	}
	domains, err := exec.CommandContext(ctx, "virsh", "-q", "-c", "qemu:///system", "list", "--all", "--name").Output()
	Expect(err).NotTo(HaveOccurred(), "virsh list")
	for _, c := range f.containers {
		name := domain.NameFor(c)
		for _, d := range strings.Fields(string(domains)) {
			if d == name {
				left = append(left, "libvirt domain "+name)
			}
		}
		if _, err := os.Stat(filepath.Join(cfg.stateDir, "vms", name)); err == nil {
			left = append(left, "VM directory "+filepath.Join(cfg.stateDir, "vms", name))
		}
	}
	for _, s := range f.sandboxes {
		m, _ := filepath.Glob("/run/netns/podvisor-" + s[:12] + "*")
		for _, n := range m {
			left = append(left, "network namespace "+n)
		}
	}
	return left
}

// byName gives ginkgo a readable list of pod names.
func names(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

// testNamespace creates a namespace named from prefix, waits for its
// default ServiceAccount (pods need it) and deletes it when the calling
// container's specs are done, waiting until it is gone so that no VM of
// it outlives the spec.
func testNamespace(ctx context.Context, prefix string) string {
	n, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	ns := n.Name
	Eventually(func() error {
		_, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	}).WithContext(ctx).WithTimeout(2*time.Minute).WithPolling(poll).Should(Succeed(), "namespace %s: its default ServiceAccount", ns)
	ginkgo.DeferCleanup(func(ctx context.Context) {
		Expect(client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})).To(Succeed())
		Eventually(func() bool {
			_, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		}).WithContext(ctx).WithTimeout(cleanupTimeout).WithPolling(poll).Should(BeTrue(), "namespace %s never went away", ns)
	})
	return ns
}

// runtimeClassVM runs pod name in ns with the test VM container of image,
// selected by RuntimeClass podvisor alone (deploy/'s runtimeclass.yaml, no
// annotation), and waits until podvisor runs it, its guest has the pod's
// hostname and its pod IP answers.
func runtimeClassVM(ctx context.Context, ns, name, image string) corev1.Pod {
	vm := vmContainer()
	vm.Image = image
	_, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			RuntimeClassName:              ptr.To(runtimeClass),
			Containers:                    []corev1.Container{vm},
			TerminationGracePeriodSeconds: ptr.To[int64](30),
		},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	p := runningPods(ctx, ns, "app="+name, 1)[0]
	Expect(p.Annotations).To(BeEmpty())
	Expect(p.Status.ContainerStatuses[0].ContainerID).To(ContainSubstring("podvisor__"), "pod %s was not run by podvisor", name)
	waitConsole(ctx, ns, name, "PODVISOR-GUEST: hostname="+name, guestReady)
	Expect(askHostname(ctx, p.Status.PodIP)).To(Equal(name))
	return p
}
