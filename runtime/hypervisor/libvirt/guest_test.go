package libvirt

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestGuestImage checks the test guest's contract with plain QEMU (TCG,
// user networking, a NoCloud ISO): markers, DHCP address, the hostname on
// port 8080 (twice), and power-off on the ACPI button.
func TestGuestImage(t *testing.T) {
	integration(t)
	needTool(t, "qemu-system-x86_64")
	needTool(t, "qemu-img")
	needTool(t, "genisoimage")
	base := testGuest(t)
	dir := t.TempDir()
	overlay := filepath.Join(dir, "root.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, overlay)
	seed := filepath.Join(dir, "seed")
	if err := os.Mkdir(seed, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(seed, "meta-data"), "instance-id: i-1\nlocal-hostname: guest-check\n")
	writeFile(t, filepath.Join(seed, "user-data"), "#!/bin/sh\necho USER-DATA-RAN as $(hostname)\n")
	iso := filepath.Join(dir, "seed.iso")
	run(t, "genisoimage", "-quiet", "-o", iso, "-V", "cidata", "-J", "-r", seed)

	port := freePort(t)
	serial := filepath.Join(dir, "serial.sock")
	monitor := filepath.Join(dir, "monitor.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-nodefaults",
		"-drive", "file="+overlay+",if=virtio,format=qcow2",
		"-drive", "file="+iso+",media=cdrom,format=raw",
		"-nic", fmt.Sprintf("user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:%d-:8080", port),
		"-chardev", "socket,id=ser0,path="+serial+",server=on,wait=on",
		"-serial", "chardev:ser0",
		"-monitor", "unix:"+monitor+",server=on,wait=off")
	var qemuOut strings.Builder
	cmd.Stdout, cmd.Stderr = &qemuOut, &qemuOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting QEMU: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
	}()

	// QEMU waits for the serial client before it runs the guest.
	var con net.Conn
	for deadline := time.Now().Add(time.Minute); ; {
		c, err := net.Dial("unix", serial)
		if err == nil {
			con = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("QEMU's serial socket did not appear: %v\n%s", err, qemuOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer con.Close()
	out := readConsole(con)
	out.waitFor(t, "PODVISOR-GUEST: ready", bootDeadline)
	for _, want := range []string{
		"PODVISOR-GUEST: hostname=guest-check",
		"PODVISOR-GUEST: ip=10.0.2.15", // QEMU's user-mode DHCP server
		"USER-DATA-RAN as guest-check",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, out.String())
		}
	}

	// Port 8080 answers with the hostname, again and again.
	for i := 0; i < 2; i++ {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
		if err != nil {
			t.Fatalf("connecting to the guest's port 8080: %v", err)
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil || strings.TrimSpace(string(b)) != "guest-check" {
			t.Errorf("port 8080, connection %d: got %q, %v; want the hostname", i+1, b, err)
		}
	}

	// ACPI power button (what virsh shutdown presses): the guest powers off.
	m, err := net.Dial("unix", monitor)
	if err != nil {
		t.Fatalf("connecting to the QEMU monitor: %v", err)
	}
	defer m.Close()
	if _, err := io.WriteString(m, "system_powerdown\n"); err != nil {
		t.Fatalf("system_powerdown: %v", err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("QEMU exited with %v after the power button:\n%s", err, qemuOut.String())
		}
	case <-time.After(shutdownDeadline):
		t.Fatalf("the guest did not power off within %s; console:\n%s", shutdownDeadline, out.String())
	}
	if !strings.Contains(out.String(), "ACPI power button") {
		t.Errorf("console does not show the ACPI handler ran:\n%s", out.String())
	}
}
