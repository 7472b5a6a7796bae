package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/internal/rfb"
	"github.com/podvisor/podvisor/runtime/annotations"
	"github.com/podvisor/podvisor/runtime/domain"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// TestLibvirtDisplay: the display of a domain as runtime/domain builds it
// answers an RFB handshake on its unix socket (security None, a
// framebuffer size), QEMU listens on no TCP port, several clients can
// connect, and the connection ends when the domain stops.
func TestLibvirtDisplay(t *testing.T) {
	integration(t)
	needTool(t, "qemu-img")
	h := newTestHypervisor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	name := fmt.Sprintf("podvisor-vnc-%d", os.Getpid())
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "root.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", testGuest(t), overlay)
	vm, err := annotations.Parse(nil, annotations.Resources{MemoryLimitBytes: 256 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "vnc.sock")
	d, err := domain.Build(domain.Input{
		Name: name, PodUID: "6f1e0c9a-1b2c-4d3e-8f40-5a6b7c8d9e0f", PodName: "vnc", PodNamespace: "default", ContainerName: "vm",
		DomainType: h.DomainType(), VM: vm, RootDisk: domain.Disk{Path: overlay, Format: domain.FormatQCOW2},
		ConsoleSocket: filepath.Join(dir, "console.sock"), DisplaySocket: socket,
	})
	if err != nil {
		t.Fatal(err)
	}
	x, err := domain.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = h.Destroy(ctx, name)
		_ = h.Undefine(ctx, name)
	})
	if _, err := h.Define(ctx, x); err != nil {
		t.Fatalf("Define: %v", err)
	}
	if _, err := h.Display(ctx, name); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Errorf("Display of a shut off domain: %v, want ErrInvalidState", err)
	}
	if err := h.Start(ctx, name); err != nil {
		t.Fatalf("Start: %v", err)
	}

	var first rfb.ServerInit
	var conns []io.ReadWriteCloser
	for i := range 2 {
		c, err := h.Display(ctx, name)
		if err != nil {
			t.Fatalf("Display %d: %v", i, err)
		}
		conns = append(conns, c)
		hctx, hcancel := context.WithTimeout(ctx, 30*time.Second)
		si, err := rfb.Handshake(hctx, c)
		hcancel()
		if err != nil {
			t.Fatalf("RFB handshake %d on %s: %v", i, socket, err)
		}
		t.Logf("display %d: %+v", i, si)
		if !strings.HasPrefix(si.Version, "RFB 003.") || si.Width == 0 || si.Height == 0 || si.Name == "" {
			t.Errorf("ServerInit %+v: want a 3.x server with a framebuffer size and the VM's name", si)
		}
		first = si
	}
	if !strings.Contains(first.Name, name) {
		t.Errorf("desktop name %q does not name the domain %s", first.Name, name)
	}
	live, err := h.XML(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	checkNoTCPDisplay(t, live)
	st, err := h.Status(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if ports := tcpListeners(t, st.PID); len(ports) > 0 {
		t.Errorf("QEMU (pid %d) listens on TCP: %v", st.PID, ports)
	}

	if err := h.Destroy(ctx, name); err != nil {
		t.Fatal(err)
	}
	if nc, ok := conns[0].(net.Conn); ok {
		_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	}
	if _, err := conns[0].Read(make([]byte, 1)); err == nil {
		t.Error("the display connection is open after the domain stopped")
	}
	for _, c := range conns {
		c.Close()
	}
}

// checkNoTCPDisplay: the running domain's graphics listen on the socket
// alone.
func checkNoTCPDisplay(t *testing.T, live string) {
	t.Helper()
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(live); err != nil {
		t.Fatal(err)
	}
	for _, g := range dom.Devices.Graphics {
		if g.VNC == nil {
			t.Errorf("graphics %+v: want VNC only", g)
			continue
		}
		if g.VNC.Port > 0 || g.VNC.Listen != "" || g.VNC.WebSocket > 0 {
			t.Errorf("live VNC graphics %+v has a TCP port or address", g.VNC)
		}
		for _, l := range g.VNC.Listeners {
			if l.Socket == nil {
				t.Errorf("live VNC listener %+v is not a socket", l)
			}
		}
	}
}

// tcpListeners lists the TCP sockets in LISTEN state the process holds
// (its descriptors' inodes against /proc/PID/net/tcp and tcp6).
func tcpListeners(t *testing.T, pid int) []string {
	t.Helper()
	if pid == 0 {
		t.Fatal("no QEMU PID")
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			// sl local rem st ... inode is field 9; st 0A is LISTEN.
			if len(fields) > 9 && fields[3] == "0A" && inodes[fields[9]] {
				out = append(out, f+" "+fields[1])
			}
		}
	}
	return out
}
