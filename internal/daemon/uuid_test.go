package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/domain"
)

// TestSystemUUIDCannotSquatAnotherPodsRestart (issue 18, finding 4): a pod
// whose VirtletSystemUUID is the UUID another pod's next attempt would get
// by the public derivation (domain.UUIDFor of its UID, which any reader of
// the pod sees) cannot make that pod's restart fail: the derived UUIDs are
// keyed by a secret of the node.
func TestSystemUUIDCannotSquatAnotherPodsRestart(t *testing.T) {
	h := newHarness(t)
	c := ctx(t)
	victimSB, victim := h.createdVM(t, "victim")
	if _, err := h.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: victim.ContainerId}); err != nil {
		t.Fatal(err)
	}
	squat := sandboxConfig("squatter")
	squat.Annotations["VirtletSystemUUID"] = domain.UUIDFor("uid-victim", 1)
	sq, err := h.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: squat})
	if err != nil {
		t.Fatal(err)
	}
	sqc, err := h.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: sq.PodSandboxId, SandboxConfig: squat, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "vm"}, Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}}})
	if err != nil {
		t.Fatalf("the squatter's VM (a UUID of its choice that no VM has yet): %v", err)
	}
	if _, err := h.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: sqc.ContainerId}); err != nil {
		t.Fatal(err)
	}
	// The victim's VM stops and kubelet creates its next attempt.
	if _, err := h.rt.StopContainer(c, &runtimeapi.StopContainerRequest{ContainerId: victim.ContainerId, Timeout: 0}); err != nil {
		t.Fatal(err)
	}
	next, err := h.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: victimSB.PodSandboxId, SandboxConfig: sandboxConfig("victim"), Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "vm", Attempt: 1}, Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}}})
	if err != nil {
		t.Fatalf("the victim's restart (attempt 1) with its public-derivation UUID squatted: %v", err)
	}
	if _, err := h.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: next.ContainerId}); err != nil {
		t.Fatalf("starting the victim's attempt 1: %v", err)
	}
	for _, ct := range h.d.manager.ListContainers(podFilterAll()) {
		if ct.ID != next.ContainerId {
			continue
		}
		xml, err := h.d.hv.XML(c, ct.DomainName)
		if err != nil {
			t.Fatal(err)
		}
		var d libvirtxml.Domain
		if err := d.Unmarshal(xml); err != nil {
			t.Fatal(err)
		}
		if d.UUID == domain.UUIDFor("uid-victim", 1) || d.UUID == "" {
			t.Errorf("the victim's attempt 1 has UUID %q: predictable from its pod UID", d.UUID)
		}
	}
}

// TestUUIDKeyIsKeptAndPrivate: the key is made once, readable by its owner
// only, and the same after a restart (derived UUIDs stay stable).
func TestUUIDKeyIsKeptAndPrivate(t *testing.T) {
	h := newHarness(t)
	path := filepath.Join(h.cfg.StateDir, uuidKeyFile)
	key, err := os.ReadFile(path)
	if err != nil || len(key) != uuidKeySize {
		t.Fatalf("UUID key %s: %d bytes, %v", path, len(key), err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("UUID key mode %v, %v; want 0600", fi.Mode(), err)
	}
	h.stop()
	h.start()
	if again, err := os.ReadFile(path); err != nil || !bytes.Equal(again, key) {
		t.Errorf("after a restart the UUID key changed (%v)", err)
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadUUIDKey(path); err == nil || !strings.Contains(err.Error(), "5 bytes, want 32") {
		t.Errorf("a damaged key: %v; want an error saying its size", err)
	}
}
