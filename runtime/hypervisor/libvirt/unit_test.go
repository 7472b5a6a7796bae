package libvirt

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"
)

func TestMapState(t *testing.T) {
	tests := []struct {
		state      lv.DomainState
		reason     int
		wantState  hypervisor.State
		wantReason hypervisor.Reason
	}{
		{lv.DOMAIN_RUNNING, int(lv.DOMAIN_RUNNING_BOOTED), hypervisor.StateRunning, hypervisor.ReasonBooted},
		{lv.DOMAIN_RUNNING, int(lv.DOMAIN_RUNNING_UNPAUSED), hypervisor.StateRunning, "unpaused"},
		{lv.DOMAIN_BLOCKED, 0, hypervisor.StateRunning, hypervisor.ReasonUnknown},
		{lv.DOMAIN_PAUSED, int(lv.DOMAIN_PAUSED_USER), hypervisor.StatePaused, hypervisor.ReasonUser},
		{lv.DOMAIN_PAUSED, int(lv.DOMAIN_PAUSED_CRASHED), hypervisor.StatePaused, hypervisor.ReasonCrashed},
		{lv.DOMAIN_PAUSED, int(lv.DOMAIN_PAUSED_IOERROR), hypervisor.StatePaused, "ioerror"},
		{lv.DOMAIN_PMSUSPENDED, 0, hypervisor.StatePaused, "pmsuspended"},
		{lv.DOMAIN_SHUTDOWN, int(lv.DOMAIN_SHUTDOWN_USER), hypervisor.StateShutdown, hypervisor.ReasonUser},
		{lv.DOMAIN_SHUTOFF, int(lv.DOMAIN_SHUTOFF_UNKNOWN), hypervisor.StateShutoff, hypervisor.ReasonDefined},
		{lv.DOMAIN_SHUTOFF, int(lv.DOMAIN_SHUTOFF_SHUTDOWN), hypervisor.StateShutoff, hypervisor.ReasonShutdown},
		{lv.DOMAIN_SHUTOFF, int(lv.DOMAIN_SHUTOFF_DESTROYED), hypervisor.StateShutoff, hypervisor.ReasonDestroyed},
		{lv.DOMAIN_SHUTOFF, int(lv.DOMAIN_SHUTOFF_CRASHED), hypervisor.StateShutoff, hypervisor.ReasonCrashed},
		{lv.DOMAIN_SHUTOFF, int(lv.DOMAIN_SHUTOFF_FAILED), hypervisor.StateShutoff, hypervisor.ReasonFailed},
		{lv.DOMAIN_SHUTOFF, int(lv.DOMAIN_SHUTOFF_DAEMON), hypervisor.StateShutoff, "daemon"},
		{lv.DOMAIN_CRASHED, int(lv.DOMAIN_CRASHED_PANICKED), hypervisor.StateCrashed, "panicked"},
		{lv.DOMAIN_CRASHED, int(lv.DOMAIN_CRASHED_UNKNOWN), hypervisor.StateCrashed, hypervisor.ReasonCrashed},
		{lv.DOMAIN_NOSTATE, 0, hypervisor.StateUnknown, hypervisor.ReasonUnknown},
	}
	for _, tc := range tests {
		st, r := mapState(tc.state, tc.reason)
		if st != tc.wantState || r != tc.wantReason {
			t.Errorf("mapState(%d, %d) = %s, %q; want %s, %q", tc.state, tc.reason, st, r, tc.wantState, tc.wantReason)
		}
	}
}

func TestExitCode(t *testing.T) {
	tests := map[hypervisor.Reason]int32{
		hypervisor.ReasonShutdown:  0,
		hypervisor.ReasonDestroyed: 137,
		hypervisor.ReasonCrashed:   139,
		"panicked":                 139,
		hypervisor.ReasonFailed:    1,
		"saved":                    1,
	}
	for r, want := range tests {
		if got := exitCode(r); got != want {
			t.Errorf("exitCode(%q) = %d, want %d", r, got, want)
		}
	}
}

func TestRecorderFill(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	hint := t0.Add(-time.Minute)
	later := t0.Add(time.Hour)
	tests := []struct {
		name   string
		events func(r *recorder)
		in     hypervisor.DomainStatus
		hint   time.Time
		want   hypervisor.DomainStatus
	}{{
		name: "defined, never seen running",
		in:   hypervisor.DomainStatus{Name: "d", State: hypervisor.StateShutoff, Reason: hypervisor.ReasonDefined},
		want: hypervisor.DomainStatus{Name: "d", State: hypervisor.StateShutoff, Reason: hypervisor.ReasonDefined},
	}, {
		name:   "running after an observed start",
		events: func(r *recorder) { r.started("d", t0) },
		in:     hypervisor.DomainStatus{Name: "d", State: hypervisor.StateRunning, Reason: hypervisor.ReasonBooted},
		hint:   hint,
		want:   hypervisor.DomainStatus{Name: "d", State: hypervisor.StateRunning, Reason: hypervisor.ReasonBooted, StartedAt: t0},
	}, {
		name: "running, start not seen: the pid file's time",
		in:   hypervisor.DomainStatus{Name: "d", State: hypervisor.StateRunning, Reason: hypervisor.ReasonBooted},
		hint: hint,
		want: hypervisor.DomainStatus{Name: "d", State: hypervisor.StateRunning, Reason: hypervisor.ReasonBooted, StartedAt: hint},
	}, {
		name:   "running, start not seen, no hint: now",
		events: func(r *recorder) { r.now = func() time.Time { return later } },
		in:     hypervisor.DomainStatus{Name: "d", State: hypervisor.StateRunning},
		want:   hypervisor.DomainStatus{Name: "d", State: hypervisor.StateRunning, StartedAt: later},
	}, {
		name:   "a second start event of the same run keeps the first time",
		events: func(r *recorder) { r.started("d", t0); r.started("d", later) },
		in:     hypervisor.DomainStatus{Name: "d", State: hypervisor.StateRunning},
		want:   hypervisor.DomainStatus{Name: "d", State: hypervisor.StateRunning, StartedAt: t0},
	}, {
		name: "shut down after running",
		events: func(r *recorder) {
			r.started("d", t0)
			r.stopped("d", later, hypervisor.ReasonShutdown)
		},
		in:   hypervisor.DomainStatus{Name: "d", State: hypervisor.StateShutoff, Reason: hypervisor.ReasonShutdown},
		want: hypervisor.DomainStatus{Name: "d", State: hypervisor.StateShutoff, Reason: hypervisor.ReasonShutdown, StartedAt: t0, FinishedAt: later, ExitCode: 0},
	}, {
		name: "destroyed",
		events: func(r *recorder) {
			r.started("d", t0)
			r.stopped("d", later, hypervisor.ReasonDestroyed)
		},
		in:   hypervisor.DomainStatus{Name: "d", State: hypervisor.StateShutoff, Reason: hypervisor.ReasonDestroyed},
		want: hypervisor.DomainStatus{Name: "d", State: hypervisor.StateShutoff, Reason: hypervisor.ReasonDestroyed, StartedAt: t0, FinishedAt: later, ExitCode: 137},
	}, {
		name: "libvirtd forgot the reason after a restart: the recorded one",
		events: func(r *recorder) {
			r.started("d", t0)
			r.stopped("d", later, hypervisor.ReasonCrashed)
		},
		in:   hypervisor.DomainStatus{Name: "d", State: hypervisor.StateShutoff, Reason: hypervisor.ReasonDefined},
		want: hypervisor.DomainStatus{Name: "d", State: hypervisor.StateShutoff, Reason: hypervisor.ReasonCrashed, StartedAt: t0, FinishedAt: later, ExitCode: 139},
	}, {
		name: "stop event missed: dated by the first observation",
		events: func(r *recorder) {
			r.started("d", t0)
			r.now = func() time.Time { return later }
		},
		in:   hypervisor.DomainStatus{Name: "d", State: hypervisor.StateShutoff, Reason: hypervisor.ReasonShutdown},
		want: hypervisor.DomainStatus{Name: "d", State: hypervisor.StateShutoff, Reason: hypervisor.ReasonShutdown, StartedAt: t0, FinishedAt: later},
	}, {
		name: "restarted after a stop",
		events: func(r *recorder) {
			r.started("d", t0)
			r.stopped("d", t0.Add(time.Second), hypervisor.ReasonShutdown)
			r.started("d", later)
		},
		in:   hypervisor.DomainStatus{Name: "d", State: hypervisor.StateRunning},
		want: hypervisor.DomainStatus{Name: "d", State: hypervisor.StateRunning, StartedAt: later},
	}, {
		name: "forgotten after undefine",
		events: func(r *recorder) {
			r.started("d", t0)
			r.stopped("d", later, hypervisor.ReasonShutdown)
			r.forget("d")
		},
		in:   hypervisor.DomainStatus{Name: "d", State: hypervisor.StateShutoff, Reason: hypervisor.ReasonDefined},
		want: hypervisor.DomainStatus{Name: "d", State: hypervisor.StateShutoff, Reason: hypervisor.ReasonDefined},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder()
			r.now = func() time.Time { return t0.Add(42 * time.Second) }
			if tc.events != nil {
				tc.events(r)
			}
			got := tc.in
			r.fill(&got, tc.hint)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("fill (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWrapErr(t *testing.T) {
	tests := []struct {
		code lv.ErrorNumber
		kind error
	}{
		{lv.ERR_NO_DOMAIN, hypervisor.ErrNotFound},
		{lv.ERR_OPERATION_INVALID, hypervisor.ErrInvalidState},
		{lv.ERR_XML_ERROR, errdefs.ErrInvalidArgument},
		{lv.ERR_XML_DETAIL, errdefs.ErrInvalidArgument},
		{lv.ERR_AGENT_UNRESPONSIVE, errdefs.ErrUnavailable},
		{lv.ERR_RPC, errdefs.ErrUnavailable},
	}
	for _, tc := range tests {
		err := wrapErr(`starting domain "x"`, lv.Error{Code: tc.code, Message: "libvirt said no"})
		if !errors.Is(err, tc.kind) {
			t.Errorf("code %d: %v is not %v", tc.code, err, tc.kind)
		}
		var le lv.Error
		if !errors.As(err, &le) || le.Code != tc.code {
			t.Errorf("code %d: libvirt's error is not in the chain of %v", tc.code, err)
		}
		if !strings.Contains(err.Error(), `starting domain "x"`) || !strings.Contains(err.Error(), "libvirt said no") {
			t.Errorf("code %d: message %q lacks the operation or libvirt's message", tc.code, err)
		}
	}
	err := wrapErr("x", lv.Error{Code: lv.ERR_INTERNAL_ERROR, Message: "boom"})
	for _, k := range []error{hypervisor.ErrNotFound, hypervisor.ErrInvalidState, errdefs.ErrInvalidArgument} {
		if errors.Is(err, k) {
			t.Errorf("internal error classified as %v", k)
		}
	}
	if wrapErr("x", nil) != nil {
		t.Error("wrapErr(nil) is not nil")
	}
	// Errors podvisor made keep their kind.
	if err := wrapErr("x", hypervisor.ErrInvalidState); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Errorf("wrapErr lost the kind: %v", err)
	}
}

func TestConsoleSocket(t *testing.T) {
	mk := func(serials ...libvirtxml.DomainSerial) string {
		d := libvirtxml.Domain{Type: "qemu", Name: "d", Devices: &libvirtxml.DomainDeviceList{Serials: serials}}
		x, err := d.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	unix := func(mode, path string) libvirtxml.DomainSerial {
		return libvirtxml.DomainSerial{Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: mode, Path: path}}}
	}
	pty := libvirtxml.DomainSerial{Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}}}

	if got, err := consoleSocket(mk(pty, unix("bind", "/run/x.sock"))); err != nil || got != "/run/x.sock" {
		t.Errorf("bind socket: got %q, %v", got, err)
	}
	if _, err := consoleSocket(mk(unix("connect", "/run/x.sock"))); !errors.Is(err, hypervisor.ErrUnimplemented) {
		t.Errorf("connect-mode socket: want ErrUnimplemented, got %v", err)
	}
	if _, err := consoleSocket(mk(pty)); !errors.Is(err, hypervisor.ErrUnimplemented) {
		t.Errorf("pty only: want ErrUnimplemented, got %v", err)
	}
	if _, err := consoleSocket("<domain"); err == nil {
		t.Error("bad XML: no error")
	}
}

func TestDisplaySocket(t *testing.T) {
	mk := func(g ...libvirtxml.DomainGraphic) string {
		d := libvirtxml.Domain{Type: "qemu", Name: "d", Devices: &libvirtxml.DomainDeviceList{Graphics: g}}
		x, err := d.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	listener := func(path string) []libvirtxml.DomainGraphicListener {
		return []libvirtxml.DomainGraphicListener{{Socket: &libvirtxml.DomainGraphicListenerSocket{Socket: path}}}
	}
	tcp := libvirtxml.DomainGraphic{VNC: &libvirtxml.DomainGraphicVNC{Port: 5900, Listen: "127.0.0.1"}}
	for _, tc := range []struct {
		name string
		xml  string
		want string
	}{
		{"socket attribute", mk(libvirtxml.DomainGraphic{VNC: &libvirtxml.DomainGraphicVNC{Socket: "/vm/vnc.sock", Listeners: listener("/vm/vnc.sock")}}), "/vm/vnc.sock"},
		{"listener only (the live XML of an autogenerated socket)", mk(libvirtxml.DomainGraphic{VNC: &libvirtxml.DomainGraphicVNC{Listeners: listener("/run/libvirt/qemu/d.vnc")}}), "/run/libvirt/qemu/d.vnc"},
		{"after a SPICE display", mk(libvirtxml.DomainGraphic{Spice: &libvirtxml.DomainGraphicSpice{}}, libvirtxml.DomainGraphic{VNC: &libvirtxml.DomainGraphicVNC{Socket: "/vm/vnc.sock"}}), "/vm/vnc.sock"},
	} {
		if got, err := displaySocket(tc.xml); err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	for name, x := range map[string]string{"TCP only": mk(tcp), "no graphics": mk()} {
		if _, err := displaySocket(x); !errors.Is(err, hypervisor.ErrUnimplemented) {
			t.Errorf("%s: want ErrUnimplemented, got %v", name, err)
		}
	}
	if _, err := displaySocket("<domain"); err == nil {
		t.Error("bad XML: no error")
	}
}

func TestMemoryStats(t *testing.T) {
	fallback := hypervisor.MemoryStats{WorkingSetBytes: 7, UsageBytes: 7}
	tests := []struct {
		name string
		b    lv.DomainStatsBalloon
		want hypervisor.MemoryStats
	}{
		{"guest reports usable", lv.DomainStatsBalloon{AvailableSet: true, Available: 1000, UnusedSet: true, Unused: 400, UsableSet: true, Usable: 700, RssSet: true, Rss: 900, DiskCachesSet: true, DiskCaches: 250},
			hypervisor.MemoryStats{FromGuest: true, WorkingSetBytes: 300 << 10, UsageBytes: 600 << 10, CacheBytes: 250 << 10, RSSBytes: 900 << 10}},
		{"guest without usable", lv.DomainStatsBalloon{AvailableSet: true, Available: 1000, UnusedSet: true, Unused: 400, RssSet: true, Rss: 900},
			hypervisor.MemoryStats{FromGuest: true, WorkingSetBytes: 600 << 10, UsageBytes: 600 << 10, RSSBytes: 900 << 10}},
		{"rss only", lv.DomainStatsBalloon{RssSet: true, Rss: 900},
			hypervisor.MemoryStats{WorkingSetBytes: 900 << 10, UsageBytes: 900 << 10, RSSBytes: 900 << 10}},
		{"unused above available", lv.DomainStatsBalloon{AvailableSet: true, Available: 10, UnusedSet: true, Unused: 400}, fallback},
		{"nothing", lv.DomainStatsBalloon{}, fallback},
	}
	for _, tc := range tests {
		if got := memoryStats(&tc.b, fallback); got != tc.want {
			t.Errorf("%s: memoryStats = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestAllocatedBytes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "overlay")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := allocatedBytes(p); got < 1<<20 {
		t.Errorf("allocatedBytes of a 1 MiB written file = %d, want at least 1 MiB", got)
	}
	sparse := filepath.Join(t.TempDir(), "sparse")
	if err := os.WriteFile(sparse, nil, 0o600); err != nil || os.Truncate(sparse, 1<<30) != nil {
		t.Fatal("making a sparse file")
	}
	if got := allocatedBytes(sparse); got >= 1<<20 {
		t.Errorf("allocatedBytes of an empty 1 GiB sparse file = %d, want what it holds (near 0)", got)
	}
	if got := allocatedBytes(filepath.Join(t.TempDir(), "missing")); got != 0 {
		t.Errorf("allocatedBytes of a missing file = %d", got)
	}
}

func TestKVMHostProblem(t *testing.T) {
	dir := t.TempDir()
	dev := filepath.Join(dir, "kvm")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	vmx := write("cpuinfo-vmx", "processor\t: 0\nflags\t\t: fpu vme vmx sse2\n")
	svm := write("cpuinfo-svm", "processor\t: 0\nflags\t\t: fpu svm lm\n")
	none := write("cpuinfo-none", "processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor\nvmx flags\t: ept\n")
	pvm := filepath.Join(dir, "kvm_pvm")
	noPVM := filepath.Join(dir, "absent")
	if err := os.Mkdir(pvm, 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, dev, cpuinfo, pvm string
		wantProblem             string // substring; "" for none
	}{
		{"vmx", dev, vmx, noPVM, ""},
		{"svm", dev, svm, noPVM, ""},
		{"no hardware virtualization", dev, none, noPVM, "no vmx or svm"},
		{"PVM", dev, vmx, pvm, "PVM"},
		{"no /dev/kvm", filepath.Join(dir, "missing"), vmx, noPVM, "cannot open"},
	}
	for _, tc := range tests {
		got := kvmHostProblem(tc.dev, tc.cpuinfo, tc.pvm)
		if (tc.wantProblem == "") != (got == "") || !strings.Contains(got, tc.wantProblem) {
			t.Errorf("%s: kvmHostProblem = %q, want a problem containing %q", tc.name, got, tc.wantProblem)
		}
	}
}

func TestProbeDomainXML(t *testing.T) {
	x, err := probeDomainXML("probe", "kvm", "/tmp/boot.img", "/tmp/serial.log")
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	if d.Type != "kvm" || d.Name != "probe" || len(d.Devices.Disks) != 1 || d.Devices.Disks[0].Source.File.File != "/tmp/boot.img" ||
		len(d.Devices.Serials) != 1 || d.Devices.Serials[0].Source.File.Path != "/tmp/serial.log" {
		t.Errorf("probe domain XML does not say what was asked:\n%s", x)
	}
	if len(kvmProbeBoot) != 512 || kvmProbeBoot[510] != 0x55 || kvmProbeBoot[511] != 0xaa {
		t.Errorf("embedded boot sector is %d bytes without the 0x55AA signature", len(kvmProbeBoot))
	}
	if !strings.Contains(string(kvmProbeBoot), kvmProbeMarker) {
		t.Errorf("embedded boot sector does not print %q", kvmProbeMarker)
	}
}

// TestProbeFiles: the KVM trial's files live under Options.ProbeDir (which
// the DaemonSet puts in the state dir, seen by libvirtd's container too),
// a directory that is created when missing and removed afterwards.
func TestProbeFiles(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "state", "kvm-probe")
	boot, serial, cleanup, err := probeFiles(parent)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(boot)
	if filepath.Dir(dir) != parent || filepath.Dir(serial) != dir {
		t.Errorf("probe files %s and %s: want both in one directory under %s", boot, serial, parent)
	}
	if b, err := os.ReadFile(boot); err != nil || string(b) != string(kvmProbeBoot) {
		t.Errorf("boot sector at %s: %v, %d bytes; want the embedded %d", boot, err, len(b), len(kvmProbeBoot))
	}
	cleanup()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after cleanup %s: %v, want it gone", dir, err)
	}
	if _, err := os.Stat(parent); err != nil {
		t.Errorf("the probe dir itself must stay: %v", err)
	}

	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := probeFiles(filepath.Join(file, "sub")); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("probe dir under a regular file: %v, want an error naming the path", err)
	}
}

// TestChooseAcceleratorLogs: in auto mode a node whose /dev/kvm is unusable
// says why at warning level; a node without one at info level; the
// configured modes need no trial.
func TestChooseAcceleratorLogs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dev := write("kvm", "")
	noVirt := write("cpuinfo", "processor\t: 0\nflags\t\t: fpu sse2 hypervisor\n")
	vmx := write("cpuinfo-vmx", "processor\t: 0\nflags\t\t: fpu vmx\n")
	pvm := filepath.Join(dir, "kvm_pvm")
	if err := os.Mkdir(pvm, 0o755); err != nil {
		t.Fatal(err)
	}
	absent := filepath.Join(dir, "absent")
	tests := []struct {
		name, mode string
		host       kvmHost
		accel      string
		level      string // of the log line; "" for none
		why        string
	}{
		{"no /dev/kvm", KVMAuto, kvmHost{absent, vmx, absent}, "tcg", "INFO", "no " + absent},
		{"no vmx/svm", KVMAuto, kvmHost{dev, noVirt, absent}, "tcg", "WARN", "no vmx or svm"},
		{"PVM", KVMAuto, kvmHost{dev, vmx, pvm}, "tcg", "WARN", "PVM"},
		{"off", KVMOff, kvmHost{dev, vmx, absent}, "tcg", "", "turned off"},
		{"on", KVMOn, kvmHost{absent, noVirt, absent}, "kvm", "", "forced on"},
	}
	for _, tc := range tests {
		var buf strings.Builder
		h := &Hypervisor{log: slog.New(slog.NewTextHandler(&buf, nil)), kvmHost: tc.host}
		if err := h.chooseAccelerator(context.Background(), tc.mode, time.Second); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if h.Accelerator() != tc.accel || !strings.Contains(h.AcceleratorReason(), tc.why) {
			t.Errorf("%s: accelerator %s (%q), want %s because %q", tc.name, h.Accelerator(), h.AcceleratorReason(), tc.accel, tc.why)
		}
		logged := buf.String()
		if tc.level == "" && logged != "" || tc.level != "" && (!strings.Contains(logged, "level="+tc.level) || !strings.Contains(logged, tc.why)) {
			t.Errorf("%s: logged %q, want a %q line with the reason", tc.name, logged, tc.level)
		}
		if tc.level == "INFO" && strings.Contains(logged, "level=WARN") {
			t.Errorf("%s: a node without /dev/kvm warned: %q", tc.name, logged)
		}
	}
}
