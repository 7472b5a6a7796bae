package libvirt

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
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
// user networking, a NoCloud ISO without network config): markers, DHCP
// address, the hostname on port 8080 (twice), the guest agent on its virtio
// port spoken to directly (guest-sync-delimited, guest-exec with input,
// guest-exec-status), and power-off on the ACPI button.
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
	agentSock := filepath.Join(dir, "agent.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-nodefaults",
		"-drive", "file="+overlay+",if=virtio,format=qcow2",
		"-drive", "file="+iso+",media=cdrom,format=raw",
		"-nic", fmt.Sprintf("user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:%d-:8080", port),
		"-chardev", "socket,id=ser0,path="+serial+",server=on,wait=on",
		"-serial", "chardev:ser0",
		"-monitor", "unix:"+monitor+",server=on,wait=off",
		"-chardev", "socket,id=qga0,path="+agentSock+",server=on,wait=off",
		"-device", "virtio-serial", "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0")
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
	// The agent runs in the background and says so when it has found its
	// port, which can be just after "ready" under TCG.
	out.waitFor(t, "PODVISOR-GUEST: agent=/dev/vport", 30*time.Second)
	for _, want := range []string{
		"PODVISOR-GUEST: hostname=guest-check",
		"PODVISOR-GUEST: net=dhcp ip=10.0.2.15", // QEMU's user-mode DHCP server
		"PODVISOR-GUEST: ip=10.0.2.15",
		"PODVISOR-GUEST: agent=/dev/vport",
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

	checkAgent(t, agentSock)

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

// checkAgent speaks the QEMU guest agent protocol to the guest directly, as
// libvirt does: a 0xFF flush and guest-sync-delimited (the reply starts with
// 0xFF), then guest-exec with input and guest-exec-status until it exits.
func checkAgent(t *testing.T, sock string) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("connecting to the guest agent socket: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	r := bufio.NewReader(c)
	send := func(req string) {
		t.Helper()
		if _, err := io.WriteString(c, req+"\n"); err != nil {
			t.Fatalf("sending %s: %v", req, err)
		}
	}
	reply := func() map[string]any {
		t.Helper()
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				t.Fatalf("reading the agent's reply: %v (got %q)", err, line)
			}
			line = bytes.TrimLeft(line, "\xff")
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("agent reply %q: %v", line, err)
			}
			return m
		}
	}
	if _, err := c.Write([]byte{0xFF}); err != nil {
		t.Fatal(err)
	}
	send(`{"execute":"guest-sync-delimited","arguments":{"id":4242}}`)
	b, err := r.ReadByte()
	if err != nil || b != 0xFF {
		t.Fatalf("guest-sync-delimited: want the 0xFF delimiter first, got %q, %v", b, err)
	}
	if m := reply(); m["return"] != 4242.0 {
		t.Fatalf("guest-sync-delimited: %v, want return 4242", m)
	}
	input := base64.StdEncoding.EncodeToString([]byte("piped in\n"))
	send(`{"execute":"guest-exec","arguments":{"path":"sh","arg":["-c","cat; hostname; exit 4"],"input-data":"` + input + `","capture-output":true}}`)
	m := reply()
	ret, _ := m["return"].(map[string]any)
	pid, ok := ret["pid"].(float64)
	if !ok {
		t.Fatalf("guest-exec: %v", m)
	}
	for {
		send(fmt.Sprintf(`{"execute":"guest-exec-status","arguments":{"pid":%d}}`, int(pid)))
		st, _ := reply()["return"].(map[string]any)
		if st["exited"] == true {
			out, _ := base64.StdEncoding.DecodeString(fmt.Sprint(st["out-data"]))
			if st["exitcode"] != 4.0 || string(out) != "piped in\nguest-check\n" {
				t.Errorf("guest-exec-status = %v (out %q), want exit code 4 and the input then the hostname", st, out)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
