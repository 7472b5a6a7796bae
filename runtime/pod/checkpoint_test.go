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
// "img-checkpoint" is the pulled file archive names.
type refImages struct {
	gone    *atomic.Bool
	archive string
}

func (r refImages) Resolve(ctx context.Context, name string) (string, string, error) {
	if r.gone != nil && r.gone.Load() {
		return "", "", errdefs.NotFoundf("image %q not found", name)
	}
	if name == "img-checkpoint" && r.archive != "" {
		return r.archive, "sha256:" + strings.Repeat("c", 64), nil
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
	return checkpointEnvWith(t, refImages{gone: gone})
}

func checkpointEnvWith(t *testing.T, images refImages) *env {
	return newEnv(t, envOpt{cfg: func(c *pod.Config) {
		c.Images = images
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

var errBoom = errors.New("boom")

// checkpointed starts a VM in e and checkpoints it into a new directory.
func checkpointed(t *testing.T, e *env, opts pod.CheckpointOptions) (cid, archive string) {
	t.Helper()
	cid = e.startVM("vm")
	booted(t, e, cid)
	archive = filepath.Join(t.TempDir(), "vm.tar")
	if err := e.m.CheckpointContainer(context.Background(), cid, archive, opts); err != nil {
		t.Fatalf("CheckpointContainer: %v", err)
	}
	return cid, archive
}

// A checkpoint that fails leaves no file beside the target and the VM
// running, whether the save itself failed or the archive could not be
// written after it (the VM is then resumed from the saved state).
func TestCheckpointFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		break_ func(e *env, c pod.Container)
		want   string
		reason hypervisor.Reason // of the VM afterwards (unpaused: as it booted)
	}{
		{"the save fails", func(e *env, c pod.Container) { e.hv.InjectFault(simhv.OpSave, c.DomainName, errBoom, 1) }, "boom", simhv.ReasonUnpaused},
		{"a disk is unreadable", func(e *env, c pod.Container) { os.Remove(filepath.Join(c.Dir, "root.qcow2")) }, "root.qcow2", simhv.ReasonRestored},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := checkpointEnv(t, nil)
			cid := e.startVM("vm")
			booted(t, e, cid)
			c := e.state(cid)
			tt.break_(e, c)
			out := t.TempDir()
			err := e.m.CheckpointContainer(context.Background(), cid, filepath.Join(out, "vm.tar"), pod.CheckpointOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckpointContainer: %v, want an error naming %q", err, tt.want)
			}
			if got := entries(t, out); len(got) != 0 {
				t.Errorf("a failed checkpoint left %v", got)
			}
			st, _ := e.hv.Status(context.Background(), c.DomainName)
			if st.State != hypervisor.StateRunning || st.Reason != tt.reason {
				t.Errorf("VM %v/%s after the failed checkpoint, want running/%s", st.State, st.Reason, tt.reason)
			}
			if got := e.state(cid); got.State != pod.ContainerRunning {
				t.Errorf("container %s after the failed checkpoint", got.State)
			}
		})
	}
}

// A resume that fails after the archive was written is reported; the
// archive is good and the container is seen exited.
func TestCheckpointResumeFails(t *testing.T) {
	t.Parallel()
	e := checkpointEnv(t, nil)
	cid := e.startVM("vm")
	booted(t, e, cid)
	e.hv.InjectFault(simhv.OpRestore, "", errBoom, 1)
	archive := filepath.Join(t.TempDir(), "vm.tar")
	err := e.m.CheckpointContainer(context.Background(), cid, archive, pod.CheckpointOptions{})
	if err == nil || !strings.Contains(err.Error(), "resuming its VM") {
		t.Fatalf("CheckpointContainer: %v, want the failed resume", err)
	}
	if _, err := snapshot.Verify(context.Background(), archive); err != nil {
		t.Errorf("the archive written before the resume failed: %v", err)
	}
	waitFor(t, "the container to be seen exited", func() bool { return e.state(cid).State == pod.ContainerExited })
}

func TestCheckpointLeaveStopped(t *testing.T) {
	t.Parallel()
	for _, diskOnly := range []bool{false, true} {
		e := checkpointEnv(t, nil)
		cid, archive := checkpointed(t, e, pod.CheckpointOptions{LeaveStopped: true, DiskOnly: diskOnly})
		c := e.state(cid)
		if c.State != pod.ContainerExited || c.Reason != pod.ReasonCheckpointed || c.ExitCode != 0 || !strings.Contains(c.Message, archive) {
			t.Errorf("disk-only %v: container %s/%s/%d %q; want exited 0 Checkpointed naming the archive", diskOnly, c.State, c.Reason, c.ExitCode, c.Message)
		}
		if _, err := snapshot.Verify(context.Background(), archive); err != nil {
			t.Errorf("disk-only %v: %v", diskOnly, err)
		}
	}
}

// A disk-only checkpoint freezes the guest's file systems while the
// disks are read, thaws them, and restores by booting.
func TestCheckpointDiskOnly(t *testing.T) {
	t.Parallel()
	e := checkpointEnv(t, nil)
	cid, archive := checkpointed(t, e, pod.CheckpointOptions{DiskOnly: true})
	c := e.state(cid)
	g, _ := e.hv.Guest(c.DomainName)
	if g.Freezes != 1 || g.Frozen {
		t.Errorf("guest froze %d times, frozen now %v; want once, thawed", g.Freezes, g.Frozen)
	}
	man, err := snapshot.Verify(context.Background(), archive)
	if err != nil || man.Kind != snapshot.KindDiskOnly {
		t.Fatalf("manifest %+v, %v", man, err)
	}
	if _, ok := man.Member(snapshot.MemberMemory); ok {
		t.Error("a disk-only checkpoint holds a memory state")
	}
	other := checkpointEnv(t, nil)
	_, restored, err := other.m.RestorePod(context.Background(), pod.RestoreRequest{Archive: archive, Sandbox: sandboxCfg("copy")})
	if err != nil {
		t.Fatal(err)
	}
	rc := other.state(restored[0].ID)
	if err := other.m.StartContainer(context.Background(), rc.ID); err != nil {
		t.Fatal(err)
	}
	// Booted afresh, not restored: podvisor starts a VM paused and lets
	// it run once its console is connected, so "unpaused", as libvirt says.
	if st, _ := other.hv.Status(context.Background(), rc.DomainName); st.Reason != simhv.ReasonUnpaused {
		t.Errorf("a disk-only restore: VM %s, want unpaused (a fresh boot)", st.Reason)
	}
	waitFor(t, "the booted guest's network", func() bool {
		g, _ := other.hv.Guest(rc.DomainName)
		return len(g.IPCommands) > 0
	})
}

// A bad archive, or a missing base image, is refused before anything is
// made on the restoring node.
func TestRestoreRefusals(t *testing.T) {
	t.Parallel()
	e := checkpointEnv(t, nil)
	_, archive := checkpointed(t, e, pod.CheckpointOptions{})
	good, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	write := func(b []byte) string {
		p := filepath.Join(t.TempDir(), "bad.tar")
		os.WriteFile(p, b, 0o600)
		return p
	}
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 0xff
	var gone atomic.Bool
	tests := []struct {
		name    string
		archive string
		gone    bool
		kind    error
		want    string
	}{
		{"truncated", write(good[:len(good)/2]), false, errdefs.ErrInvalidArgument, "truncated"},
		{"corrupt", write(flipped), false, errdefs.ErrInvalidArgument, "member"},
		{"not an archive", write([]byte("hello")), false, errdefs.ErrInvalidArgument, "not a tar archive"},
		{"no base image", archive, true, errdefs.ErrFailedPrecondition, "pull it first"},
	}
	other := checkpointEnv(t, &gone)
	for _, tt := range tests {
		gone.Store(tt.gone)
		_, _, err := other.m.RestorePod(context.Background(), pod.RestoreRequest{Archive: tt.archive, Sandbox: sandboxCfg("copy")})
		if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: RestorePod: %v; want %v naming %q", tt.name, err, tt.kind, tt.want)
		}
		other.assertNothingLeft()
	}
	gone.Store(false)
	_, _, err = other.m.RestorePod(context.Background(), pod.RestoreRequest{Archive: archive, Sandbox: sandboxCfg("copy"),
		Containers: []pod.ContainerConfig{{Name: "other"}}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), `"vm"`) {
		t.Errorf("a config for another container: %v", err)
	}
	other.assertNothingLeft()
}

// CRI-O's convention: a container whose image is a checkpoint archive (its
// path, or an image whose pulled file is one) is restored from it into the
// sandbox kubelet made.
func TestCreateContainerFromArchive(t *testing.T) {
	t.Parallel()
	e := checkpointEnv(t, nil)
	_, archive := checkpointed(t, e, pod.CheckpointOptions{})
	for _, image := range []string{archive, "img-checkpoint"} {
		createFromArchive(t, archive, image)
	}
}

func createFromArchive(t *testing.T, archive, image string) {
	other := checkpointEnvWith(t, refImages{archive: archive})
	sb := other.run("copy")
	id, err := other.m.CreateContainer(context.Background(), sb, pod.ContainerConfig{Name: "vm", Image: image})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	c := other.state(id)
	if c.State != pod.ContainerCreated || c.Restore == nil || c.Config.Image != "img-cirros" {
		t.Errorf("container %+v; want created, to be resumed, with the checkpoint's image", c)
	}
	if err := other.m.StartContainer(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if st, _ := other.hv.Status(context.Background(), c.DomainName); st.Reason != simhv.ReasonRestored {
		t.Errorf("VM %s, want restored", st.Reason)
	}
}

func TestCheckpointPodRequests(t *testing.T) {
	t.Parallel()
	e := checkpointEnv(t, nil)
	cid := e.startVM("vm")
	booted(t, e, cid)
	sb := e.state(cid).SandboxID
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), nil, 0o600)
	for name, tc := range map[string]struct {
		dir  string
		ids  []string
		want string
	}{
		"relative":      {"out", []string{cid}, "absolute"},
		"missing":       {"/nonexistent/dir", []string{cid}, "existing, empty directory"},
		"not empty":     {full, []string{cid}, "is not empty"},
		"no containers": {t.TempDir(), nil, "one VM per pod"},
	} {
		if err := e.m.CheckpointPod(context.Background(), sb, tc.dir, tc.ids, pod.CheckpointOptions{}); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want InvalidArgument naming %q", name, err, tc.want)
		}
	}
	dir := t.TempDir()
	if err := e.m.CheckpointPod(context.Background(), sb, dir, []string{cid}, pod.CheckpointOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, dir); len(got) != 1 || got[0] != pod.ArchiveName {
		t.Errorf("the pod's checkpoint directory holds %v", got)
	}
}

func TestParseCheckpointOptions(t *testing.T) {
	for _, tc := range []struct {
		kv      map[string]string
		lenient bool
		want    pod.CheckpointOptions
		err     string
	}{
		{nil, false, pod.CheckpointOptions{}, ""},
		{map[string]string{pod.OptionMode: "disk-only", pod.OptionAfter: "stop"}, false, pod.CheckpointOptions{DiskOnly: true, LeaveStopped: true}, ""},
		{map[string]string{pod.OptionMode: "memory", pod.OptionAfter: "run"}, false, pod.CheckpointOptions{}, ""},
		{map[string]string{pod.OptionMode: "cold"}, false, pod.CheckpointOptions{}, `"cold"`},
		{map[string]string{pod.OptionAfter: "pause"}, false, pod.CheckpointOptions{}, `"pause"`},
		{map[string]string{"other": "x"}, false, pod.CheckpointOptions{}, `"other" is not known`},
		{map[string]string{"other": "x"}, true, pod.CheckpointOptions{}, ""},
		{map[string]string{"podvisor.io/checkpoint-mod": "x"}, true, pod.CheckpointOptions{}, "is not known"},
	} {
		got, err := pod.ParseCheckpointOptions(tc.kv, tc.lenient)
		if tc.err == "" && (err != nil || got != tc.want) || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%v (lenient %v): %+v, %v; want %+v, %q", tc.kv, tc.lenient, got, err, tc.want, tc.err)
		}
	}
}
