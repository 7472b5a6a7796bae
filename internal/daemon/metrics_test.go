package daemon

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/internal/syncbuf"
	"github.com/podvisor/podvisor/runtime/metrics"
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
		`podvisor_vm_step_duration_seconds_count{step="network"} 1`,
		`podvisor_vm_step_duration_seconds_count{step="assemble"} 1`,
		`podvisor_vm_step_duration_seconds_count{step="overlay"} 1`,
		`podvisor_vm_step_duration_seconds_count{step="cloudinit"} 1`,
		`podvisor_vm_step_duration_seconds_count{step="define"} 1`,
		`podvisor_vm_step_duration_seconds_count{step="start"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestProfilingEndpoint: pprof is served with --profiling only, on a
// loopback listener of its own, never on the metrics endpoint (which may
// listen on the node's IP).
func TestProfilingEndpoint(t *testing.T) {
	get := func(addr string) (int, string) {
		resp, err := http.Get("http://" + addr + "/debug/pprof/heap?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, profiling := range []bool{false, true} {
		h := newHarness(t)
		h.stop()
		h.cfg.MetricsAddr = "127.0.0.1:0"
		h.cfg.Profiling = profiling
		h.cfg.ProfilingAddr = "127.0.0.1:0"
		h.start()
		if code, body := get(h.d.MetricsAddr()); code == http.StatusOK || strings.Contains(body, "heap profile") {
			t.Errorf("profiling=%v: the metrics endpoint serves pprof: %d %.40q", profiling, code, body)
		}
		if got := h.d.ProfilingAddr(); (got != "") != profiling {
			t.Errorf("profiling=%v: pprof listener %q", profiling, got)
		}
		if profiling {
			if code, body := get(h.d.ProfilingAddr()); code != http.StatusOK || !strings.Contains(body, "heap profile") {
				t.Errorf("pprof listener %s: /debug/pprof/heap answered %d %.40q", h.d.ProfilingAddr(), code, body)
			}
		}
		h.stop()
	}
}

func TestProfilingAddrMustBeLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:9475": true, "[::1]:9475": true, "localhost:9475": true, "127.0.0.2:1": true,
		"0.0.0.0:9475": false, ":9475": false, "10.0.0.5:9475": false, "[::]:9475": false, "example.com:9475": false, "127.0.0.1": false,
	} {
		cfg := Config{Listen: "unix:///tmp/x.sock", StateDir: t.TempDir(), Profiling: true, ProfilingAddr: addr}
		err := cfg.Validate()
		if ok != (err == nil) || err != nil && !strings.Contains(err.Error(), "profiling-addr") {
			t.Errorf("profiling-addr %q: %v", addr, err)
		}
	}
	for _, def := range []string{DefaultMetricsAddr, DefaultProfilingAddr} {
		if err := metrics.CheckLoopback(def); err != nil {
			t.Errorf("a default listener off loopback: %v", err)
		}
	}
	cfg := Config{Listen: "unix:///tmp/x.sock", StateDir: t.TempDir(), Profiling: true}
	if err := cfg.Validate(); err != nil || cfg.ProfilingAddr != DefaultProfilingAddr {
		t.Errorf("default profiling-addr: %v, %q", err, cfg.ProfilingAddr)
	}
	cfg = Config{Listen: "unix:///tmp/x.sock", StateDir: t.TempDir(), MetricsAddr: "9474"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "metrics-addr") {
		t.Errorf("metrics-addr without a port: %v", err)
	}
}

// TestMetricsDefaultAddressTaken: the default metrics address in use (a
// second podvisor) is a warning; an address asked for is an error.
func TestMetricsDefaultAddressTaken(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	h := newHarness(t)
	h.stop()
	h.cfg.MetricsAddr = busy.Addr().String()
	h.cfg.MetricsBestEffort = true
	h.logs = &syncbuf.Buffer{}
	h.start()
	if h.d.MetricsAddr() != "" || !strings.Contains(h.logs.String(), "metrics not served") {
		t.Errorf("best effort on a taken port: metrics at %q, log:\n%s", h.d.MetricsAddr(), h.logs.String())
	}
	h.stop()

	h.cfg.MetricsBestEffort = false
	if _, err := New(ctx(t), h.cfg, nil); err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Errorf("a taken metrics address asked for: %v, want an error naming it", err)
	}
}
