package libvirt

// Integration tests against a real libvirtd. They run when
// PODVISOR_LIBVIRT_TESTS=1 (after ci/libvirtd.sh start; see
// ci/test-libvirt.sh). The test guest comes from ci/build-guest.sh.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podvisor/podvisor/runtime/hypervisor"
	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"
)

const (
	bootDeadline     = 180 * time.Second // TCG on a shared 2-core machine
	shutdownDeadline = 120 * time.Second
)

func integration(t *testing.T) {
	t.Helper()
	if os.Getenv("PODVISOR_LIBVIRT_TESTS") != "1" {
		t.Skip("set PODVISOR_LIBVIRT_TESTS=1 (after ci/libvirtd.sh start) to run libvirt integration tests")
	}
}

// needTool fails (or skips with PODVISOR_ALLOW_SKIP=1) when a tool is missing.
func needTool(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		if os.Getenv("PODVISOR_ALLOW_SKIP") == "1" {
			t.Skipf("%s not installed (ci/install-deps.sh installs it)", tool)
		}
		t.Fatalf("%s not installed: run ci/install-deps.sh (or set PODVISOR_ALLOW_SKIP=1 to skip)", tool)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

var (
	guestOnce sync.Once
	guestPath string
	guestErr  error
)

// testGuest builds (or reuses) the test guest image.
func testGuest(t *testing.T) string {
	t.Helper()
	guestOnce.Do(func() {
		dir := os.Getenv("PODVISOR_GUEST_DIR")
		if dir == "" {
			dir = "/var/tmp/podvisor-test-guest"
		}
		out, err := exec.Command(filepath.Join(repoRoot(t), "ci", "build-guest.sh"), dir).CombinedOutput()
		if err != nil {
			guestErr = fmt.Errorf("ci/build-guest.sh %s: %v\n%s", dir, err, out)
			return
		}
		guestPath = filepath.Join(dir, "podvisor-test-guest.qcow2")
	})
	if guestErr != nil {
		t.Fatal(guestErr)
	}
	return guestPath
}

func newTestHypervisor(t *testing.T) *Hypervisor {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kvm := os.Getenv("PODVISOR_KVM")
	h, err := New(ctx, Options{KVM: kvm, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testDomain prepares an overlay of the test guest, a NoCloud drive and the
// domain XML, and returns the XML and the console socket path.
func testDomain(t *testing.T, h *Hypervisor, name string) string {
	t.Helper()
	return testDomainWith(t, h, name, nil)
}

// testDomainWith is testDomain with the spec changed by tweak.
func testDomainWith(t *testing.T, h *Hypervisor, name string, tweak func(*testDomainSpec)) string {
	t.Helper()
	needTool(t, "qemu-img")
	needTool(t, "genisoimage")
	base := testGuest(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "root.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, overlay)
	seed := filepath.Join(dir, "seed")
	if err := os.MkdirAll(seed, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(seed, "meta-data"), "instance-id: "+name+"\nlocal-hostname: "+name+"\n")
	writeFile(t, filepath.Join(seed, "user-data"), "#!/bin/sh\necho USER-DATA-RAN\n")
	iso := filepath.Join(dir, "seed.iso")
	run(t, "genisoimage", "-quiet", "-o", iso, "-V", "cidata", "-J", "-r", seed)

	spec := testDomainSpec{name: name, dir: dir, overlay: overlay, iso: iso}
	if tweak != nil {
		tweak(&spec)
	}
	return buildTestDomain(t, h, spec)
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// consoleReader collects what the guest prints.
type consoleReader struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	more chan struct{}
	done chan struct{}
}

func readConsole(c io.Reader) *consoleReader {
	r := &consoleReader{more: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		b := make([]byte, 4096)
		for {
			n, err := c.Read(b)
			r.mu.Lock()
			r.buf.Write(b[:n])
			r.mu.Unlock()
			select {
			case r.more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return r
}

// bootGuest defines and starts the domain xml names and waits for marker
// on its console, which it returns open with what it read: the caller
// closes it (some tests must before they save the domain).
func bootGuest(ctx context.Context, t *testing.T, h *Hypervisor, name, xml, marker string) (io.Closer, *consoleReader) {
	t.Helper()
	if _, err := h.Define(ctx, xml); err != nil {
		t.Fatalf("Define: %v", err)
	}
	if err := h.Start(ctx, name); err != nil {
		t.Fatalf("Start: %v", err)
	}
	con, err := h.Console(ctx, name)
	if err != nil {
		t.Fatalf("Console: %v", err)
	}
	out := readConsole(con)
	out.waitFor(t, marker, bootDeadline)
	return con, out
}

func (r *consoleReader) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

func (r *consoleReader) waitFor(t *testing.T, want string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for !strings.Contains(r.String(), want) {
		select {
		case <-r.more:
		case <-r.done:
			if !strings.Contains(r.String(), want) {
				t.Fatalf("console closed before %q appeared; output:\n%s", want, r.String())
			}
		case <-deadline:
			t.Fatalf("%q did not appear on the console within %s; output:\n%s", want, d, r.String())
		}
	}
}

// waitStatus polls Status until cond holds.
func waitStatus(t *testing.T, h *Hypervisor, name string, d time.Duration, what string, cond func(hypervisor.DomainStatus) bool) hypervisor.DomainStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var last hypervisor.DomainStatus
	for {
		st, err := h.Status(ctx, name)
		if err == nil {
			last = st
			if cond(st) {
				return st
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("domain %s: %s not reached within %s; last status %+v, last error %v", name, what, d, last, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func TestLibvirtLifecycle(t *testing.T) {
	integration(t)
	h := newTestHypervisor(t)
	ctx := context.Background()
	name := fmt.Sprintf("podvisor-test-%d", os.Getpid())
	x := testDomain(t, h, name)

	info, err := h.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Name != "libvirt" || !strings.HasPrefix(info.Version, "libvirt ") || (info.Accelerator != "kvm" && info.Accelerator != "tcg") {
		t.Errorf("Info = %+v", info)
	}
	t.Logf("Info: %+v (%s)", info, h.AcceleratorReason())

	st, err := h.Define(ctx, x)
	if err != nil {
		t.Fatalf("Define: %v", err)
	}
	if st.Name != name || st.UUID == "" || st.State != hypervisor.StateShutoff || st.Reason != hypervisor.ReasonDefined || st.PID != 0 || !st.StartedAt.IsZero() {
		t.Errorf("status after Define = %+v, want shut off, defined, with a UUID", st)
	}
	if _, err := h.Console(ctx, name); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Errorf("Console of a shut off domain: want ErrInvalidState, got %v", err)
	}
	if _, err := h.Stats(ctx, name); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Errorf("Stats of a shut off domain: want ErrInvalidState, got %v", err)
	}
	if err := h.Shutdown(ctx, name); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Errorf("Shutdown of a shut off domain: want ErrInvalidState, got %v", err)
	}

	before := time.Now()
	if err := h.Start(ctx, name); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := h.Start(ctx, name); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Errorf("second Start: want ErrInvalidState, got %v", err)
	}
	con, err := h.Console(ctx, name)
	if err != nil {
		t.Fatalf("Console: %v", err)
	}
	if _, err := h.Console(ctx, name); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Errorf("second Console: want ErrInvalidState, got %v", err)
	}
	out := readConsole(con)
	out.waitFor(t, "PODVISOR-GUEST: ready", bootDeadline)
	for _, want := range []string{"PODVISOR-GUEST: hostname=" + name, "USER-DATA-RAN"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, out.String())
		}
	}
	// The console is interactive.
	if _, err := io.WriteString(con, "\necho calc=$((6*7))\n"); err != nil {
		t.Fatalf("writing to the console: %v", err)
	}
	out.waitFor(t, "calc=42", time.Minute)
	if err := con.Close(); err != nil {
		t.Errorf("closing the console: %v", err)
	}
	con2, err := h.Console(ctx, name)
	if err != nil {
		t.Fatalf("Console after Close: %v", err)
	}
	_ = con2.Close()

	st, err = h.Status(ctx, name)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.State != hypervisor.StateRunning || st.Reason != hypervisor.ReasonBooted || st.PID <= 0 {
		t.Fatalf("status of the running domain = %+v, want running, booted, with a PID", st)
	}
	if st.StartedAt.Before(before.Add(-time.Second)) || st.StartedAt.After(time.Now()) {
		t.Errorf("StartedAt %v is not between %v and now", st.StartedAt, before)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", st.PID))
	if err != nil || !bytes.Contains(cmdline, []byte("guest="+name)) {
		t.Errorf("PID %d is not the domain's emulator (cmdline %q, %v)", st.PID, cmdline, err)
	}

	stats, err := h.Stats(ctx, name)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if stats.CPUTime <= 0 || stats.MemoryLimitBytes != 256<<20 || stats.MemoryBytes == 0 || stats.Timestamp.IsZero() {
		t.Errorf("Stats = %+v, want CPU time, 256 MiB limit, memory used", stats)
	}

	gotXML, err := h.XML(ctx, name)
	if err != nil {
		t.Fatalf("XML: %v", err)
	}
	var live libvirtxml.Domain
	if err := live.Unmarshal(gotXML); err != nil || live.Name != name || live.ID == nil {
		t.Errorf("XML: live definition of %s not returned (err %v):\n%s", name, err, gotXML)
	}

	list, err := h.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	found := false
	for _, d := range list {
		if d.Name == name {
			found = d.State == hypervisor.StateRunning && d.PID == st.PID
		}
	}
	if !found {
		t.Errorf("List does not report %s running with PID %d: %+v", name, st.PID, list)
	}

	if _, err := h.AgentCommand(ctx, name, `{"execute":"guest-ping"}`, 5*time.Second); !errors.Is(err, hypervisor.ErrUnimplemented) {
		t.Errorf("AgentCommand without an agent channel: want ErrUnimplemented, got %v", err)
	}
	if err := h.Undefine(ctx, name); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Errorf("Undefine of a running domain: want ErrInvalidState, got %v", err)
	}

	if err := h.Shutdown(ctx, name); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	st = waitStatus(t, h, name, shutdownDeadline, "shut off", func(s hypervisor.DomainStatus) bool {
		return s.State == hypervisor.StateShutoff
	})
	if st.Reason != hypervisor.ReasonShutdown || st.ExitCode != 0 || st.PID != 0 || st.FinishedAt.IsZero() || st.FinishedAt.Before(st.StartedAt) {
		t.Errorf("status after Shutdown = %+v, want shut off by shutdown, exit code 0, finished", st)
	}

	// Once more, stopped hard this time.
	if err := h.Start(ctx, name); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	waitStatus(t, h, name, time.Minute, "running", func(s hypervisor.DomainStatus) bool { return s.State == hypervisor.StateRunning })
	if err := h.Destroy(ctx, name); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	st, err = h.Status(ctx, name)
	if err != nil {
		t.Fatalf("Status after Destroy: %v", err)
	}
	if st.State != hypervisor.StateShutoff || st.Reason != hypervisor.ReasonDestroyed || st.ExitCode != 137 || st.FinishedAt.IsZero() {
		t.Errorf("status after Destroy = %+v, want shut off, destroyed, exit code 137", st)
	}
	if err := h.Destroy(ctx, name); err != nil {
		t.Errorf("Destroy of a shut off domain: %v", err)
	}
	if err := h.Undefine(ctx, name); err != nil {
		t.Fatalf("Undefine: %v", err)
	}

	// Gone: every call says NotFound.
	if _, err := h.Status(ctx, name); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Status after Undefine: want ErrNotFound, got %v", err)
	}
	for op, call := range map[string]func() error{
		"Start":    func() error { return h.Start(ctx, name) },
		"Shutdown": func() error { return h.Shutdown(ctx, name) },
		"Destroy":  func() error { return h.Destroy(ctx, name) },
		"Undefine": func() error { return h.Undefine(ctx, name) },
		"XML":      func() error { _, err := h.XML(ctx, name); return err },
		"Stats":    func() error { _, err := h.Stats(ctx, name); return err },
		"Console":  func() error { _, err := h.Console(ctx, name); return err },
	} {
		if err := call(); !errors.Is(err, hypervisor.ErrNotFound) {
			t.Errorf("%s of a missing domain: want ErrNotFound, got %v", op, err)
		}
	}
}

func TestLibvirtDefineRejectsBadXML(t *testing.T) {
	integration(t)
	h := newTestHypervisor(t)
	if _, err := h.Define(context.Background(), "<domain type='qemu'>"); err == nil {
		t.Error("Define of unparsable XML succeeded")
	}
	bad := libvirtxml.Domain{Type: "qemu", Name: fmt.Sprintf("podvisor-bad-%d", os.Getpid())} // no memory, no OS
	x, _ := bad.Marshal()
	if _, err := h.Define(context.Background(), x); err == nil {
		_ = h.Undefine(context.Background(), bad.Name)
		t.Error("Define of a domain without memory and OS succeeded")
	}
}

// TestLibvirtReconnect restarts the libvirtd that ci/libvirtd.sh started,
// under a running domain: the connection recovers and the domain keeps
// running in the same emulator process.
func TestLibvirtReconnect(t *testing.T) {
	integration(t)
	script := filepath.Join(repoRoot(t), "ci", "libvirtd.sh")
	if out, err := exec.Command(script, "status").CombinedOutput(); err != nil || !strings.Contains(string(out), "libvirtd: running (pid") || !strings.Contains(string(out), "started by ci/libvirtd.sh") {
		msg := fmt.Sprintf("libvirtd was not started by ci/libvirtd.sh, so the test will not restart it:\n%s", out)
		if os.Getenv("PODVISOR_ALLOW_SKIP") == "1" {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	h := newTestHypervisor(t)
	ctx := context.Background()
	name := fmt.Sprintf("podvisor-reconnect-%d", os.Getpid())
	x := testDomain(t, h, name)
	if _, err := h.Define(ctx, x); err != nil {
		t.Fatalf("Define: %v", err)
	}
	if err := h.Start(ctx, name); err != nil {
		t.Fatalf("Start: %v", err)
	}
	before, err := h.Status(ctx, name)
	if err != nil || before.State != hypervisor.StateRunning || before.PID == 0 {
		t.Fatalf("Status before the restart = %+v, %v", before, err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	watch := h.WatchStates(wctx)

	if out, err := exec.Command(script, "restart").CombinedOutput(); err != nil {
		t.Fatalf("ci/libvirtd.sh restart: %v\n%s", err, out)
	}

	// The first call after the restart finds the old connection dead,
	// reconnects and succeeds.
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	after, err := h.Status(cctx, name)
	if err != nil {
		t.Fatalf("Status after the libvirtd restart: %v", err)
	}
	if after.State != hypervisor.StateRunning || after.PID != before.PID {
		t.Errorf("after the restart: %+v, want running with PID %d", after, before.PID)
	}
	if !after.StartedAt.Equal(before.StartedAt) {
		t.Errorf("StartedAt changed across the restart: %v, then %v", before.StartedAt, after.StartedAt)
	}
	h.mu.Lock()
	gen := h.gen
	h.mu.Unlock()
	if gen < 2 {
		t.Errorf("connection generation %d: no reconnect happened", gen)
	}
	// Events were missed while libvirtd was away: watchers are told to
	// resync.
	waitNotice(t, watch, time.Minute, "a Resync after the reconnect", func(ev hypervisor.StateEvent) bool { return ev.Resync })
	wcancel()
	// Again, with the close callback silenced so that no background
	// reconnect happens: the next call must find the connection dead,
	// reconnect and retry by itself.
	h.mu.Lock()
	if h.conn != nil {
		_ = h.conn.UnregisterCloseCallback()
	}
	h.mu.Unlock()
	if out, err := exec.Command(script, "restart").CombinedOutput(); err != nil {
		t.Fatalf("second ci/libvirtd.sh restart: %v\n%s", err, out)
	}
	after, err = h.Status(cctx, name)
	if err != nil {
		t.Fatalf("Status after the second libvirtd restart: %v", err)
	}
	if after.State != hypervisor.StateRunning || after.PID != before.PID {
		t.Errorf("after the second restart: %+v, want running with PID %d", after, before.PID)
	}
	h.mu.Lock()
	gen2 := h.gen
	h.mu.Unlock()
	if gen2 <= gen {
		t.Errorf("connection generation %d after the second restart (was %d): the call did not reconnect", gen2, gen)
	}

	// libvirtd reattaches to the QEMU monitor in a background job after it
	// starts; a destroy racing with it is reported as reason "daemon".
	// Wait for the monitor to be free first.
	waitControlOK(t, h, name)
	if err := h.Destroy(cctx, name); err != nil {
		t.Fatalf("Destroy after the restart: %v", err)
	}
	st := waitStatus(t, h, name, time.Minute, "shut off", func(s hypervisor.DomainStatus) bool { return s.State == hypervisor.StateShutoff })
	if st.Reason != hypervisor.ReasonDestroyed || st.FinishedAt.IsZero() {
		t.Errorf("after Destroy: %+v, want destroyed with a finish time", st)
	}
}

// waitNotice reads watch until match accepts a notice.
func waitNotice(t *testing.T, watch <-chan hypervisor.StateEvent, d time.Duration, what string, match func(hypervisor.StateEvent) bool) {
	t.Helper()
	deadline := time.After(d)
	var seen []hypervisor.StateEvent
	for {
		select {
		case ev, ok := <-watch:
			if !ok {
				t.Fatalf("watch closed while waiting for %s; seen %+v", what, seen)
			}
			if match(ev) {
				return
			}
			seen = append(seen, ev)
		case <-deadline:
			t.Fatalf("no %s within %s; seen %+v", what, d, seen)
		}
	}
}

// TestLibvirtWatchStates proves that lifecycle events reach WatchStates,
// including changes made behind podvisor's back (virsh on the same
// libvirtd).
func TestLibvirtWatchStates(t *testing.T) {
	integration(t)
	needTool(t, "virsh")
	h := newTestHypervisor(t)
	ctx := context.Background()
	name := fmt.Sprintf("podvisor-watch-%d", os.Getpid())
	x := testDomain(t, h, name)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	watch := h.WatchStates(wctx)
	named := func(ev hypervisor.StateEvent) bool { return ev.Name == name }

	if _, err := h.Define(ctx, x); err != nil {
		t.Fatalf("Define: %v", err)
	}
	if err := h.Start(ctx, name); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitNotice(t, watch, time.Minute, "a notice of the start", named)
	// A start brings several events (started, resumed); let them pass so
	// that the next notice is the destroy's.
	waitStatus(t, h, name, time.Minute, "running", func(s hypervisor.DomainStatus) bool { return s.State == hypervisor.StateRunning })
	for quiet := false; !quiet; {
		select {
		case <-watch:
		case <-time.After(2 * time.Second):
			quiet = true
		}
	}

	// Destroyed from outside, as an operator or a crashed QEMU would.
	run(t, "virsh", "-c", h.uri, "destroy", name)
	waitNotice(t, watch, time.Minute, "a notice of the destroy from outside", named)
	st, err := h.Status(ctx, name)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.State != hypervisor.StateShutoff || st.Reason != hypervisor.ReasonDestroyed {
		t.Errorf("after the notice: %+v, want shut off, destroyed", st)
	}

	run(t, "virsh", "-c", h.uri, "undefine", name)
	waitNotice(t, watch, time.Minute, "a notice of the undefine from outside", named)

	wcancel()
	for range watch {
	}
	if n := h.watchers.Watches(); n != 0 {
		t.Errorf("Watches() = %d after the context ended, want 0", n)
	}
}

// waitControlOK waits until libvirt holds no job on the domain's monitor.
func waitControlOK(t *testing.T, h *Hypervisor, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		var state lv.DomainControlState = -1
		err := h.withDomain(ctx, "reading the control state of", name, func(d *lv.Domain) error {
			ci, err := d.GetControlInfo(0)
			if err == nil {
				state = ci.State
			}
			return err
		})
		if err == nil && state == lv.DOMAIN_CONTROL_OK {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("domain %s: the monitor stayed busy (control state %d, error %v)", name, state, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestLibvirtProbe runs the accelerator trial with TCG, which must pass on
// any machine: it proves the trial's mechanics (boot sector, serial file).
func TestLibvirtProbe(t *testing.T) {
	integration(t)
	h := newTestHypervisor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// In a directory of our own, as the DaemonSet's state dir: the marker
	// is read from the serial log QEMU writes there.
	h.probeDir = filepath.Join(t.TempDir(), "state", "kvm-probe")
	if err := h.ProbeDomainType(ctx, "qemu", 90*time.Second); err != nil {
		t.Fatalf("TCG trial domain: %v", err)
	}
	if left, err := os.ReadDir(h.probeDir); err != nil || len(left) != 0 {
		t.Errorf("probe dir %s after the trial: %v %v, want it empty", h.probeDir, left, err)
	}
	if h.DomainType() == "kvm" {
		if err := h.ProbeDomainType(ctx, "kvm", 30*time.Second); err != nil {
			t.Errorf("KVM was chosen but its trial fails now: %v", err)
		}
	}
	// The trial domain is gone.
	list, err := h.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range list {
		if strings.HasPrefix(d.Name, "podvisor-probe-") {
			t.Errorf("trial domain %s left behind", d.Name)
		}
	}
}

func TestLibvirtNewRejectsBadKVMMode(t *testing.T) {
	_, err := New(context.Background(), Options{KVM: "maybe"})
	if err == nil || !strings.Contains(err.Error(), `"maybe"`) {
		t.Errorf("New with KVM mode maybe: want an error naming the value, got %v", err)
	}
}

// TestLibvirtStartPaused: a domain started paused runs nothing until
// Unpause, so a console connected in between reads the guest's first line
// (QEMU's serial socket drops what is printed while nobody is connected).
func TestLibvirtStartPaused(t *testing.T) {
	integration(t)
	h := newTestHypervisor(t)
	ctx := context.Background()
	name := fmt.Sprintf("podvisor-paused-%d", os.Getpid())
	if _, err := h.Define(ctx, testDomain(t, h, name)); err != nil {
		t.Fatalf("Define: %v", err)
	}
	t.Cleanup(func() {
		_ = h.Destroy(context.Background(), name)
		_ = h.Undefine(context.Background(), name)
	})
	if err := h.StartPaused(ctx, name); err != nil {
		t.Fatalf("StartPaused: %v", err)
	}
	if st, err := h.Status(ctx, name); err != nil || st.State != hypervisor.StatePaused {
		t.Fatalf("status after StartPaused = %+v, %v; want paused", st, err)
	}
	con, err := h.Console(ctx, name)
	if err != nil {
		t.Fatalf("Console of the paused domain: %v", err)
	}
	defer con.Close()
	out := readConsole(con)
	time.Sleep(2 * time.Second)
	if s := out.String(); s != "" {
		t.Fatalf("a paused guest printed %q", s)
	}
	if err := h.Unpause(ctx, name); err != nil {
		t.Fatalf("Unpause: %v", err)
	}
	out.waitFor(t, "PODVISOR-GUEST: ready", bootDeadline)
	// The boot loader's banner is the guest's first console line.
	if !strings.HasPrefix(strings.TrimLeft(out.String(), "\r\n"), "SYSLINUX") {
		t.Errorf("the console does not begin with the boot loader's banner:\n%s", out.String())
	}
	if err := h.Unpause(ctx, name); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Errorf("Unpause of a running domain: %v, want ErrInvalidState", err)
	}
}
