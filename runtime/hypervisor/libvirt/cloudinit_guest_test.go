package libvirt

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podvisor/podvisor/runtime/cloudinit"
	"github.com/podvisor/podvisor/runtime/domain"
)

// TestCloudInitDriveInGuest boots the test guest on libvirt with drives
// written by runtime/cloudinit and checks, from the console and through the
// guest agent, that the guest applied them: hostname, user-data (a script,
// or cloud-config with files and the container environment), and the
// static network config (QEMU user networking's 10.0.2.15/24 via 10.0.2.2,
// given statically, so "net=static"), or DHCP when the pod forces it.
func TestCloudInitDriveInGuest(t *testing.T) {
	h := cloudInitTestHypervisor(t)

	// The guest reaches this server through its gateway: QEMU's user
	// networking maps 10.0.2.2 to the host's loopback.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s\n", strings.TrimPrefix(r.URL.Path, "/"))
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	port := l.Addr().(*net.TCPAddr).Port

	const mac = "52:54:00:5a:17:01"
	static := &cloudinit.NetworkInfo{Interfaces: []cloudinit.Interface{{
		Name: "eth0", MAC: mac,
		Addresses: []cloudinit.Address{{CIDR: "10.0.2.15/24", Gateway: "10.0.2.2"}},
	}}}
	dns := &cloudinit.DNSConfig{Servers: []string{"10.0.2.3"}, Searches: []string{"ci.example"}}
	tests := []struct {
		name string
		in   cloudinit.Input
		net  string // the marker the guest prints
		// cloudConfig: user-data is the generated #cloud-config (files,
		// environment) instead of a script.
		cloudConfig bool
	}{
		{"nocloud-v1", cloudinit.Input{Network: static, DNS: dns}, "net=static ip=10.0.2.15", false},
		{"nocloud-v2", cloudinit.Input{Network: static, DNS: dns, NetworkConfigVersion: 2}, "net=static ip=10.0.2.15", false},
		{"configdrive", cloudinit.Input{Network: static, DNS: dns, Type: cloudinit.ConfigDrive}, "net=static ip=10.0.2.15", false},
		{"forced-dhcp", cloudinit.Input{Network: static, DNS: dns, ForceDHCP: true}, "net=dhcp ip=10.0.2.15", false},
		{"cloud-config", cloudinit.Input{Network: static, DNS: dns,
			Env:   []cloudinit.EnvVar{{Name: "GREETING", Value: "hello world"}},
			Files: []cloudinit.GuestFile{{Path: "/etc/podvisor/secret", Content: []byte("s3cret\n"), Mode: 0o600}},
		}, "net=static ip=10.0.2.15", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			name := fmt.Sprintf("podvisor-ci-%s-%d", tt.name, os.Getpid())
			host := "ci-" + tt.name
			in := tt.in
			in.PodName, in.PodNamespace, in.Hostname = name, "default", host
			if !tt.cloudConfig {
				in.UserDataScript = "#!/bin/sh\necho USER-DATA-RAN as $(hostname)\n"
			}
			c, err := cloudinit.Generate(ctx, in, nil)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			x := cloudInitDomain(t, h, name, c, mac)
			con, out := bootGuest(ctx, t, h, name, x, "PODVISOR-GUEST: ready")
			defer con.Close()
			wants := []string{"PODVISOR-GUEST: hostname=" + host, "PODVISOR-GUEST: " + tt.net}
			if tt.cloudConfig {
				wants = append(wants, "cloud-config: wrote /etc/podvisor/secret")
			} else {
				wants = append(wants, "USER-DATA-RAN as "+host)
			}
			for _, want := range wants {
				if !strings.Contains(out.String(), want) {
					t.Errorf("console lacks %q:\n%s", want, out.String())
				}
			}

			// What the guest really configured, asked through its agent.
			routes := guestExec(t, h, name, "ip", "-4", "route")
			if !strings.Contains(routes, "default via 10.0.2.2 dev eth0") {
				t.Errorf("guest routes lack the default via 10.0.2.2:\n%s", routes)
			}
			addrs := guestExec(t, h, name, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
			if !strings.Contains(addrs, "inet 10.0.2.15/24") {
				t.Errorf("eth0 does not have 10.0.2.15/24:\n%s", addrs)
			}
			resolv := guestExec(t, h, name, "cat", "/etc/resolv.conf")
			if !strings.Contains(resolv, "nameserver 10.0.2.3") {
				t.Errorf("resolv.conf lacks the nameserver:\n%s", resolv)
			}
			if tt.net == "net=static ip=10.0.2.15" && !strings.Contains(resolv, "search ci.example") {
				t.Errorf("resolv.conf lacks the search domain of the drive:\n%s", resolv)
			}
			if got := guestExec(t, h, name, "hostname"); strings.TrimSpace(got) != host {
				t.Errorf("hostname in the guest = %q, want %q", got, host)
			}
			if tt.cloudConfig {
				if got := guestExec(t, h, name, "cat", "/etc/podvisor/secret"); got != "s3cret\n" {
					t.Errorf("/etc/podvisor/secret in the guest = %q", got)
				}
				if got := guestExec(t, h, name, "stat", "-c", "%a", "/etc/podvisor/secret"); strings.TrimSpace(got) != "600" {
					t.Errorf("/etc/podvisor/secret mode %q, want 600", got)
				}
				if got := guestExec(t, h, name, "sh", "-c", ". "+cloudinit.EnvFilePath+" && echo \"$GREETING\""); got != "hello world\n" {
					t.Errorf("the container environment in the guest gives GREETING=%q", got)
				}
			}
			// Through the gateway to the host and back. (busybox-static's
			// wget needs glibc's NSS libraries, which the guest lacks: nc.)
			got := guestExec(t, h, name, "sh", "-c", fmt.Sprintf("printf 'GET /%s HTTP/1.0\\r\\n\\r\\n' | nc -w 20 10.0.2.2 %d", tt.name, port))
			if !strings.HasSuffix(strings.TrimSpace(got), "hello "+tt.name) {
				t.Errorf("the guest fetched %q from the host through its gateway, want %q", got, "hello "+tt.name)
			}
		})
	}
}

// cloudInitTestHypervisor skips unless the libvirt integration tests run
// and a guest with a cloud-init drive can be made here (qemu-img, an ISO
// tool), and connects.
func cloudInitTestHypervisor(t *testing.T) *Hypervisor {
	t.Helper()
	integration(t)
	needTool(t, "qemu-img")
	if _, err := cloudinit.ISOTool(); err != nil {
		needTool(t, "genisoimage")
	}
	return newTestHypervisor(t)
}

// cloudInitDomain writes the drive c as an ISO and returns a domain (as
// domain.Build makes podvisor's) with an overlay of the test guest, the
// drive, a user-mode NIC with mac and the guest agent channel.
func cloudInitDomain(t *testing.T, h *Hypervisor, name string, c *cloudinit.Contents, mac string) string {
	t.Helper()
	return cloudInitDomainWith(t, h, name, c, mac, nil)
}

// cloudInitDomainWith is cloudInitDomain with the filesystems fss shared
// with the guest as runtime/domain shares them.
func cloudInitDomainWith(t *testing.T, h *Hypervisor, name string, c *cloudinit.Contents, mac string, fss []domain.Filesystem) string {
	t.Helper()
	base := testGuest(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "root.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, overlay)
	iso := filepath.Join(dir, "cloud-init.iso")
	if err := cloudinit.WriteISO(context.Background(), c, iso); err != nil {
		t.Fatalf("WriteISO: %v", err)
	}
	return buildTestDomain(t, h, testDomainSpec{name: name, dir: dir, overlay: overlay, iso: iso, mac: mac, fss: fss, agent: true})
}

// guestExec runs a command through the guest agent (guest-exec, then
// guest-exec-status until it has exited) and returns its output; it fails
// the test on a non-zero exit.
func guestExec(t *testing.T, h *Hypervisor, name string, cmd ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	call := func(req any) (json.RawMessage, error) {
		b, err := json.Marshal(req)
		if err != nil {
			return nil, err
		}
		raw, err := h.AgentCommand(ctx, name, string(b), 30*time.Second)
		if err != nil {
			return nil, err
		}
		var r struct {
			Return json.RawMessage `json:"return"`
		}
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return nil, fmt.Errorf("agent reply %q: %w", raw, err)
		}
		return r.Return, nil
	}
	var started struct{ PID int }
	for {
		// The agent connects a moment after boot: retry until it answers.
		ret, err := call(map[string]any{"execute": "guest-exec", "arguments": map[string]any{"path": cmd[0], "arg": cmd[1:], "capture-output": true}})
		if err == nil {
			if err := json.Unmarshal(ret, &started); err != nil {
				t.Fatalf("guest-exec %v: reply %s: %v", cmd, ret, err)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("guest-exec %v: %v", cmd, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	for {
		ret, err := call(map[string]any{"execute": "guest-exec-status", "arguments": map[string]any{"pid": started.PID}})
		if err != nil {
			t.Fatalf("guest-exec-status %v: %v", cmd, err)
		}
		var st struct {
			Exited   bool   `json:"exited"`
			ExitCode int    `json:"exitcode"`
			OutData  string `json:"out-data"`
			ErrData  string `json:"err-data"`
		}
		if err := json.Unmarshal(ret, &st); err != nil {
			t.Fatalf("guest-exec-status %v: reply %s: %v", cmd, ret, err)
		}
		if st.Exited {
			out, _ := base64.StdEncoding.DecodeString(st.OutData)
			errOut, _ := base64.StdEncoding.DecodeString(st.ErrData)
			if st.ExitCode != 0 {
				t.Errorf("%v in the guest exited %d: %s%s", cmd, st.ExitCode, out, errOut)
			}
			return string(out)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%v in the guest did not finish", cmd)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
