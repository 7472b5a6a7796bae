//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podvisor/podvisor/internal/syncbuf"
	"github.com/podvisor/podvisor/runtime/domain"
)

// The podvisor DaemonSet as deploy/daemonset.yaml names it.
const (
	dsNamespace = "kube-system"
	dsName      = "podvisor"
	dsSelector  = "app.kubernetes.io/name=podvisor,app.kubernetes.io/component=runtime"
	rolloutWait = 10 * time.Minute
)

// vmState is what must survive a restart of the DaemonSet: the VM's QEMU
// process, its container and kubelet's restart count.
type vmState struct {
	pod         string
	ip          string
	containerID string
	restarts    int32
	qemuPID     int
}

// qemuPID finds the QEMU process of a podvisor container on this machine
// (the suite shares the node's PID namespace): libvirt names the guest
// after the domain.
func qemuPID(containerID string) (int, error) {
	_, id, _ := strings.Cut(containerID, "podvisor__")
	want := "guest=" + domain.NameFor(id) + ","
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		return 0, err
	}
	var found []int
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "qemu-system") {
			continue
		}
		for _, arg := range strings.Split(string(b), "\x00") {
			if strings.HasPrefix(arg, want) {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				found = append(found, pid)
			}
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("%d QEMU processes for domain %s (%v)", len(found), domain.NameFor(id), found)
	}
	return found[0], nil
}

// vmStates records the VM pods' state.
func vmStates(ctx context.Context, ns string, pods []corev1.Pod) []vmState {
	var out []vmState
	for _, p := range pods {
		cur, err := client.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(cur.Status.ContainerStatuses).To(HaveLen(1))
		cs := cur.Status.ContainerStatuses[0]
		pid, err := qemuPID(cs.ContainerID)
		Expect(err).NotTo(HaveOccurred(), "pod %s", p.Name)
		out = append(out, vmState{pod: p.Name, ip: cur.Status.PodIP, containerID: cs.ContainerID, restarts: cs.RestartCount, qemuPID: pid})
	}
	return out
}

// followLogs runs `kubectl logs -f` of a pod until the spec ends.
func followLogs(ns, pod string) *syncbuf.Buffer {
	ctx, cancel := context.WithCancel(context.Background())
	var out syncbuf.Buffer
	cmd := exec.CommandContext(ctx, cfg.kubectl, "--kubeconfig", cfg.kubeconfig, "-n", ns, "logs", "-f", pod)
	cmd.Stdout, cmd.Stderr = &out, &out
	Expect(cmd.Start()).To(Succeed())
	// One cleanup, in this order: cleanups run last-in first-out, and a
	// Wait before the cancel would wait for ever.
	DeferCleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	return &out
}

// typeOnConsole types a line into the VM's serial console (kubectl attach)
// until want appears in seen. Each try is a new attach: right after a
// restart of podvisor the console may not be connected yet, and kubectl
// attach then exits.
func typeOnConsole(ctx context.Context, ns, pod, line, want string, seen *syncbuf.Buffer) {
	var out syncbuf.Buffer
	try := func(g Gomega) {
		actx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(actx, cfg.kubectl, "--kubeconfig", cfg.kubeconfig, "-n", ns, "attach", "-i", pod, "-c", "vm")
		stdin, err := cmd.StdinPipe()
		g.Expect(err).NotTo(HaveOccurred())
		cmd.Stdout, cmd.Stderr = &out, &out
		g.Expect(cmd.Start()).To(Succeed())
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		for i := 0; i < 5 && !strings.Contains(seen.String(), want); i++ {
			if _, err := fmt.Fprintln(stdin, line); err != nil {
				break
			}
			time.Sleep(3 * time.Second)
		}
		_, _ = stdin.Write([]byte("\x1d"))
		g.Expect(seen.String()).To(ContainSubstring(want))
	}
	Eventually(try).WithContext(ctx).WithTimeout(3*time.Minute).WithPolling(2*time.Second).Should(Succeed(),
		"%q never reached the followed log of %s (kubectl logs -f started before the event; its last output:\n%s)\nattach said:\n%s", want, pod, tail(seen.String(), 600), out.String())
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// daemonSetReady waits until the DaemonSet's rollout is complete and its
// pod's containers are all ready.
func daemonSetReady(ctx context.Context) corev1.Pod {
	_, err := kubectl(ctx, "-n", dsNamespace, "rollout", "status", "ds/"+dsName, "--timeout", rolloutWait.String())
	Expect(err).NotTo(HaveOccurred())
	return runningPods(ctx, dsNamespace, dsSelector, 1)[0]
}

// libvirtContainer is the DaemonSet pod's libvirt container status.
func libvirtContainer(p corev1.Pod) corev1.ContainerStatus {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == "libvirt" {
			return cs
		}
	}
	Fail("the podvisor pod has no libvirt container")
	return corev1.ContainerStatus{}
}

// checkSurvived: after event, every VM of before runs in the same QEMU
// process and container, kubelet restarted nothing, its pod IP answers and
// its followed log shows a line typed on the console now (the n-th).
func checkSurvived(ctx context.Context, ns, event string, before []vmState, logs map[string]*syncbuf.Buffer, n int) {
	By(event + ": the same QEMU processes, containers and restart counts")
	Eventually(func(g Gomega) {
		for _, b := range before {
			cur, err := client.CoreV1().Pods(ns).Get(ctx, b.pod, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cur.Status.ContainerStatuses).To(HaveLen(1))
			cs := cur.Status.ContainerStatuses[0]
			g.Expect(cs.ContainerID).To(Equal(b.containerID), "pod %s", b.pod)
			g.Expect(cs.RestartCount).To(Equal(b.restarts), "pod %s: kubelet restarted its VM", b.pod)
			g.Expect(cs.State.Running).NotTo(BeNil(), "pod %s: %s", b.pod, describe(*cur))
			g.Expect(cs.Ready).To(BeTrue(), "pod %s", b.pod)
		}
	}).WithContext(ctx).WithTimeout(2 * time.Minute).WithPolling(poll).Should(Succeed())
	for _, b := range before {
		pid, err := qemuPID(b.containerID)
		Expect(err).NotTo(HaveOccurred(), "pod %s after %s", b.pod, event)
		Expect(pid).To(Equal(b.qemuPID), "pod %s: QEMU was restarted by %s", b.pod, event)
		By(event + ": pod " + b.pod + " answers on " + b.ip)
		Expect(askHostname(ctx, b.ip)).To(Equal(b.pod))
		By(event + ": kubectl logs -f of " + b.pod + " shows a line typed now")
		typeOnConsole(ctx, ns, b.pod, fmt.Sprintf("echo $((6*7))-after-%d-$(hostname)", n), fmt.Sprintf("42-after-%d-%s", n, b.pod), logs[b.pod])
	}
}

// upgradeSpecs registers the [Disruptive] specs of an upgrade or restart of
// the podvisor DaemonSet under two running VM pods: after each event the
// same QEMU processes run, the pod IPs answer, kubelet restarted nothing,
// and a `kubectl logs -f` started before the event shows console lines
// typed after it.
func upgradeSpecs(namespace func() string, vms func() []corev1.Pod) {
	check := func(ctx context.Context, event string, before []vmState, logs map[string]*syncbuf.Buffer, n int) {
		checkSurvived(ctx, namespace(), event, before, logs, n)
	}
	var (
		before []vmState
		logs   map[string]*syncbuf.Buffer
	)
	// Each event's spec records the VMs and follows their logs first.
	prepare := func(ctx context.Context) {
		Expect(vms()).To(HaveLen(2), "the Deployment spec did not get its pods running")
		before = vmStates(ctx, namespace(), vms())
		logs = map[string]*syncbuf.Buffer{}
		for _, b := range before {
			logs[b.pod] = followLogs(namespace(), b.pod)
		}
		GinkgoWriter.Printf("before: %+v\n", before)
	}

	It("keeps the VMs through kubectl rollout restart of the podvisor DaemonSet [Disruptive]", Label("Disruptive"), func(ctx context.Context) {
		prepare(ctx)
		old := runningPods(ctx, dsNamespace, dsSelector, 1)[0]
		Expect(kubectl(ctx, "-n", dsNamespace, "rollout", "restart", "ds/"+dsName)).Error().NotTo(HaveOccurred())
		p := daemonSetReady(ctx)
		Expect(p.UID).NotTo(Equal(old.UID), "the rollout did not replace the podvisor pod")
		check(ctx, "rollout restart", before, logs, 1)
	})

	It("keeps the VMs through a change of the DaemonSet's image tag [Disruptive]", Label("Disruptive"), func(ctx context.Context) {
		prepare(ctx)
		next := os.Getenv("PODVISOR_E2E_NEXT_IMAGE")
		Expect(next).NotTo(BeEmpty(), "PODVISOR_E2E_NEXT_IMAGE (the node image under a new tag) is not set: run the suite through ci/e2e.sh")
		args := []string{"-n", dsNamespace, "set", "image", "ds/" + dsName}
		for _, c := range []string{"prepare-node", "podvisor", "libvirt", "vms"} {
			args = append(args, c+"="+next)
		}
		Expect(kubectl(ctx, args...)).Error().NotTo(HaveOccurred())
		p := daemonSetReady(ctx)
		// The status may name the image by its other tag (one image ID).
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			Expect(c.Image).To(Equal(next), "container %s of the new pod %s", c.Name, p.Name)
		}
		check(ctx, "image change to "+next, before, logs, 2)
	})

	It("keeps the VMs when the libvirt container is killed [Disruptive]", Label("Disruptive"), func(ctx context.Context) {
		prepare(ctx)
		p := runningPods(ctx, dsNamespace, dsSelector, 1)[0]
		lv := libvirtContainer(p)
		_, id, ok := strings.Cut(lv.ContainerID, "://")
		Expect(ok).To(BeTrue(), "libvirt container ID %q", lv.ContainerID)
		ctr := os.Getenv("PODVISOR_E2E_CTR")
		sock := os.Getenv("PODVISOR_E2E_CONTAINERD_SOCKET")
		Expect(ctr).NotTo(BeEmpty(), "PODVISOR_E2E_CTR is not set: run the suite through ci/e2e.sh")
		out, err := exec.CommandContext(ctx, ctr, "-a", sock, "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "ctr tasks kill: %s", out)
		Eventually(func(g Gomega) {
			cur, err := client.CoreV1().Pods(dsNamespace).Get(ctx, p.Name, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			now := libvirtContainer(*cur)
			g.Expect(now.RestartCount).To(BeNumerically(">", lv.RestartCount), "kubelet did not restart the killed libvirt container")
			g.Expect(now.Ready).To(BeTrue(), "the restarted libvirt container is not ready")
		}).WithContext(ctx).WithTimeout(5 * time.Minute).WithPolling(poll).Should(Succeed())
		check(ctx, "libvirt container killed", before, logs, 3)
	})
}
