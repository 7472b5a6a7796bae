package daemon

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"libvirt.org/go/libvirtxml"
	"sigs.k8s.io/yaml"

	"github.com/podvisor/podvisor/internal/syncbuf"
)

func TestSocketIsOwnerAndGroupOnly(t *testing.T) {
	h := newHarness(t)
	path, _ := SocketPath(h.cfg.Listen)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket %s mode %v, want a socket with 0660", path, fi.Mode())
	}
	// A second daemon on the same socket is refused while the first runs.
	cfg := h.cfg
	cfg.StateDir = filepath.Join(h.dir, "state2")
	if d, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
		d.Stop(0)
		t.Error("a second daemon took over a socket in use")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Errorf("second daemon: %v, want an 'in use' error", err)
	}
}

func TestListenRefusesToReplaceAFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "important")
	os.WriteFile(file, []byte("data"), 0o600)
	if _, err := listenUnix("unix://"+file, 0o660); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("listening over a regular file: %v", err)
	}
	if data, _ := os.ReadFile(file); string(data) != "data" {
		t.Error("the file was replaced")
	}
	// A stale socket (its daemon was killed) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l2, err := listenUnix("unix://"+stale, 0o660)
	if err != nil {
		t.Fatalf("replacing a stale socket: %v", err)
	}
	l2.Close()
}

// Pod-supplied strings cannot add XML elements to the domain nor keys to
// cloud-init, and secrets in annotations, the environment or a secret
// volume never reach the log.
func TestNoInjectionNoSecretInLog(t *testing.T) {
	h := &harness{}
	*h = *newHarnessWithLogs(t)
	c := ctx(t)
	if _, err := h.img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}}); err != nil {
		t.Fatal(err)
	}
	const secret = "s3cr3t-PASSWORD-do-not-log"
	const volSecret = "v0lume-SECRET-do-not-log"
	// A secret volume as kubelet lays it out: the key is a link into ..data.
	vol := filepath.Join(h.dir, "pods/uid/volumes/kubernetes.io~secret/creds")
	ts := filepath.Join(vol, "..2026_03_01_10_00_00.1")
	if err := os.MkdirAll(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, "password"), []byte(volSecret), 0o400); err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]string{{filepath.Base(ts), "..data"}, {"..data/password", "password"}} {
		if err := os.Symlink(l[0], filepath.Join(vol, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	sb := sandboxConfig("inj")
	sb.Metadata.Name = `inj</name><devices><disk type="file"><source file="/etc/shadow"/></disk></devices><name>x`
	sb.Annotations["VirtletSSHKeys"] = "ssh-rsa AAAA key1\nruncmd: [\"rm -rf /\"]"
	sb.Annotations["VirtletCloudInitUserData"] = "users:\n- name: admin\n  passwd: " + secret + "\n"
	run, err := h.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: sb})
	if err != nil {
		t.Fatal(err)
	}
	cr, err := h.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: run.PodSandboxId, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "vm"}, Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"},
		Envs:   []*runtimeapi.KeyValue{{Key: "TOKEN", Value: []byte(secret)}},
		Mounts: []*runtimeapi.Mount{{ContainerPath: "/etc/creds", HostPath: vol, Readonly: true}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatal(err)
	}
	ctr := h.d.manager.ListContainers(podFilterAll())[0]
	xmls := h.d.hv.(interface{ DefinedXML(string) []string }).DefinedXML(ctr.DomainName)
	var d libvirtxml.Domain
	if err := d.Unmarshal(xmls[0]); err != nil {
		t.Fatal(err)
	}
	for _, disk := range d.Devices.Disks {
		if disk.Source != nil && disk.Source.File != nil && strings.Contains(disk.Source.File.File, "shadow") {
			t.Errorf("the pod name injected a disk: %s", disk.Source.File.File)
		}
	}
	if d.Name != ctr.DomainName {
		t.Errorf("domain name %q, want %q", d.Name, ctr.DomainName)
	}
	// The cloud-init drive: the ssh key stays a key, not a runcmd.
	iso := filepath.Join(ctr.Dir, "cloudinit.iso")
	userData := extract(t, iso, "user-data")
	var ud map[string]any
	if err := yaml.Unmarshal([]byte(strings.TrimPrefix(userData, "#cloud-config\n")), &ud); err != nil {
		t.Fatalf("user-data is not YAML: %v\n%s", err, userData)
	}
	if _, ok := ud["runcmd"]; ok {
		t.Errorf("an annotation value added a runcmd to user-data:\n%s", userData)
	}
	// The secret volume's file is on the drive (so it went through the
	// code that logs about volumes).
	if !strings.Contains(userData, "path: /etc/creds/password") || !strings.Contains(userData, base64.StdEncoding.EncodeToString([]byte(volSecret))) {
		t.Errorf("the secret volume's file is not in user-data:\n%s", userData)
	}
	metaData := extract(t, iso, "meta-data")
	var md map[string]any
	if err := yaml.Unmarshal([]byte(metaData), &md); err != nil {
		t.Fatal(err)
	}
	if _, ok := md["runcmd"]; ok {
		t.Errorf("an annotation value added a key to meta-data:\n%s", metaData)
	}
	if _, err := h.rt.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: run.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if logs := h.logs.String(); strings.Contains(logs, secret) || strings.Contains(logs, volSecret) ||
		strings.Contains(logs, base64.StdEncoding.EncodeToString([]byte(volSecret))) {
		t.Errorf("a secret reached the log:\n%s", logs)
	} else if !strings.Contains(logs, "container created") || !strings.Contains(logs, "volume files written into the VM") {
		t.Errorf("the log capture is not working:\n%s", logs)
	}
}

func newHarnessWithLogs(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	h.stop()
	h.logs = &syncbuf.Buffer{}
	h.start()
	t.Cleanup(h.stop)
	return h
}

// extract reads one file of an ISO with xorriso (installed by make test).
func extract(t *testing.T, iso, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	cmd := execCommand("xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/"+name, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("extracting %s from %s: %v\n%s", name, iso, err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

var execCommand = exec.Command
