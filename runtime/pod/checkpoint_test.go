package pod_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/podvisor/podvisor/fakes/simhv"
	"github.com/podvisor/podvisor/runtime/domain"
	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
	"github.com/podvisor/podvisor/runtime/pod"
	"github.com/podvisor/podvisor/runtime/snapshot"
)

// baseRef is the ref testImages gives every image.
var baseRef = "sha256:" + strings.Repeat("a", 64)

// refImages resolves refs too (a restore looks its base image up by ref);
// with gone set, nothing is pulled.
type refImages struct{ gone *atomic.Bool }

func (r refImages) Resolve(ctx context.Context, name string) (string, string, error) {
	if r.gone != nil && r.gone.Load() {
		return "", "", errdefs.NotFoundf("image %q not found", name)
	}
	if name == baseRef {
		return "/images/img-cirros", baseRef, nil
	}
	return testImages{}.Resolve(ctx, name)
}

// restoringAssembler is testAssembler with restores: the checkpointed
// definition retargeted as vmbuild does, without a real overlay to rebase.
type restoringAssembler struct{ *testAssembler }

func (restoringAssembler) AssembleRestore(_ context.Context, sb *pod.Sandbox, c *pod.Container, imagePath, saved string, paths map[string]string) (string, error) {
	if _, err := os.Stat(filepath.Join(c.Dir, "root.qcow2")); err != nil {
		return "", err
	}
	return domain.RetargetXML(saved, domain.Retarget{
		Name: c.DomainName, UUID: uuid.NewSHA1(uuid.NameSpaceOID, []byte(sb.Config.UID)).String(),
		PodUID: sb.Config.UID, PodName: sb.Config.Name, PodNamespace: sb.Config.Namespace, ContainerName: c.Config.Name,
		Paths: paths, ConsoleSocket: filepath.Join(c.Dir, "console.sock"),
	})
}

func checkpointEnv(t *testing.T, gone *atomic.Bool) *env {
	return newEnv(t, envOpt{cfg: func(c *pod.Config) {
		c.Images = refImages{gone}
		c.Assembler = restoringAssembler{c.Assembler.(*testAssembler)}
	}})
}

// uptime is the guest's CPU time, which the simulation derives from the
// guest's own clock: it goes on from a restored state, from 0 on a boot.
func uptime(t *testing.T, e *env, cid string) time.Duration {
	t.Helper()
	_, st, err := e.m.Stats(context.Background(), cid)
	if err != nil {
		t.Fatal(err)
	}
	return st.CPUTime
}

// booted waits for the guest's boot (20 ms) to end: its agent answers.
func booted(t *testing.T, e *env, cid string) {
	t.Helper()
	waitFor(t, "the guest's boot", func() bool { return uptime(t, e, cid) > 4*time.Millisecond }) // CPU time is a tenth of guest time
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// A checkpoint leaves the VM running where it was and an archive whose
// restore on another node continues the guest, with the new pod's address
// and the time given through the agent; the original runs on untouched.
func TestCheckpointAndRestore(t *testing.T) {
	t.Parallel()
	e := checkpointEnv(t, nil)
	cid := e.startVM("vm")
	booted(t, e, cid)
	out := t.TempDir()
	target := filepath.Join(out, "vm.tar")
	at := uptime(t, e, cid) // the saved guest time is at least this
	if err := e.m.CheckpointContainer(context.Background(), cid, target, pod.CheckpointOptions{}); err != nil {
		t.Fatalf("CheckpointContainer: %v", err)
	}
	if got := entries(t, out); len(got) != 1 || got[0] != "vm.tar" {
		t.Errorf("beside the archive: %v, want vm.tar alone", got)
	}
	c := e.state(cid)
	st, _ := e.hv.Status(context.Background(), c.DomainName)
	if c.State != pod.ContainerRunning || st.State != hypervisor.StateRunning || st.Reason != simhv.ReasonRestored {
		t.Errorf("after the checkpoint: container %s, VM %v/%s; want running, resumed from its saved state", c.State, st.State, st.Reason)
	}
	man, err := snapshot.Verify(context.Background(), target)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if man.Kind != snapshot.KindMemory || man.Pod.Name != "vm" || man.BaseImage.Ref != baseRef || man.Container.Name != "vm" || len(man.Pod.IPs) != 1 {
		t.Errorf("manifest = %+v", man)
	}

	// Another node: its own state, hypervisor and network.
	other := checkpointEnv(t, nil)
	cfg := sandboxCfg("copy")
	sbID, restored, err := other.m.RestorePod(context.Background(), pod.RestoreRequest{Archive: target, Sandbox: cfg})
	if err != nil {
		t.Fatalf("RestorePod: %v", err)
	}
	if len(restored) != 1 || restored[0].Name != "vm" {
		t.Fatalf("restored %+v", restored)
	}
	rc := other.state(restored[0].ID)
	if rc.State != pod.ContainerCreated || rc.SandboxID != sbID || rc.Config.Image != "img-cirros" || rc.ImageRef != baseRef {
		t.Errorf("restored container = %+v; want created in %s with the checkpoint's image", rc, sbID)
	}
	if err := other.m.StartContainer(context.Background(), rc.ID); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	if got := uptime(t, other, rc.ID); got < at {
		t.Errorf("restored guest time %v, below the checkpointed %v: it booted rather than continued", got, at)
	}
	g, err := other.hv.Guest(rc.DomainName)
	if err != nil {
		t.Fatal(err)
	}
	sb, _ := other.m.PodSandbox(sbID)
	wantAddr := sb.Network.Interfaces[0].IPs[0].CIDR
	if len(g.TimeSet) != 1 || !hasCommand(g.IPCommands, "ip addr add "+wantAddr+" dev eth0") || !hasCommand(g.IPCommands, "ip link set dev eth0 address "+sb.Network.Interfaces[0].MAC) {
		t.Errorf("the guest was told times %v and ip commands %v; want the time once and %s on eth0", g.TimeSet, g.IPCommands, wantAddr)
	}
	if _, err := os.Stat(filepath.Join(rc.Dir, snapshot.MemberMemory)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the memory state was kept after the resume: %v", err)
	}
	if c := e.state(cid); c.State != pod.ContainerRunning {
		t.Errorf("the original is %s after its copy started", c.State)
	}
}

func hasCommand(cmds [][]string, want string) bool {
	for _, c := range cmds {
		if "ip "+strings.Join(c, " ") == want {
			return true
		}
	}
	return false
}
