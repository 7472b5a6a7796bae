package processtests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/internal/daemonproc"
)

// proxyEnv is bin/criproxy in front of the real containerd that
// ci/test-proxy.sh started (PODVISOR_CONTAINERD_SOCK, with the busybox
// image BUSYBOX_IMAGE imported) and of bin/podvisor on the simulated
// hypervisor, both of the test's own.
type proxyEnv struct {
	t        *testing.T
	dir, run string
	podvisor *daemonproc.Daemon
	proxy    *daemonproc.Daemon
	busybox  string
}

// downGrace is criproxy's --down-grace here: how long a killed podvisor's
// last answers stand in for it in lists.
const downGrace = 3 * time.Second

func startProxy(t *testing.T) *proxyEnv {
	t.Helper()
	gate(t, "PODVISOR_PROXY_TESTS")
	t.Parallel()
	containerd, busybox := os.Getenv("PODVISOR_CONTAINERD_SOCK"), os.Getenv("BUSYBOX_IMAGE")
	if containerd == "" || busybox == "" {
		t.Fatal("PODVISOR_CONTAINERD_SOCK and BUSYBOX_IMAGE must be set (ci/test-proxy.sh sets them)")
	}
	e := &proxyEnv{t: t, dir: t.TempDir(), busybox: busybox}
	e.run = fmt.Sprintf("%s-%d", strings.ToLower(t.Name()), time.Now().UnixNano()%1e6)
	tr := filepath.Join(e.dir, "translations")
	if err := os.MkdirAll(tr, 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(e.dir, "cirros.img")
	if err := os.WriteFile(img, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("translations:\n- name: cirros\n  url: file://%s\n", img)
	if err := os.WriteFile(filepath.Join(tr, "images.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	psock, xsock := filepath.Join(e.dir, "podvisor.sock"), filepath.Join(e.dir, "proxy.sock")
	e.podvisor = daemonproc.Start(t, daemonproc.Bin(t, "podvisor"), psock, filepath.Join(e.dir, "podvisor.log"),
		"--hypervisor", "sim", "--listen", "unix://"+psock, "--state-dir", filepath.Join(e.dir, "pv-state"),
		"--image-translations-dir", tr, "--metrics-addr=")
	e.proxy = daemonproc.Start(t, daemonproc.Bin(t, "criproxy"), xsock, filepath.Join(e.dir, "criproxy.log"),
		"--listen", "unix://"+xsock, "--primary", "unix://"+containerd, "--runtime", "podvisor=unix://"+psock,
		"--max-backoff", "1s", "--down-grace", downGrace.String(), "--log-level", "debug")
	return e
}

func (e *proxyEnv) ctx() context.Context { return daemonproc.Ctx(e.t) }

// pod runs a sandbox through the proxy and removes it at the end of the
// test (through the proxy too: what a test leaves in the shared
// containerd would meet the next one).
func (e *proxyEnv) pod(name string, annotations map[string]string, handler string) (string, *runtimeapi.PodSandboxConfig) {
	e.t.Helper()
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name + "-" + e.run, Namespace: "default", Uid: "uid-" + name + "-" + e.run},
		LogDirectory: filepath.Join(e.dir, "logs", name),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
		Annotations:  annotations,
	}
	r, err := e.proxy.Runtime.RunPodSandbox(e.ctx(), &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	if err != nil {
		e.t.Fatalf("RunPodSandbox %s (handler %q): %v", name, handler, err)
	}
	id := r.PodSandboxId
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = e.proxy.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
		_, _ = e.proxy.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	})
	return id, cfg
}

func (e *proxyEnv) busyboxConfig() *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "bb"}, Image: &runtimeapi.ImageSpec{Image: e.busybox},
		Command: []string{"sleep", "3600"}, LogPath: "bb.log", Linux: &runtimeapi.LinuxContainerConfig{},
	}
}

func vmConfig() *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "vm"}, Image: &runtimeapi.ImageSpec{Image: simImage}, LogPath: "vm.log",
	}
}

// createErr creates a container in pod and returns the error.
func (e *proxyEnv) createErr(pod string, sb *runtimeapi.PodSandboxConfig, c *runtimeapi.ContainerConfig) (string, error) {
	r, err := e.proxy.Runtime.CreateContainer(e.ctx(), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: c, SandboxConfig: sb})
	return r.GetContainerId(), err
}

// startContainer creates and starts a container and checks it runs.
func (e *proxyEnv) startContainer(pod string, sb *runtimeapi.PodSandboxConfig, c *runtimeapi.ContainerConfig) string {
	e.t.Helper()
	id, err := e.createErr(pod, sb, c)
	if err != nil {
		e.t.Fatalf("CreateContainer %s in %s: %v", c.Metadata.Name, pod, err)
	}
	if _, err := e.proxy.Runtime.StartContainer(e.ctx(), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		e.t.Fatalf("StartContainer %s: %v", id, err)
	}
	e.wantState(id, runtimeapi.ContainerState_CONTAINER_RUNNING)
	return id
}

func (e *proxyEnv) wantState(id string, want runtimeapi.ContainerState) {
	e.t.Helper()
	r, err := e.proxy.Runtime.ContainerStatus(e.ctx(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		e.t.Fatalf("ContainerStatus %s: %v", id, err)
	}
	if r.Status.State != want {
		e.t.Fatalf("container %s is %s, want %s", id, r.Status.State, want)
	}
}

// exec runs echo word in a container through the proxy's streaming exec
// (crictl exec, the CRI's own client for it) and checks the output.
func (e *proxyEnv) exec(ctr, word string) {
	e.t.Helper()
	crictl := crictlPath(e.t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// An empty config file: crictl warns on stderr when it finds none.
	conf := filepath.Join(e.dir, "crictl.yaml")
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, crictl, "--config", conf, "--runtime-endpoint", "unix://"+e.proxy.Sock, "exec", ctr, "echo", word)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != word {
		e.t.Fatalf("crictl exec %s echo %s: %q, %v: %s", ctr, word, out, err, stderr.String())
	}
}

func (e *proxyEnv) podIDs() []string {
	e.t.Helper()
	ids, err := e.listPodIDs()
	if err != nil {
		e.t.Fatalf("ListPodSandbox: %v", err)
	}
	return ids
}

func (e *proxyEnv) listPodIDs() ([]string, error) {
	r, err := e.proxy.Runtime.ListPodSandbox(e.ctx(), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, p := range r.Items {
		ids = append(ids, p.Id)
	}
	return ids, nil
}

func (e *proxyEnv) containerIDs(filter *runtimeapi.ContainerFilter) []string {
	e.t.Helper()
	r, err := e.proxy.Runtime.ListContainers(e.ctx(), &runtimeapi.ListContainersRequest{Filter: filter})
	if err != nil {
		e.t.Fatalf("ListContainers: %v", err)
	}
	var ids []string
	for _, c := range r.Containers {
		ids = append(ids, c.Id)
	}
	return ids
}

func (e *proxyEnv) imageTags() []string {
	e.t.Helper()
	r, err := e.proxy.Images.ListImages(e.ctx(), &runtimeapi.ListImagesRequest{})
	if err != nil {
		e.t.Fatalf("ListImages: %v", err)
	}
	var tags []string
	for _, i := range r.Images {
		tags = append(tags, i.RepoTags...)
	}
	return tags
}

func (e *proxyEnv) pullVM() {
	e.t.Helper()
	if _, err := e.proxy.Images.PullImage(e.ctx(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: simImage}}); err != nil {
		e.t.Fatalf("PullImage %s through the proxy: %v", simImage, err)
	}
}

func wantAll(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%s misses %s: %v", what, w, got)
		}
	}
}

func wantErrContains(t *testing.T, what string, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want an error", what)
	}
	for _, s := range subs {
		if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(s)) {
			t.Errorf("%s: error %q does not say %q", what, err, s)
		}
	}
}

func TestProxyVersionIsContainerds(t *testing.T) {
	e := startProxy(t)
	v, err := e.proxy.Runtime.Version(e.ctx(), &runtimeapi.VersionRequest{})
	if err != nil || v.RuntimeName != "containerd" {
		t.Fatalf("Version through the proxy: %v, %v; want containerd's", v, err)
	}
}

// TestProxySideBySide: a container pod (containerd), a VM pod by the
// Virtlet annotation and one by RuntimeClass handler run side by side; the
// lists merge; a container in the other runtime's pod is refused clearly.
func TestProxySideBySide(t *testing.T) {
	e := startProxy(t)
	web, webCfg := e.pod("web", nil, "")
	if strings.Contains(web, "__") {
		t.Errorf("containerd pod ID %s was prefixed", web)
	}
	webC := e.startContainer(web, webCfg, e.busyboxConfig())
	e.exec(webC, "side-by-side")

	e.pullVM()
	vm, vmCfg := e.pod("vm", map[string]string{"kubernetes.io/target-runtime": "virtlet.cloud"}, "")
	vmC := e.startContainer(vm, vmCfg, vmConfig())
	vmrc, vmrcCfg := e.pod("vmrc", nil, "podvisor")
	vmrcC := e.startContainer(vmrc, vmrcCfg, vmConfig())
	for _, id := range []string{vm, vmC, vmrc, vmrcC} {
		if !strings.HasPrefix(id, "podvisor__") {
			t.Errorf("VM pod or container ID %s lacks the podvisor__ prefix", id)
		}
	}
	st, err := e.proxy.Runtime.PodSandboxStatus(e.ctx(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: vmrc})
	if err != nil || st.Status.RuntimeHandler != "podvisor" {
		t.Errorf("the RuntimeClass VM pod's status: %v, %v; want handler podvisor", st.GetStatus(), err)
	}

	wantAll(t, "ListPodSandbox", e.podIDs(), web, vm, vmrc)
	wantAll(t, "ListContainers", e.containerIDs(nil), webC, vmC, vmrcC)
	if got := e.containerIDs(&runtimeapi.ContainerFilter{PodSandboxId: vm}); !slices.Equal(got, []string{vmC}) {
		t.Errorf("ListContainers of pod %s: %v, want exactly %s", vm, got, vmC)
	}
	tags := e.imageTags()
	wantAll(t, "ListImages", tags, e.busybox)
	if !slices.ContainsFunc(tags, func(s string) bool { return strings.Contains(s, "virtlet.cloud/cirros") }) {
		t.Errorf("ListImages misses virtlet.cloud/cirros: %v", tags)
	}
	if slices.ContainsFunc(tags, func(s string) bool { return strings.Contains(s, "virtlet.cloud/virtlet.cloud") }) {
		t.Errorf("an image name got the virtlet.cloud/ prefix twice: %v", tags)
	}
	if _, err := e.proxy.Images.ImageStatus(e.ctx(), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: simImage}}); err != nil {
		t.Errorf("ImageStatus %s: %v", simImage, err)
	}

	_, err = e.createErr(vm, vmCfg, e.busyboxConfig())
	wantErrContains(t, "a container image in a VM pod", err, `belongs to runtime "primary"`)
	_, err = e.createErr(web, webCfg, vmConfig())
	wantErrContains(t, "a VM image in a container pod", err, `belongs to runtime "podvisor"`)
}

// TestProxyPodvisorKilled: with podvisor killed, its calls fail fast naming
// it (once --down-grace is past) while containerd's pods stay fully usable
// through the proxy; restarted, its pods are listed and usable again.
func TestProxyPodvisorKilled(t *testing.T) {
	e := startProxy(t)
	web, webCfg := e.pod("web", nil, "")
	webC := e.startContainer(web, webCfg, e.busyboxConfig())
	e.pullVM()
	vm, vmCfg := e.pod("vm", map[string]string{"kubernetes.io/target-runtime": "virtlet.cloud"}, "")
	vmC := e.startContainer(vm, vmCfg, vmConfig())

	e.podvisor.Kill9()
	// Within the grace its last answers stand in (runtime/proxy's
	// TestRuntimeDown); past it, calls for podvisor fail.
	time.Sleep(downGrace + time.Second)
	_, err := e.proxy.Runtime.PodSandboxStatus(e.ctx(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: vm})
	wantErrContains(t, "PodSandboxStatus of podvisor's pod while it is down", err, `runtime "podvisor"`, "unavailable")
	_, err = e.proxy.Runtime.ContainerStatus(e.ctx(), &runtimeapi.ContainerStatusRequest{ContainerId: vmC})
	wantErrContains(t, "ContainerStatus of podvisor's container while it is down", err, `runtime "podvisor"`)
	_, err = e.proxy.Runtime.RunPodSandbox(e.ctx(), &runtimeapi.RunPodSandboxRequest{Config: vmCfg, RuntimeHandler: "podvisor"})
	wantErrContains(t, "RunPodSandbox on podvisor while it is down", err, `runtime "podvisor"`)

	wantAll(t, "ListPodSandbox while podvisor is down", e.podIDs(), web)
	wantAll(t, "ListContainers while podvisor is down", e.containerIDs(nil), webC)
	wantAll(t, "ListImages while podvisor is down", e.imageTags(), e.busybox)
	e.exec(webC, "still-here")
	web2, web2Cfg := e.pod("web2", nil, "")
	web2C := e.startContainer(web2, web2Cfg, e.busyboxConfig())
	e.removeAll(map[string]string{web: webC, web2: web2C})
	if left := e.podIDs(); slices.Contains(left, web) || slices.Contains(left, web2) {
		t.Errorf("containerd's pods still listed after removal while podvisor is down: %v", left)
	}

	e.podvisor.Restart()
	e.waitPods("podvisor's pod listed again after its restart", vm)
	e.wantState(vmC, runtimeapi.ContainerState_CONTAINER_RUNNING)
	e.removeAll(map[string]string{vm: vmC})
	if _, err := e.proxy.Images.RemoveImage(e.ctx(), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: simImage}}); err != nil {
		t.Errorf("RemoveImage %s: %v", simImage, err)
	}
	if tags := e.imageTags(); slices.ContainsFunc(tags, func(s string) bool { return strings.Contains(s, "virtlet.cloud") }) {
		t.Errorf("virtlet.cloud/cirros still listed after RemoveImage: %v", tags)
	}
}

// removeAll stops and removes each pod's container, then the pod, checking
// each step through the proxy.
func (e *proxyEnv) removeAll(pods map[string]string) {
	e.t.Helper()
	rt := e.proxy.Runtime
	for pod, ctr := range pods {
		if _, err := rt.StopContainer(e.ctx(), &runtimeapi.StopContainerRequest{ContainerId: ctr, Timeout: 10}); err != nil {
			e.t.Fatalf("StopContainer %s: %v", ctr, err)
		}
		e.wantState(ctr, runtimeapi.ContainerState_CONTAINER_EXITED)
		if _, err := rt.RemoveContainer(e.ctx(), &runtimeapi.RemoveContainerRequest{ContainerId: ctr}); err != nil {
			e.t.Fatalf("RemoveContainer %s: %v", ctr, err)
		}
		if _, err := rt.StopPodSandbox(e.ctx(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
			e.t.Fatalf("StopPodSandbox %s: %v", pod, err)
		}
		if _, err := rt.RemovePodSandbox(e.ctx(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
			e.t.Fatalf("RemovePodSandbox %s: %v", pod, err)
		}
	}
}

// waitPods polls the proxy's pod list for up to a minute until it holds ids.
func (e *proxyEnv) waitPods(what string, ids ...string) {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got, err := e.listPodIDs()
		if err == nil && !slices.ContainsFunc(ids, func(id string) bool { return !slices.Contains(got, id) }) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s (last list: %v, %v)", what, got, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
