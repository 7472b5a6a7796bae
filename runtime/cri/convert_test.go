package cri

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/pod"
)

func TestSandboxConfigFromCRISysctls(t *testing.T) {
	sc := map[string]string{"kernel.shm_rmid_forced": "1", "net.ipv4.ip_local_port_range": "1024 65000"}
	c := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Uid: "u", Namespace: "ns"},
		Linux:    &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/kubepods", Sysctls: sc},
	}
	got := sandboxConfigFromCRI(c, "")
	if d := cmp.Diff(sc, got.Sysctls); d != "" {
		t.Errorf("sysctls (-want +got):\n%s", d)
	}
	// The record owns its map: kubelet's request is not shared.
	sc["kernel.shm_rmid_forced"] = "0"
	if got.Sysctls["kernel.shm_rmid_forced"] != "1" {
		t.Error("the sandbox config shares the request's sysctls map")
	}
	if !strings.Contains(sandboxInfoJSON(pod.Sandbox{Config: got}), `"sysctls":{"kernel.shm_rmid_forced":"1"`) {
		t.Errorf("verbose status lacks the sysctls: %s", sandboxInfoJSON(pod.Sandbox{Config: got}))
	}

	for _, c := range []*runtimeapi.PodSandboxConfig{
		{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p"}},
		{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p"}, Linux: &runtimeapi.LinuxPodSandboxConfig{Sysctls: map[string]string{}}},
	} {
		if got := sandboxConfigFromCRI(c, ""); got.Sysctls != nil {
			t.Errorf("no sysctls gave %v, want nil", got.Sysctls)
		}
	}
}

// A record written before sysctls were recorded reads back without them,
// and one without sysctls is written as before.
func TestSandboxConfigJSONWithoutSysctls(t *testing.T) {
	var cfg pod.SandboxConfig
	if err := json.Unmarshal([]byte(`{"name":"p","uid":"u","namespace":"ns","attempt":0,"dns":{}}`), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Sysctls != nil {
		t.Errorf("sysctls = %v, want nil", cfg.Sysctls)
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "sysctls") {
		t.Errorf("a config without sysctls is written with the key: %s", b)
	}
}
