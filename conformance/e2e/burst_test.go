//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/ptr"
)

// P3 of docs/bench/start.md: a burst of VM pods created at once by one
// Deployment against the same pods created one at a time. It runs only when
// PODVISOR_BENCH_BURST names the burst sizes ("10,20"; ci/bench-start.sh
// sets it) and writes its Markdown section to PODVISOR_BENCH_OUT.
var _ = Describe("a burst of VM pods [Bench]", Label("Bench"), Ordered, func() {
	var (
		ns     string
		sizes  []int
		single = 5
		report burstReport
	)

	BeforeAll(func(ctx context.Context) {
		spec := os.Getenv("PODVISOR_BENCH_BURST")
		if spec == "" {
			Skip("PODVISOR_BENCH_BURST is not set (make bench sets it)")
		}
		for _, f := range strings.Split(spec, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			Expect(err).NotTo(HaveOccurred(), "PODVISOR_BENCH_BURST=%q: want burst sizes such as 10,20", spec)
			sizes = append(sizes, n)
		}
		Expect(os.Getenv("PODVISOR_BENCH_OUT")).NotTo(BeEmpty(), "PODVISOR_BENCH_OUT names the Markdown file to write")
		ns = testNamespace(ctx, "podvisor-burst-")
		report.load0 = loadAverage()
	})

	It("starts VM pods one at a time (the baseline)", func(ctx context.Context) {
		before := stepSums(ctx)
		for i := 0; i < single; i++ {
			name := fmt.Sprintf("single-%d", i)
			labels := map[string]string{"app": name}
			rec := watchPods(ctx, ns, "app="+name)
			_, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
				ObjectMeta: burstMeta(name, labels),
				Spec:       burstPodSpec(),
			}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			created := time.Now()
			runningPods(ctx, ns, "app="+name, 1)
			report.single = append(report.single, rec.timings(ctx, ns, created, 1)...)
			deleteAndWait(ctx, ns, "app="+name)
		}
		report.singleSteps = stepSums(ctx).since(before)
	})

	It("starts bursts of VM pods from one Deployment", func(ctx context.Context) {
		for _, n := range sizes {
			before := stepSums(ctx)
			name := fmt.Sprintf("burst-%d", n)
			labels := map[string]string{"app": name}
			rec := watchPods(ctx, ns, "app="+name)
			_, err := client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: appsv1.DeploymentSpec{
					Replicas: ptr.To(int32(n)),
					Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{ObjectMeta: burstMeta("", labels), Spec: burstPodSpec()},
				},
			}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			created := time.Now()
			// n VMs boot at once on TCG: allow each its share of the cores.
			Eventually(func(g Gomega) {
				g.Expect(rec.running()).To(BeNumerically(">=", n))
			}).WithContext(ctx).WithTimeout(podStartTimeout + time.Duration(n)*30*time.Second).WithPolling(poll).Should(Succeed())
			report.bursts = append(report.bursts, burstRun{n: n, pods: rec.timings(ctx, ns, created, n), steps: stepSums(ctx).since(before)})
			// Written after each burst: a later, larger one that fails keeps these.
			report.load1 = loadAverage()
			Expect(os.WriteFile(os.Getenv("PODVISOR_BENCH_OUT"), []byte(report.markdown()), 0o644)).To(Succeed())
			Expect(client.AppsV1().Deployments(ns).Delete(ctx, name, metav1.DeleteOptions{})).To(Succeed())
			deleteAndWait(ctx, ns, "app="+name)
		}
		report.load1 = loadAverage()
		Expect(os.WriteFile(os.Getenv("PODVISOR_BENCH_OUT"), []byte(report.markdown()), 0o644)).To(Succeed())
	})
})

// burstMeta labels a pod and routes it to podvisor as a Virtlet manifest
// does (the annotation the e2e Deployment uses).
func burstMeta(name string, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Labels: labels,
		Annotations: map[string]string{"kubernetes.io/target-runtime": "virtlet.cloud"}}
}

// burstPodSpec is the pod every run starts: the e2e VM.
func burstPodSpec() corev1.PodSpec {
	return corev1.PodSpec{
		Containers:                    []corev1.Container{vmContainer()},
		TerminationGracePeriodSeconds: ptr.To[int64](5),
	}
}

// podTiming is one pod's way from creation to a running container and a
// guest that printed its ready marker.
type podTiming struct {
	name           string
	running, ready time.Duration
}

// podRecorder remembers when each pod of a selector was first seen Running,
// from a watch (not a poll) so that the times are the API server's news as
// it arrives.
type podRecorder struct {
	mu      sync.Mutex
	firstUp map[string]time.Time
}

func watchPods(ctx context.Context, ns, selector string) *podRecorder {
	// A plain watch ends at the API server's first hiccup (a young cluster's
	// watch cache answers "too large resource version"); the RetryWatcher
	// resumes from the last version it saw.
	list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	Expect(err).NotTo(HaveOccurred())
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return client.CoreV1().Pods(ns).Watch(ctx, o)
		},
	})
	Expect(err).NotTo(HaveOccurred())
	r := &podRecorder{firstUp: map[string]time.Time{}}
	go func() {
		defer GinkgoRecover()
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted || p.Status.Phase != corev1.PodRunning {
				continue
			}
			r.mu.Lock()
			if _, seen := r.firstUp[p.Name]; !seen {
				r.firstUp[p.Name] = time.Now()
			}
			r.mu.Unlock()
		}
	}()
	DeferCleanup(w.Stop)
	return r
}

func (r *podRecorder) running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.firstUp)
}

// timings waits for each pod's guest ready marker and reads its time from
// the CRI log's own timestamps (kubectl logs --timestamps).
func (r *podRecorder) timings(ctx context.Context, ns string, created time.Time, n int) []podTiming {
	// The watch's news may arrive after a poll of the API saw the pods Running.
	Eventually(r.running).WithContext(ctx).WithTimeout(time.Minute).WithPolling(time.Second).Should(BeNumerically(">=", n),
		"the watch saw fewer pods Running than the API")
	r.mu.Lock()
	up := make(map[string]time.Time, len(r.firstUp))
	for k, v := range r.firstUp {
		up[k] = v
	}
	r.mu.Unlock()
	Expect(up).To(HaveLen(n))
	var out []podTiming
	for name, t := range up {
		var ready time.Time
		Eventually(func(g Gomega) {
			log, err := kubectl(ctx, "-n", ns, "logs", "--timestamps", name)
			g.Expect(err).NotTo(HaveOccurred())
			ready = markerTime(log, guestReady)
			g.Expect(ready.IsZero()).To(BeFalse(), "no ready marker yet on %s's console; its last output:\n%s", name, tail(log, 1500))
		}).WithContext(ctx).WithTimeout(bootTimeout + time.Duration(n)*20*time.Second).WithPolling(poll).Should(Succeed())
		out = append(out, podTiming{name: name, running: t.Sub(created), ready: ready.Sub(created)})
	}
	return out
}

// markerTime is the timestamp of the first log line holding marker.
func markerTime(log, marker string) time.Time {
	for _, l := range strings.Split(log, "\n") {
		ts, text, ok := strings.Cut(l, " ")
		if !ok || !strings.Contains(text, marker) {
			continue
		}
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			return t
		}
	}
	return time.Time{}
}

func deleteAndWait(ctx context.Context, ns, selector string) {
	Expect(client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: selector})).To(Succeed())
	Eventually(func(g Gomega) {
		list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(list.Items).To(BeEmpty())
	}).WithContext(ctx).WithTimeout(cleanupTimeout).WithPolling(poll).Should(Succeed())
}

// steps are podvisor's per-step sums and counts of
// podvisor_vm_step_duration_seconds, read from its metrics endpoint.
type steps map[string][2]float64

func stepSums(ctx context.Context) steps {
	url := os.Getenv("PODVISOR_E2E_METRICS_URL")
	Expect(url).NotTo(BeEmpty(), "PODVISOR_E2E_METRICS_URL (ci/e2e.sh sets it)")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	Expect(err).NotTo(HaveOccurred())
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred(), "reading podvisor's metrics at %s", url)
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	Expect(err).NotTo(HaveOccurred(), "parsing %s", url)
	out := steps{}
	if f, ok := fams["podvisor_vm_step_duration_seconds"]; ok {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "step" {
					h := m.GetHistogram()
					out[l.GetValue()] = [2]float64{h.GetSampleSum(), float64(h.GetSampleCount())}
				}
			}
		}
	}
	return out
}

// since is the mean of each step over what happened after before.
func (s steps) since(before steps) map[string]time.Duration {
	means := map[string]time.Duration{}
	for k, v := range s {
		sum, n := v[0]-before[k][0], v[1]-before[k][1]
		if n > 0 {
			means[k] = time.Duration(sum / n * float64(time.Second))
		}
	}
	return means
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

type burstRun struct {
	n     int
	pods  []podTiming
	steps map[string]time.Duration
}

type burstReport struct {
	load0, load1 string
	single       []podTiming
	singleSteps  map[string]time.Duration
	bursts       []burstRun
}

// percentile is the nearest-rank percentile of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.999999) - 1
	if i < 0 {
		i = 0
	}
	return s[min(i, len(s)-1)]
}

func split(ps []podTiming) (running, ready []time.Duration) {
	for _, p := range ps {
		running, ready = append(running, p.running), append(ready, p.ready)
	}
	return running, ready
}

var benchSteps = []string{"network", "assemble", "overlay", "cloudinit", "define", "start"}

func (r burstReport) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## P3 burst: VM pods from one Deployment through kubelet\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (`ci/bench-start.sh` → `ci/e2e.sh` with `PODVISOR_BENCH_BURST`, conformance/e2e `a burst of VM pods`) on %s, on the e2e node (kubelet, criproxy, podvisor from deploy/). Load average %s at the start, %s at the end. Each pod is the e2e VM (test guest, 256 MiB, 1 vCPU); times from the create call: Running is the first watch event with phase Running, guest ready is the CRI log timestamp of the guest's ready marker.\n\n", time.Now().UTC().Format("2006-01-02 15:04Z"), r.load0, r.load1)
	b.WriteString("| run | pods | →Running p50 | →Running p95 | →guest ready p50 | →guest ready p95 |\n|---|---|---|---|---|---|\n")
	row := func(label string, ps []podTiming) {
		run, ready := split(ps)
		fmt.Fprintf(&b, "| %s | %d | %.1f s | %.1f s | %.1f s | %.1f s |\n", label, len(ps),
			percentile(run, .5).Seconds(), percentile(run, .95).Seconds(), percentile(ready, .5).Seconds(), percentile(ready, .95).Seconds())
	}
	row("one at a time", r.single)
	for _, br := range r.bursts {
		row(fmt.Sprintf("burst of %d", br.n), br.pods)
	}
	b.WriteString("\npodvisor's steps, mean per pod in each run (`podvisor_vm_step_duration_seconds`): a step that waited for another pod's lock or download would grow with the burst while the CPU-bound ones (`define`, `start`: libvirt and QEMU on two TCG cores) grow with the load.\n\n| step | one at a time |")
	for _, br := range r.bursts {
		fmt.Fprintf(&b, " burst of %d |", br.n)
	}
	b.WriteString("\n|---|---|")
	for range r.bursts {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, s := range benchSteps {
		fmt.Fprintf(&b, "| %s | %.3f s |", s, r.singleSteps[s].Seconds())
		for _, br := range r.bursts {
			fmt.Fprintf(&b, " %.3f s |", br.steps[s].Seconds())
		}
		b.WriteString("\n")
	}
	b.WriteString("\nRaw numbers (seconds, →Running / →guest ready):\n\n")
	raw := func(label string, ps []podTiming) {
		sort.Slice(ps, func(i, j int) bool { return ps[i].ready < ps[j].ready })
		var parts []string
		for _, p := range ps {
			parts = append(parts, fmt.Sprintf("%.1f/%.1f", p.running.Seconds(), p.ready.Seconds()))
		}
		fmt.Fprintf(&b, "- %s: %s\n", label, strings.Join(parts, ", "))
	}
	raw("one at a time", r.single)
	for _, br := range r.bursts {
		raw(fmt.Sprintf("burst of %d", br.n), br.pods)
	}
	return b.String()
}
