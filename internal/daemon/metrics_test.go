package daemon

import (
	"io"
	"net/http"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestMetricsEndpoint(t *testing.T) {
	h := newHarness(t)
	h.stop()
	h.cfg.MetricsAddr = "127.0.0.1:0"
	h.start()
	c := ctx(t)
	_, cr := h.createdVM(t, "m")
	if _, err := h.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatal(err)
	}
	h.rt.ContainerStatus(c, &runtimeapi.ContainerStatusRequest{ContainerId: "missing"})
	resp, err := http.Get("http://" + h.d.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`podvisor_containers{state="running"} 1`,
		`podvisor_sandboxes{state="ready"} 1`,
		`podvisor_image_pulls_total{result="success"} 1`,
		`podvisor_cri_request_duration_seconds_count{code="OK",method="RunPodSandbox"} 1`,
		`podvisor_cri_request_duration_seconds_count{code="NotFound",method="ContainerStatus"} 1`,
		`podvisor_vm_start_duration_seconds_count 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestProfilingEndpoint(t *testing.T) {
	for _, profiling := range []bool{false, true} {
		h := newHarness(t)
		h.stop()
		h.cfg.MetricsAddr = "127.0.0.1:0"
		h.cfg.Profiling = profiling
		h.start()
		resp, err := http.Get("http://" + h.d.MetricsAddr() + "/debug/pprof/heap?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.StatusCode == http.StatusOK && strings.Contains(string(body), "heap profile"); got != profiling {
			t.Errorf("profiling=%v: /debug/pprof/heap answered %d %.40q", profiling, resp.StatusCode, body)
		}
		h.stop()
	}
}

func TestProfilingNeedsMetricsAddr(t *testing.T) {
	cfg := Config{Listen: "unix:///tmp/x.sock", StateDir: t.TempDir(), Profiling: true}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "metrics-addr") {
		t.Fatalf("Validate: %v, want an error naming metrics-addr", err)
	}
}
