package pod_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/fakes/clock"
	"github.com/podvisor/podvisor/fakes/fakenet"
	"github.com/podvisor/podvisor/fakes/simhv"
	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/failpoint"
	"github.com/podvisor/podvisor/runtime/hypervisor"
	"github.com/podvisor/podvisor/runtime/pod"
	"github.com/podvisor/podvisor/runtime/store"
)

// testImages knows images named "img-*".
type testImages struct{}

func (testImages) Resolve(_ context.Context, name string) (string, string, error) {
	if !strings.HasPrefix(name, "img-") {
		return "", "", errdefs.NotFoundf("image %q not found", name)
	}
	return "/images/" + name, "sha256:" + strings.Repeat("a", 64), nil
}

// testAssembler writes a root disk file into the container dir and a
// minimal domain, or fails on demand.
type testAssembler struct {
	mu   sync.Mutex
	fail error
	// maxVCPUs > 1 gives the domain 1 of that many vCPUs (hot-plug).
	maxVCPUs int
}

func (a *testAssembler) Assemble(_ context.Context, sb *pod.Sandbox, c *pod.Container, imagePath string) (string, error) {
	a.mu.Lock()
	fail, maxVCPUs := a.fail, a.maxVCPUs
	a.mu.Unlock()
	if fail != nil {
		return "", fail
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return "", err
	}
	root := filepath.Join(c.Dir, "root.qcow2")
	if err := os.WriteFile(root, []byte("overlay of "+imagePath), 0o600); err != nil {
		return "", err
	}
	d := &libvirtxml.Domain{
		Type:   "qemu",
		Name:   c.DomainName,
		Memory: &libvirtxml.DomainMemory{Value: 256, Unit: "MiB"},
		OS:     &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Type: "hvm"}},
		Devices: &libvirtxml.DomainDeviceList{
			Disks: []libvirtxml.DomainDisk{{
				Device: "disk",
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: root}},
				Target: &libvirtxml.DomainDiskTarget{Dev: "sda", Bus: "scsi"},
			}},
			Serials: []libvirtxml.DomainSerial{{Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}}}},
			// The guest agent, for exec.
			Channels: []libvirtxml.DomainChannel{{
				Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind", Path: filepath.Join(c.Dir, "agent.sock")}},
				Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: simhv.AgentChannel}},
			}},
		},
	}
	if maxVCPUs > 1 {
		d.VCPU = &libvirtxml.DomainVCPU{Value: uint(maxVCPUs), Current: 1}
	}
	return d.Marshal()
}

type env struct {
	t      testing.TB
	dir    string
	hv     *simhv.Hypervisor
	net    *fakenet.Network
	db     *store.DB
	asm    *testAssembler
	m      *pod.Manager
	logDir string
	opts   []envOpt
}

// envOpt changes how an env (and each restart of it) is opened.
type envOpt struct {
	sim func(*simhv.Options)
	cfg func(*pod.Config)
	// wrap gives the manager another view of the simulated hypervisor.
	wrap func(*simhv.Hypervisor) hypervisor.Hypervisor
}

func newEnv(t testing.TB, opts ...envOpt) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), asm: &testAssembler{}, opts: opts}
	e.logDir = filepath.Join(e.dir, "logs")
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *env) open() {
	t := e.t
	var err error
	simOpts := simhv.Options{StateDir: filepath.Join(e.dir, "sim"), BootTime: 20 * time.Millisecond}
	for _, o := range e.opts {
		if o.sim != nil {
			o.sim(&simOpts)
		}
	}
	e.hv, err = simhv.New(simOpts)
	if err != nil {
		t.Fatal(err)
	}
	e.net, err = fakenet.New(filepath.Join(e.dir, "net"), "")
	if err != nil {
		t.Fatal(err)
	}
	e.db, err = store.Open(filepath.Join(e.dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := pod.Config{
		Hypervisor: e.hv, Store: e.db, Network: e.net, Images: testImages{}, Assembler: e.asm,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		StateDir: filepath.Join(e.dir, "state"), ShutdownRetry: 50 * time.Millisecond, PollInterval: 20 * time.Millisecond,
		UnclaimedTTL: 300 * time.Millisecond,
	}
	for _, o := range e.opts {
		if o.cfg != nil {
			o.cfg(&cfg)
		}
		if o.wrap != nil {
			cfg.Hypervisor = o.wrap(e.hv)
		}
	}
	e.m, err = pod.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) close() {
	if e.m != nil {
		e.m.Close()
		e.db.Close()
		e.hv.Close()
		e.m = nil
	}
}

// restart drops the manager, store and hypervisor connection and opens
// them again on the same directories, as a restarted daemon would.
func (e *env) restart() {
	e.close()
	e.open()
}

func sandboxCfg(name string) pod.SandboxConfig {
	return pod.SandboxConfig{Name: name, UID: "uid-" + name, Namespace: "default", Labels: map[string]string{"app": name}}
}

func (e *env) run(name string) string {
	e.t.Helper()
	cfg := sandboxCfg(name)
	cfg.LogDirectory = filepath.Join(e.logDir, name)
	id, err := e.m.RunPodSandbox(context.Background(), cfg)
	if err != nil {
		e.t.Fatalf("RunPodSandbox(%s): %v", name, err)
	}
	return id
}

func (e *env) create(sb, name string) string {
	e.t.Helper()
	id, err := e.m.CreateContainer(context.Background(), sb, pod.ContainerConfig{Name: name, Image: "img-cirros", LogPath: name + "_0.log"})
	if err != nil {
		e.t.Fatalf("CreateContainer: %v", err)
	}
	return id
}

func (e *env) state(id string) pod.Container {
	e.t.Helper()
	c, err := e.m.ContainerStatus(context.Background(), id)
	if err != nil {
		e.t.Fatalf("ContainerStatus(%s): %v", id, err)
	}
	return c
}

// assertNothingLeft is the leak checker: no domain, address, record or
// container directory remains.
func (e *env) assertNothingLeft() {
	e.t.Helper()
	doms, err := e.hv.List(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	if len(doms) != 0 {
		e.t.Errorf("domains left: %v", doms)
	}
	if got := e.net.Allocated(); len(got) != 0 {
		e.t.Errorf("network allocations left: %v", got)
	}
	if got := e.m.ListPodSandboxes(pod.SandboxFilter{}); len(got) != 0 {
		e.t.Errorf("sandboxes left: %d", len(got))
	}
	if got := e.m.ListContainers(pod.ContainerFilter{}); len(got) != 0 {
		e.t.Errorf("containers left: %d", len(got))
	}
	entries, _ := os.ReadDir(filepath.Join(e.dir, "state", "vms"))
	if len(entries) != 0 {
		e.t.Errorf("container directories left: %d", len(entries))
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	sb := e.run("vm1")
	s, err := e.m.PodSandbox(sb)
	if err != nil || s.State != pod.SandboxReady || len(s.Network.IPs()) != 1 {
		t.Fatalf("PodSandbox = %+v, %v; want ready with one IP", s, err)
	}
	cid := e.create(sb, "vm")
	if c := e.state(cid); c.State != pod.ContainerCreated || c.ImageRef == "" || c.CreatedAt.IsZero() {
		t.Fatalf("after create: %+v", c)
	}
	if err := e.m.StartContainer(ctx, cid); err != nil {
		t.Fatal(err)
	}
	c := e.state(cid)
	if c.State != pod.ContainerRunning || c.StartedAt.IsZero() {
		t.Fatalf("after start: %+v", c)
	}
	// The console reaches the container log in the CRI format.
	logPath := filepath.Join(e.logDir, "vm1", "vm_0.log")
	marker := simhv.ReadyMarker(c.DomainName)
	var data []byte
	waitFor(t, "ready marker in the container log", func() bool {
		data, _ = os.ReadFile(logPath)
		return strings.Contains(string(data), " stdout F "+marker)
	})
	if t.Failed() {
		t.Logf("log:\n%s", data)
	}
	if err := e.m.StartContainer(ctx, cid); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("starting a running container: err = %v, want FailedPrecondition", err)
	}
	if err := e.m.StopContainer(ctx, cid, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c = e.state(cid)
	if c.State != pod.ContainerExited || c.ExitCode != 0 || c.Reason != "Completed" || c.FinishedAt.IsZero() {
		t.Fatalf("after ACPI stop: %+v; want exited 0 Completed", c)
	}
	if err := e.m.StopContainer(ctx, cid, 10*time.Second); err != nil {
		t.Errorf("stopping a stopped container: %v", err)
	}
	if err := e.m.RemoveContainer(ctx, cid); err != nil {
		t.Fatal(err)
	}
	if err := e.m.RemoveContainer(ctx, cid); err != nil {
		t.Errorf("removing a removed container: %v", err)
	}
	if err := e.m.StopPodSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	if s, _ := e.m.PodSandbox(sb); s.State != pod.SandboxNotReady {
		t.Errorf("after stop: sandbox %s", s.State)
	}
	if err := e.m.StopPodSandbox(ctx, sb); err != nil {
		t.Errorf("stopping a stopped sandbox: %v", err)
	}
	if err := e.m.RemovePodSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	for _, f := range []func() error{
		func() error { return e.m.RemovePodSandbox(ctx, sb) },
		func() error { return e.m.StopPodSandbox(ctx, "missing") },
		func() error { return e.m.StopContainer(ctx, "missing", time.Second) },
		func() error { return e.m.RemoveContainer(ctx, "missing") },
	} {
		if err := f(); err != nil {
			t.Errorf("idempotent call on a missing object: %v", err)
		}
	}
	e.assertNothingLeft()
}

func TestRunPodSandboxIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a := e.run("p")
	b, err := e.m.RunPodSandbox(ctx, sandboxCfg("p"))
	if err != nil || b != a {
		t.Fatalf("second RunPodSandbox = %s, %v; want %s", b, err, a)
	}
	if n := len(e.m.ListPodSandboxes(pod.SandboxFilter{})); n != 1 {
		t.Fatalf("%d sandboxes, want 1", n)
	}
	if err := e.m.StopPodSandbox(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.RunPodSandbox(ctx, sandboxCfg("p")); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("RunPodSandbox of a stopped sandbox's attempt: err = %v, want AlreadyExists", err)
	}
	next := sandboxCfg("p")
	next.Attempt = 1
	c, err := e.m.RunPodSandbox(ctx, next)
	if err != nil || c == a {
		t.Fatalf("RunPodSandbox attempt 1 = %s, %v; want a new sandbox", c, err)
	}
}

func TestOneVMPerPod(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	sb := e.run("p")
	first := e.create(sb, "vm")
	_, err := e.m.CreateContainer(ctx, sb, pod.ContainerConfig{Name: "sidecar", Image: "img-x"})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "one VM per pod") {
		t.Fatalf("second container: err = %v, want FailedPrecondition naming the rule", err)
	}
	_, err = e.m.CreateContainer(ctx, sb, pod.ContainerConfig{Name: "vm", Image: "img-x"})
	if !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("same name and attempt: err = %v, want AlreadyExists", err)
	}
	// Once the VM has exited, kubelet's restart (attempt+1) is allowed.
	if err := e.m.StartContainer(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := e.m.StopContainer(ctx, first, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.CreateContainer(ctx, sb, pod.ContainerConfig{Name: "vm", Attempt: 1, Image: "img-x"}); err != nil {
		t.Fatalf("restart after exit: %v", err)
	}
	// The exited VM's domain is gone (its record stays for kubelet's
	// logs), so a fixed VirtletSystemUUID could be reused.
	if _, err := e.hv.Status(ctx, pod.DomainName(first)); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("exited domain still defined after the next attempt was created: %v", err)
	}
	if c := e.state(first); c.State != pod.ContainerExited {
		t.Errorf("exited container record: %+v", c)
	}
	if err := e.m.RemoveContainer(ctx, first); err != nil {
		t.Errorf("removing the exited container whose domain was undefined: %v", err)
	}
}

func TestInvalidRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
		kind error
		msg  string
	}{
		{"sandbox without name", func() error {
			_, err := e.m.RunPodSandbox(ctx, pod.SandboxConfig{UID: "u", Namespace: "n"})
			return err
		}, errdefs.ErrInvalidArgument, "metadata.name"},
		{"sandbox without uid", func() error {
			_, err := e.m.RunPodSandbox(ctx, pod.SandboxConfig{Name: "n", Namespace: "n"})
			return err
		}, errdefs.ErrInvalidArgument, "metadata.uid"},
		{"sandbox with a bad sysctl", func() error {
			_, err := e.m.RunPodSandbox(ctx, pod.SandboxConfig{Name: "n", UID: "u", Namespace: "n", Sysctls: map[string]string{"kernel.msgmax": "1\nx"}})
			return err
		}, errdefs.ErrInvalidArgument, `linux.sysctls["kernel.msgmax"]`},
		{"container in a missing sandbox", func() error {
			_, err := e.m.CreateContainer(ctx, "nope", pod.ContainerConfig{Name: "c", Image: "img-a"})
			return err
		}, errdefs.ErrNotFound, "sandbox"},
		{"container without image", func() error {
			_, err := e.m.CreateContainer(ctx, "nope", pod.ContainerConfig{Name: "c"})
			return err
		}, errdefs.ErrInvalidArgument, "image"},
		{"image not pulled", func() error {
			sb := e.run("img")
			_, err := e.m.CreateContainer(ctx, sb, pod.ContainerConfig{Name: "c", Image: "other"})
			return err
		}, errdefs.ErrNotFound, `"other"`},
		{"start missing container", func() error { return e.m.StartContainer(ctx, "nope") }, errdefs.ErrNotFound, "nope"},
		{"status of missing container", func() error { _, err := e.m.ContainerStatus(ctx, "nope"); return err }, errdefs.ErrNotFound, "nope"},
		{"status of missing sandbox", func() error { _, err := e.m.PodSandbox("nope"); return err }, errdefs.ErrNotFound, "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v; want kind %v mentioning %q", err, tc.kind, tc.msg)
			}
		})
	}
}

func TestStopHungGuestDestroysAfterTimeout(t *testing.T) {
	t.Parallel()
	// kubelet's default grace, on a fake clock: the test advances it
	// instead of waiting 30 s.
	const grace = 30 * time.Second
	fake := clock.NewFake(time.Now())
	e := newEnv(t, envOpt{cfg: func(c *pod.Config) { c.Clock = fake }})
	ctx := context.Background()
	sb := e.run("hung")
	cid := e.create(sb, "vm")
	e.hv.SetBehavior(pod.DomainName(cid), simhv.GuestBehavior{IgnoreACPI: true})
	if err := e.m.StartContainer(ctx, cid); err != nil {
		t.Fatal(err)
	}
	start := fake.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- e.m.StopContainer(ctx, cid, grace) }()
	advanceUntil(t, fake, stopped, time.Second)
	if waited := fake.Now().Sub(start); waited < grace {
		t.Errorf("destroyed after %s of the clock, want the whole %s grace period", waited, grace)
	}
	c := e.state(cid)
	if c.State != pod.ContainerExited || c.ExitCode == 0 || !strings.Contains(c.Message, "30s grace period") {
		t.Fatalf("hung guest after stop: %+v; want exited non-zero, destroyed after the grace period", c)
	}
	if n := e.hv.CallCount(simhv.OpShutdown, pod.DomainName(cid)); n < 2 {
		t.Errorf("ACPI shutdown sent %d times, want it repeated during the grace period", n)
	}
}

// advanceUntil moves the fake clock step by step until done delivers the
// call's result, which must be nil. Before each step it waits for the
// manager's three timers (the monitor's poll and resync intervals, and the
// call's own wait) so that no step passes a wait by.
func advanceUntil(t *testing.T, fake *clock.Fake, done <-chan error, step time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return
		default:
		}
		waitCtx, stop := context.WithTimeout(ctx, 50*time.Millisecond)
		err := fake.WaitForTimers(waitCtx, 3)
		stop()
		if ctx.Err() != nil {
			t.Fatalf("the call did not return within 30 s of real time; the fake clock is at %s", fake.Now())
		}
		if err == nil {
			fake.Advance(step)
		}
	}
}

func TestGuestCrashIsNoticed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	sb := e.run("crash")
	cid := e.create(sb, "vm")
	if err := e.m.StartContainer(ctx, cid); err != nil {
		t.Fatal(err)
	}
	if err := e.hv.Crash(pod.DomainName(cid)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the monitor to see the crash", func() bool {
		cs := e.m.ListContainers(pod.ContainerFilter{ID: cid})
		return len(cs) == 1 && cs[0].State == pod.ContainerExited
	})
	c := e.state(cid)
	if c.ExitCode == 0 || c.Reason != "Error" || !strings.Contains(c.Message, "crashed") {
		t.Errorf("crashed guest: %+v", c)
	}
}

func TestRestartKeepsEverything(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	// One sandbox per container state, plus a not-ready one.
	created := e.create(e.run("created"), "vm")
	runningSB := e.run("running")
	running := e.create(runningSB, "vm")
	if err := e.m.StartContainer(ctx, running); err != nil {
		t.Fatal(err)
	}
	exited := e.create(e.run("exited"), "vm")
	if err := e.m.StartContainer(ctx, exited); err != nil {
		t.Fatal(err)
	}
	if err := e.m.StopContainer(ctx, exited, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	notReady := e.run("notready")
	if err := e.m.StopPodSandbox(ctx, notReady); err != nil {
		t.Fatal(err)
	}
	before, _ := e.hv.Status(ctx, pod.DomainName(running))
	sbBefore := e.m.ListPodSandboxes(pod.SandboxFilter{})
	cBefore := map[string]pod.Container{}
	for _, id := range []string{created, running, exited} {
		cBefore[id] = e.state(id)
	}

	e.restart()

	if diff := cmp.Diff(sbBefore, e.m.ListPodSandboxes(pod.SandboxFilter{})); diff != "" {
		t.Errorf("sandboxes changed across restart (-before +after):\n%s", diff)
	}
	for id, want := range cBefore {
		got := e.state(id)
		if got.State != want.State || !got.StartedAt.Equal(want.StartedAt) || !got.FinishedAt.Equal(want.FinishedAt) || got.ExitCode != want.ExitCode {
			t.Errorf("container %s changed across restart:\n before %+v\n after  %+v", want.Config.Name, want, got)
		}
	}
	after, _ := e.hv.Status(ctx, pod.DomainName(running))
	if after.PID != before.PID || !after.StartedAt.Equal(before.StartedAt) {
		t.Errorf("the running VM was restarted: PID %d -> %d", before.PID, after.PID)
	}
	// The restarted daemon still drives the pods to the end.
	if err := e.m.StartContainer(ctx, created); err != nil {
		t.Fatal(err)
	}
	for _, sb := range e.m.ListPodSandboxes(pod.SandboxFilter{}) {
		if err := e.m.RemovePodSandbox(ctx, sb.ID); err != nil {
			t.Fatal(err)
		}
	}
	e.assertNothingLeft()
}

func TestFailuresLeaveNothingBehind(t *testing.T) {
	t.Parallel()
	boom := errors.New("injected")
	tests := []struct {
		name   string
		arm    func(e *env)
		disarm func(e *env)
		sbFail bool
	}{
		{"CNI ADD", func(e *env) { e.net.FailSetup(boom) }, func(e *env) { e.net.FailSetup(nil) }, true},
		{"assemble", func(e *env) { e.asm.fail = boom }, func(e *env) { e.asm.fail = nil }, false},
		{"define", func(e *env) { e.hv.InjectFault(simhv.OpDefine, "", boom, 1) }, func(e *env) {}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			tc.arm(e)
			sb, err := e.m.RunPodSandbox(ctx, sandboxCfg("p"))
			if tc.sbFail {
				if !errors.Is(err, boom) {
					t.Fatalf("RunPodSandbox err = %v, want the injected error", err)
				}
				e.assertNothingLeft()
				tc.disarm(e)
				sb = e.run("p")
			} else if err != nil {
				t.Fatal(err)
			}
			if !tc.sbFail {
				if _, err := e.m.CreateContainer(ctx, sb, pod.ContainerConfig{Name: "vm", Image: "img-a"}); !errors.Is(err, boom) {
					t.Fatalf("CreateContainer err = %v, want the injected error", err)
				}
				if n := len(e.m.ListContainers(pod.ContainerFilter{})); n != 0 {
					t.Fatalf("%d containers after a failed create", n)
				}
				tc.disarm(e)
			}
			cid := e.create(sb, "vm")
			if err := e.m.StartContainer(ctx, cid); err != nil {
				t.Fatal(err)
			}
			if err := e.m.RemovePodSandbox(ctx, sb); err != nil {
				t.Fatal(err)
			}
			e.assertNothingLeft()
		})
	}
}

func TestStartFailureMarksExited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	sb := e.run("p")
	cid := e.create(sb, "vm")
	e.hv.InjectFault(simhv.OpStart, "", errors.New("qemu died"), 1)
	if err := e.m.StartContainer(ctx, cid); err == nil {
		t.Fatal("StartContainer succeeded despite the fault")
	}
	c := e.state(cid)
	if c.State != pod.ContainerExited || c.Reason != "StartError" || !strings.Contains(c.Message, "qemu died") {
		t.Fatalf("after failed start: %+v", c)
	}
}

func TestListFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a := e.run("a")
	b := e.run("b")
	ca := e.create(a, "vm")
	cb := e.create(b, "vm")
	if err := e.m.StartContainer(ctx, cb); err != nil {
		t.Fatal(err)
	}
	running := pod.ContainerRunning
	ready := pod.SandboxReady
	if err := e.m.StopPodSandbox(ctx, a); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    pod.ContainerFilter
		want []string
	}{
		{"all", pod.ContainerFilter{}, []string{ca, cb}},
		{"by id prefix", pod.ContainerFilter{ID: cb[:8]}, []string{cb}},
		{"by sandbox", pod.ContainerFilter{SandboxID: a}, []string{ca}},
		{"by state", pod.ContainerFilter{State: &running}, []string{cb}},
		{"by label", pod.ContainerFilter{LabelSelector: map[string]string{"x": "y"}}, nil},
	}
	for _, tc := range tests {
		var got []string
		for _, c := range e.m.ListContainers(tc.f) {
			got = append(got, c.ID)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := e.m.ListPodSandboxes(pod.SandboxFilter{State: &ready}); len(got) != 1 || got[0].ID != b {
		t.Errorf("ready sandboxes = %v, want only b", got)
	}
	if got := e.m.ListPodSandboxes(pod.SandboxFilter{LabelSelector: map[string]string{"app": "a"}}); len(got) != 1 || got[0].ID != a {
		t.Errorf("sandboxes with app=a = %v", got)
	}
}

func TestParallelLifecycles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			name := fmt.Sprintf("p%d", i)
			sb, err := e.m.RunPodSandbox(ctx, sandboxCfg(name))
			if err != nil {
				errs <- err
				return
			}
			cid, err := e.m.CreateContainer(ctx, sb, pod.ContainerConfig{Name: "vm", Image: "img-a"})
			if err != nil {
				errs <- err
				return
			}
			if err := e.m.StartContainer(ctx, cid); err != nil {
				errs <- err
				return
			}
			if err := e.m.StopContainer(ctx, cid, time.Second); err != nil {
				errs <- err
				return
			}
			if err := e.m.RemovePodSandbox(ctx, sb); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	e.assertNothingLeft()
}

func TestStartupCollectsOrphans(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	sb := e.run("keep")
	keep := e.create(sb, "vm")
	if err := e.m.StartContainer(ctx, keep); err != nil {
		t.Fatal(err)
	}
	// A crash between Define and saving the record leaves a domain and a
	// VM directory nobody knows; a domain that is not ours must survive.
	disk := func(path string) *libvirtxml.DomainDeviceList {
		return &libvirtxml.DomainDeviceList{Disks: []libvirtxml.DomainDisk{{Device: "disk",
			Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: path}},
			Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"}}}}
	}
	orphan := &libvirtxml.Domain{Type: "qemu", Name: pod.DomainPrefix + "0123456789abcdef", Memory: &libvirtxml.DomainMemory{Value: 64, Unit: "MiB"},
		Devices: disk(filepath.Join(e.dir, "state", "vms", pod.DomainPrefix+"0123456789abcdef", "root.qcow2"))}
	foreign := &libvirtxml.Domain{Type: "qemu", Name: "someone-elses-vm", Memory: &libvirtxml.DomainMemory{Value: 64, Unit: "MiB"}}
	// Named like ours, but its disks are another podvisor's (another
	// state dir on the same libvirt): not ours to collect.
	otherInstance := &libvirtxml.Domain{Type: "qemu", Name: pod.DomainPrefix + "1111111111111111", Memory: &libvirtxml.DomainMemory{Value: 64, Unit: "MiB"},
		Devices: disk("/var/lib/other-podvisor/vms/x/root.qcow2")}
	for _, d := range []*libvirtxml.Domain{orphan, foreign, otherInstance} {
		x, _ := d.Marshal()
		if _, err := e.hv.Define(ctx, x); err != nil {
			t.Fatal(err)
		}
		if err := e.hv.Start(ctx, d.Name); err != nil {
			t.Fatal(err)
		}
	}
	strayDir := filepath.Join(e.dir, "state", "vms", pod.DomainPrefix+"fedcba9876543210")
	os.MkdirAll(strayDir, 0o700)
	os.WriteFile(filepath.Join(strayDir, "root.qcow2"), []byte("x"), 0o600)
	// A network allocation for a sandbox that was never saved.
	if _, err := e.net.Setup(ctx, &pod.Sandbox{ID: "lost-sandbox"}); err != nil {
		t.Fatal(err)
	}
	runningBefore, _ := e.hv.Status(ctx, pod.DomainName(keep))

	e.restart()

	if _, err := e.hv.Status(ctx, orphan.Name); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("orphan domain still there: %v", err)
	}
	for _, d := range []string{foreign.Name, otherInstance.Name} {
		if st, err := e.hv.Status(ctx, d); err != nil || st.State != hypervisor.StateRunning {
			t.Errorf("domain %s, not ours, was touched: %v %v", d, st, err)
		}
	}
	if _, err := os.Stat(strayDir); !os.IsNotExist(err) {
		t.Errorf("orphan VM directory still there: %v", err)
	}
	if got := e.net.Allocated(); len(got) != 1 || got[0] != sb {
		t.Errorf("network allocations after start-up = %v, want only the live sandbox's", got)
	}
	after, err := e.hv.Status(ctx, pod.DomainName(keep))
	if err != nil || after.PID != runningBefore.PID {
		t.Errorf("the live VM was touched: %v, %v", after, err)
	}
	if c := e.state(keep); c.State != pod.ContainerRunning {
		t.Errorf("live container after start-up: %s", c.State)
	}
}

func TestCallsFinishedAfterKubeletGaveUpAreHandedToTheRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// CreateContainer: Define takes longer than kubelet waits.
	sb := e.run("slow")
	e.hv.SetLatency(simhv.OpDefine, 300*time.Millisecond)
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	cfg := pod.ContainerConfig{Name: "vm", Image: "img-a"}
	if _, err := e.m.CreateContainer(short, sb, cfg); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timed-out CreateContainer: err = %v, want DeadlineExceeded", err)
	}
	e.hv.ClearFaults()
	cs := e.m.ListContainers(pod.ContainerFilter{SandboxID: sb})
	if len(cs) != 1 || cs[0].State != pod.ContainerCreated {
		t.Fatalf("after the timeout: %+v; want the container finished and kept", cs)
	}
	id, err := e.m.CreateContainer(context.Background(), sb, cfg)
	if err != nil || id != cs[0].ID {
		t.Fatalf("retry = %s, %v; want the kept container %s", id, err, cs[0].ID)
	}
	if n := len(e.hv.DefinedXML(pod.DomainName(id))); n != 1 {
		t.Errorf("domain defined %d times, want once (the retry must not redo it)", n)
	}
	if _, err := e.m.CreateContainer(context.Background(), sb, cfg); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("a third call after the claim: %v, want AlreadyExists", err)
	}

	// RunPodSandbox whose caller is gone: it finishes, nobody retries, so
	// it is collected after the TTL.
	// A deadline already past is expired at once (WithTimeout's timer may
	// not have fired yet on a busy machine: CI saw err = nil).
	short2, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	if _, err := e.m.RunPodSandbox(short2, sandboxCfg("never-retried")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RunPodSandbox with an expired deadline: err = %v", err)
	}
	waitFor(t, "the unclaimed sandbox to be collected", func() bool {
		for _, s := range e.m.ListPodSandboxes(pod.SandboxFilter{}) {
			if s.Config.Name == "never-retried" {
				return false
			}
		}
		return true
	})
	for _, a := range e.net.Allocated() {
		if a != sb {
			t.Errorf("network of the collected sandbox left: %s", a)
		}
	}
}

// TestRestartMatrix: 50 pods spread over every reachable combination of
// sandbox state × container state survive a restart unchanged, and no
// running VM is restarted.
func TestRestartMatrix(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	type combo struct {
		sandboxReady bool
		container    pod.ContainerState
	}
	combos := []combo{
		{true, pod.ContainerCreated}, {true, pod.ContainerRunning}, {true, pod.ContainerExited},
		{false, pod.ContainerCreated}, {false, pod.ContainerExited},
	}
	pids := map[string]int{}
	for i := 0; i < 50; i++ {
		cb := combos[i%len(combos)]
		sb := e.run(fmt.Sprintf("m%02d", i))
		cid := e.create(sb, "vm")
		if cb.container != pod.ContainerCreated {
			if err := e.m.StartContainer(ctx, cid); err != nil {
				t.Fatal(err)
			}
		}
		if cb.container == pod.ContainerExited {
			if err := e.m.StopContainer(ctx, cid, 0); err != nil {
				t.Fatal(err)
			}
		}
		if !cb.sandboxReady {
			if err := e.m.StopPodSandbox(ctx, sb); err != nil {
				t.Fatal(err)
			}
		}
		if cb.container == pod.ContainerRunning {
			st, _ := e.hv.Status(ctx, pod.DomainName(cid))
			pids[cid] = st.PID
		}
	}
	sbBefore := e.m.ListPodSandboxes(pod.SandboxFilter{})
	cBefore := e.m.ListContainers(pod.ContainerFilter{})
	counts := map[pod.ContainerState]int{}
	for _, c := range cBefore {
		counts[c.State]++
	}
	if counts[pod.ContainerCreated] != 20 || counts[pod.ContainerRunning] != 10 || counts[pod.ContainerExited] != 20 {
		t.Fatalf("set-up produced %v", counts)
	}

	e.restart()

	if diff := cmp.Diff(sbBefore, e.m.ListPodSandboxes(pod.SandboxFilter{})); diff != "" {
		t.Errorf("sandboxes changed across restart (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(cBefore, e.m.ListContainers(pod.ContainerFilter{})); diff != "" {
		t.Errorf("containers changed across restart (-before +after):\n%s", diff)
	}
	for cid, pid := range pids {
		st, err := e.hv.Status(ctx, pod.DomainName(cid))
		if err != nil || st.PID != pid || st.State != hypervisor.StateRunning {
			t.Errorf("VM of %s after restart: %+v, %v; want running with PID %d", cid[:8], st, err, pid)
		}
	}
}

// TestEveryFailpointFailsCleanly arms each lifecycle failpoint once: the
// call fails, nothing half-made is left (leak checker), and the next
// attempt succeeds.
func TestEveryFailpointFailsCleanly(t *testing.T) {
	t.Parallel()
	for _, fp := range pod.Failpoints {
		t.Run(fp, func(t *testing.T) {
			fps := &failpoint.Points{}
			e := newEnv(t, envOpt{cfg: func(c *pod.Config) { c.Failpoints = fps }})
			ctx := context.Background()
			fps.Set(fp, 1)
			fired := 0

			sb, err := e.m.RunPodSandbox(ctx, sandboxCfg("fp"))
			if err != nil {
				if !strings.Contains(err.Error(), fp) {
					t.Fatalf("RunPodSandbox failed with %v, not the failpoint", err)
				}
				fired++
				e.assertNothingLeft()
				sb = e.run("fp")
			}
			cfg := pod.ContainerConfig{Name: "vm", Image: "img-a"}
			cid, err := e.m.CreateContainer(ctx, sb, cfg)
			if err != nil {
				if !strings.Contains(err.Error(), fp) {
					t.Fatalf("CreateContainer failed with %v, not the failpoint", err)
				}
				fired++
				doms, _ := e.hv.List(ctx)
				entries, _ := os.ReadDir(filepath.Join(e.dir, "state", "vms"))
				if len(doms) != 0 || len(entries) != 0 || len(e.m.ListContainers(pod.ContainerFilter{})) != 0 {
					t.Fatalf("failed create left domains %v, dirs %d, records %d", doms, len(entries), len(e.m.ListContainers(pod.ContainerFilter{})))
				}
				cid = e.create(sb, "vm")
			}
			if err := e.m.StartContainer(ctx, cid); err != nil {
				if !strings.Contains(err.Error(), fp) {
					t.Fatalf("StartContainer failed with %v, not the failpoint", err)
				}
				fired++
				c := e.state(cid)
				st, _ := e.hv.Status(ctx, c.DomainName)
				if c.State != pod.ContainerExited || c.Reason != "StartError" || st.State == hypervisor.StateRunning {
					t.Fatalf("after a failed start: container %s/%s, VM %s", c.State, c.Reason, st.State)
				}
				// kubelet's next attempt.
				cfg.Attempt = 1
				next, err := e.m.CreateContainer(ctx, sb, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if err := e.m.StartContainer(ctx, next); err != nil {
					t.Fatal(err)
				}
				cid = next
			}
			if fired != 1 {
				t.Fatalf("the failpoint failed %d calls, want exactly 1", fired)
			}
			if c := e.state(cid); c.State != pod.ContainerRunning {
				t.Fatalf("after the retry the container is %s", c.State)
			}
			if err := e.m.RemovePodSandbox(ctx, sb); err != nil {
				t.Fatal(err)
			}
			e.assertNothingLeft()
		})
	}
}

// TestConsoleLogHasTheWholeBoot: the simulated console drops what the
// guest prints while nobody reads, as QEMU's serial socket does, and opening
// it is slow (libvirt busy starting other VMs); the container log still
// begins with the guest's first line, because the VM waits, paused, for
// its console.
func TestConsoleLogHasTheWholeBoot(t *testing.T) {
	e := newEnv(t, envOpt{sim: func(o *simhv.Options) { o.ConsoleDropsUnread = true }})
	e.hv.SetLatency(simhv.OpConsole, 100*time.Millisecond) // five boot times
	sb := e.run("vm1")
	cid := e.create(sb, "vm")
	if err := e.m.StartContainer(context.Background(), cid); err != nil {
		t.Fatal(err)
	}
	c := e.state(cid)
	logPath := filepath.Join(e.logDir, "vm1", "vm_0.log")
	var data []byte
	waitFor(t, "ready marker in the container log", func() bool {
		data, _ = os.ReadFile(logPath)
		return strings.Contains(string(data), " stdout F "+simhv.ReadyMarker(c.DomainName))
	})
	if !strings.Contains(string(data), "Linux version") {
		t.Errorf("the container log lacks the guest's first line:\n%s", data)
	}
}
