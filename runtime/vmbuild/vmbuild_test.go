package vmbuild

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"libvirt.org/go/libvirtxml"
	"sigs.k8s.io/yaml"

	"github.com/podvisor/podvisor/runtime/cloudinit"
	"github.com/podvisor/podvisor/runtime/domain"
	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/podtypes"
)

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("PODVISOR_ALLOW_SKIP") == "1" {
			t.Skipf("%s not installed", name)
		}
		t.Fatalf("%s not installed: run ci/install-deps.sh (or set PODVISOR_ALLOW_SKIP=1)", name)
	}
}

func fixture(t *testing.T, ann map[string]string) (*podtypes.Sandbox, *podtypes.Container, string) {
	dir := t.TempDir()
	img := filepath.Join(dir, "base.img")
	if err := os.WriteFile(img, make([]byte, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	sb := &podtypes.Sandbox{ID: "sb1", Config: podtypes.SandboxConfig{Name: "vm1", Namespace: "ns", UID: "uid-1", Hostname: "vm1", Annotations: ann,
		DNS: podtypes.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"ns.svc.cluster.local"}}},
		Network: &podtypes.NetworkStatus{Interfaces: []podtypes.Interface{{Name: "eth0", MAC: "02:00:00:00:00:01", MTU: 1450,
			IPs: []podtypes.IPConfig{{CIDR: "10.1.0.5/24", Gateway: "10.1.0.1"}}, Routes: []podtypes.Route{{Dst: "0.0.0.0/0", GW: "10.1.0.1"}}}}}}
	c := &podtypes.Container{ID: strings.Repeat("ab", 32), Config: podtypes.ContainerConfig{Name: "vm", Resources: podtypes.Resources{MemoryLimitBytes: 256 << 20},
		Envs: []podtypes.KeyValue{{Key: "A", Value: "b"}}}}
	c.DomainName = domain.NameFor(c.ID)
	c.Dir = filepath.Join(dir, "vms", c.DomainName)
	return sb, c, img
}

func TestAssembleMakesDisksDriveAndDomain(t *testing.T) {
	needTool(t, "qemu-img")
	if _, err := cloudinit.ISOTool(); err != nil {
		needTool(t, "genisoimage")
	}
	sb, c, img := fixture(t, map[string]string{"VirtletDiskDriver": "virtio", "VirtletRootVolumeSize": "64Mi"})
	a, err := New(Config{DomainType: domain.TypeQEMU})
	if err != nil {
		t.Fatal(err)
	}
	xml, err := a.Assemble(context.Background(), sb, c, img)
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(xml); err != nil {
		t.Fatal(err)
	}
	if d.Name != c.DomainName || d.Type != "qemu" {
		t.Errorf("domain %s type %s", d.Name, d.Type)
	}
	var sources []string
	for _, disk := range d.Devices.Disks {
		sources = append(sources, disk.Source.File.File+"@"+disk.Target.Dev)
	}
	want := []string{filepath.Join(c.Dir, RootDiskFile) + "@vda", filepath.Join(c.Dir, CloudInitFile) + "@vdb"}
	if strings.Join(sources, ",") != strings.Join(want, ",") {
		t.Errorf("disks %v, want %v", sources, want)
	}
	// The display listens on a socket in the VM's directory, nowhere else.
	if g := d.Devices.Graphics; len(g) != 1 || g[0].VNC == nil || g[0].VNC.Socket != filepath.Join(c.Dir, DisplaySocketFile) ||
		len(g[0].VNC.Listeners) != 1 || g[0].VNC.Listeners[0].Socket == nil || g[0].VNC.Port != 0 || g[0].VNC.Listen != "" {
		t.Errorf("graphics %+v: want one VNC display on the socket %s only", g, filepath.Join(c.Dir, DisplaySocketFile))
	}
	for _, f := range []string{RootDiskFile, CloudInitFile} {
		if _, err := os.Stat(filepath.Join(c.Dir, f)); err != nil {
			t.Errorf("%s not made: %v", f, err)
		}
	}
	out, err := exec.Command("qemu-img", "info", "--output=json", filepath.Join(c.Dir, RootDiskFile)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"virtual-size": 67108864`) || !strings.Contains(string(out), img) {
		t.Errorf("root disk is not a 64 MiB overlay of the image: %s %v", out, err)
	}
}

func TestAssembleRefusesBadAnnotationsAndLeavesNothing(t *testing.T) {
	sb, c, img := fixture(t, map[string]string{"VirtletVCPUCount": "zero"})
	overlays := 0
	a, _ := New(Config{DomainType: domain.TypeQEMU, Overlay: func(context.Context, string, string, int64) (int64, error) {
		overlays++
		return 0, nil
	}})
	_, err := a.Assemble(context.Background(), sb, c, img)
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "VirtletVCPUCount") {
		t.Fatalf("err = %v, want InvalidArgument naming VirtletVCPUCount", err)
	}
	if overlays != 0 {
		t.Error("a disk was made for a pod with invalid annotations")
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("VM dir exists after failure: %v", err)
	}
}

func TestAssembleCleansUpAfterALateFailure(t *testing.T) {
	sb, c, img := fixture(t, nil)
	boom := errors.New("disk full")
	a, _ := New(Config{DomainType: domain.TypeKVM,
		Overlay: func(_ context.Context, _, path string, _ int64) (int64, error) {
			return 0, os.WriteFile(path, []byte("x"), 0o600)
		},
		WriteISO: func(context.Context, *cloudinit.Contents, string) error { return boom },
	})
	if _, err := a.Assemble(context.Background(), sb, c, img); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the ISO failure", err)
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("the root disk of a failed assembly was left behind: %v", err)
	}
	if _, err := New(Config{DomainType: "xen"}); err == nil || !strings.Contains(err.Error(), "xen") {
		t.Errorf("domain type xen accepted: %v", err)
	}
}

func TestGuestHostnameIsADNSLabel(t *testing.T) {
	long := strings.Repeat("a", 62) + "-bcd"
	for _, tc := range []struct{ hostname, name, want string }{
		{"vm1", "pod", "vm1"},
		{"", "pod-name", "pod-name"},
		{"", long, strings.Repeat("a", 62)},
	} {
		sb := &podtypes.Sandbox{Config: podtypes.SandboxConfig{Hostname: tc.hostname, Name: tc.name}}
		if got := guestHostname(sb); got != tc.want {
			t.Errorf("guestHostname(%q, %q) = %q, want %q", tc.hostname, tc.name, got, tc.want)
		}
	}
}

// captureISO is a WriteISO that keeps the drive's contents.
func captureISO(got **cloudinit.Contents) func(context.Context, *cloudinit.Contents, string) error {
	return func(_ context.Context, c *cloudinit.Contents, path string) error {
		*got = c
		return os.WriteFile(path, []byte("iso"), 0o600)
	}
}

func fakeOverlay(_ context.Context, _, path string, _ int64) (int64, error) {
	return 0, os.WriteFile(path, []byte("x"), 0o600)
}

func TestAssembleSharesVolumes(t *testing.T) {
	sb, c, img := fixture(t, map[string]string{"VirtletChown9pfsMounts": "true"})
	host := t.TempDir()
	for _, d := range []string{"empty", "cfg", "volumes/kubernetes.io~secret/s"} {
		if err := os.MkdirAll(filepath.Join(host, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(host, "etc-hosts"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.Config.Mounts = []podtypes.Mount{
		{ContainerPath: "/etc/hosts", HostPath: filepath.Join(host, "etc-hosts")},
		{ContainerPath: "/var/data", HostPath: filepath.Join(host, "empty")},
		{ContainerPath: "/etc/cfg", HostPath: filepath.Join(host, "cfg"), Readonly: true},
		{ContainerPath: "/etc/secret", HostPath: filepath.Join(host, "volumes/kubernetes.io~secret/s"), Readonly: true},
	}
	var drive *cloudinit.Contents
	a, _ := New(Config{DomainType: domain.TypeQEMU, Overlay: fakeOverlay, WriteISO: captureISO(&drive)})
	xml, err := a.Assemble(context.Background(), sb, c, img)
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(xml); err != nil {
		t.Fatal(err)
	}
	var fss []string
	for _, f := range d.Devices.Filesystems {
		fss = append(fss, f.AccessMode+" "+f.Source.Mount.Dir+" "+f.Target.Dir+" "+map[bool]string{true: "ro", false: "rw"}[f.ReadOnly != nil])
	}
	want := []string{"mapped " + filepath.Join(host, "cfg") + " cfg ro", "mapped " + filepath.Join(host, "empty") + " data rw"}
	if strings.Join(fss, "\n") != strings.Join(want, "\n") {
		t.Errorf("filesystems:\n%s\nwant:\n%s", strings.Join(fss, "\n"), strings.Join(want, "\n"))
	}
	if d.QEMUCommandline != nil && len(d.QEMUCommandline.Args) > 0 {
		t.Errorf("shares on a filesystem with user xattrs got qemu:args %+v", d.QEMUCommandline.Args)
	}
	ud, _ := drive.File("user-data")
	for _, w := range []string{
		"mounts:\n- - cfg\n  - /etc/cfg\n  - 9p\n  - trans=virtio,version=9p2000.L,msize=262144,ro,nofail\n  - \"0\"\n  - \"0\"\n- - data\n  - /var/data\n",
		"runcmd:\n- chown -R 1000:1000 '/var/data'\n",
		"path: " + "/etc/cloud/mount-volumes.sh",
	} {
		if !strings.Contains(string(ud), w) {
			t.Errorf("user-data lacks %q:\n%s", w, ud)
		}
	}
	if strings.Contains(string(ud), "- /etc/secret") || strings.Contains(string(ud), "/etc/hosts") {
		t.Errorf("user-data mounts a secret or a skipped volume:\n%s", ud)
	}
}

// A share whose host directory takes no user extended attributes (ramfs
// here, like tmpfs before Linux 6.6) keeps the guest's metadata in files:
// its fsdev's security_model is set to mapped-file.
func TestAssembleShareWithoutUserXattrs(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("PODVISOR_ALLOW_SKIP") == "1" {
			t.Skip("needs root to mount a ramfs")
		}
		t.Fatal("needs root to mount a ramfs (set PODVISOR_ALLOW_SKIP=1 to skip)")
	}
	sb, c, img := fixture(t, nil)
	host := t.TempDir()
	disk, mem := filepath.Join(host, "disk"), filepath.Join(host, "mem")
	for _, d := range []string{disk, mem} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("mount", "-t", "ramfs", "ramfs", mem).CombinedOutput(); err != nil {
		t.Fatalf("mount ramfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mem).Run() })
	c.Config.Mounts = []podtypes.Mount{{ContainerPath: "/a/disk", HostPath: disk}, {ContainerPath: "/a/mem", HostPath: mem}}
	a, _ := New(Config{DomainType: domain.TypeQEMU, Overlay: fakeOverlay, WriteISO: captureISO(new(*cloudinit.Contents))})
	xml, err := a.Assemble(context.Background(), sb, c, img)
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(xml); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range d.Devices.Filesystems {
		got = append(got, f.AccessMode+" "+f.Alias.Name+" "+f.Target.Dir)
	}
	if d.QEMUCommandline != nil {
		for _, a := range d.QEMUCommandline.Args {
			got = append(got, a.Value)
		}
	}
	want := []string{"mapped ua-fs0 disk", "mapped ua-fs1 mem", "-set", "fsdev.fsdev-ua-fs1.security_model=mapped-file"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("filesystems and qemu:args (-want +got):\n%s", diff)
	}
}

func TestAssembleRefusesAMissingHostPathAndLeavesNothing(t *testing.T) {
	sb, c, img := fixture(t, nil)
	missing := filepath.Join(t.TempDir(), "gone")
	c.Config.Mounts = []podtypes.Mount{{ContainerPath: "/data", HostPath: missing}}
	made := 0
	a, _ := New(Config{DomainType: domain.TypeQEMU,
		Overlay:  func(context.Context, string, string, int64) (int64, error) { made++; return 0, nil },
		WriteISO: func(context.Context, *cloudinit.Contents, string) error { made++; return nil },
	})
	_, err := a.Assemble(context.Background(), sb, c, img)
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("err = %v, want InvalidArgument", err)
	}
	want := `pod ns/vm1: volume mount at "/data" (host path "` + missing + `"): the host path does not exist`
	if err.Error() != want {
		t.Errorf("err = %q\nwant  %q", err, want)
	}
	if made != 0 {
		t.Error("a disk or drive was made for a pod whose volume is missing")
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("VM dir exists after failure: %v", err)
	}
}

// kubeletVolume lays out a secret, configMap, projected or downwardAPI
// volume as kubelet's atomic writer does (keys are links into ..data).
func kubeletVolume(t *testing.T, podDir, kind, name string, keys map[string]string, mode os.FileMode) string {
	t.Helper()
	vol := filepath.Join(podDir, "volumes", "kubernetes.io~"+kind, name)
	ts := filepath.Join(vol, "..2026_03_01_10_00_00.123456789")
	if err := os.MkdirAll(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(vol, "..data")); err != nil {
		t.Fatal(err)
	}
	for k, v := range keys {
		if err := os.WriteFile(filepath.Join(ts, k), []byte(v), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(ts, k), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", k), filepath.Join(vol, k)); err != nil {
			t.Fatal(err)
		}
	}
	return vol
}

// writeFiles returns user-data's write_files as "path mode content" lines.
func writeFiles(t *testing.T, ud []byte) []string {
	t.Helper()
	var doc struct {
		WriteFiles []struct {
			Path, Content, Encoding, Permissions string
			Owner                                string
		} `json:"write_files"`
	}
	if err := yaml.Unmarshal(ud, &doc); err != nil {
		t.Fatalf("user-data: %v\n%s", err, ud)
	}
	var out []string
	for _, f := range doc.WriteFiles {
		content := f.Content
		if f.Encoding == "b64" {
			b, err := base64.StdEncoding.DecodeString(f.Content)
			if err != nil {
				t.Fatalf("%s: %v", f.Path, err)
			}
			content = string(b)
		}
		if f.Owner != "" {
			t.Errorf("%s has owner %q: want cloud-init's default, root", f.Path, f.Owner)
		}
		out = append(out, f.Path+" "+f.Permissions+" "+content)
	}
	return out
}

// Secret, configMap, service account token and downwardAPI volumes are
// written into the guest by cloud-init write_files, with the host files'
// modes, before the mount script and the environment file.
func TestAssembleWritesFileVolumes(t *testing.T) {
	sb, c, img := fixture(t, nil)
	podDir := t.TempDir()
	data := filepath.Join(podDir, "volumes/kubernetes.io~empty-dir/data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	c.Config.Mounts = []podtypes.Mount{
		{ContainerPath: "/var/run/secrets/kubernetes.io/serviceaccount", Readonly: true, HostPath: kubeletVolume(t, podDir, "projected", "kube-api-access-x7k2p",
			map[string]string{"token": "eyJhbGciOi.x.y", "namespace": "ns"}, 0o644)},
		{ContainerPath: "/etc/creds", Readonly: true, HostPath: kubeletVolume(t, podDir, "secret", "creds", map[string]string{"password": "s3cr3t\n"}, 0o400)},
		{ContainerPath: "/etc/app", Readonly: true, HostPath: kubeletVolume(t, podDir, "configmap", "app", map[string]string{"app.conf": "a: 1\n"}, 0o644)},
		{ContainerPath: "/etc/podinfo", Readonly: true, HostPath: kubeletVolume(t, podDir, "downward-api", "podinfo", map[string]string{"labels": "app=\"vm\"\n"}, 0o644)},
		{ContainerPath: "/data", HostPath: data},
	}
	var drive *cloudinit.Contents
	a, _ := New(Config{DomainType: domain.TypeQEMU, Overlay: fakeOverlay, WriteISO: captureISO(&drive)})
	if _, err := a.Assemble(context.Background(), sb, c, img); err != nil {
		t.Fatal(err)
	}
	ud, _ := drive.File("user-data")
	got := writeFiles(t, ud)
	want := []string{
		"/etc/app/app.conf 0644 a: 1\n",
		"/etc/creds/password 0400 s3cr3t\n",
		"/etc/podinfo/labels 0644 app=\"vm\"\n",
		"/var/run/secrets/kubernetes.io/serviceaccount/namespace 0644 ns",
		"/var/run/secrets/kubernetes.io/serviceaccount/token 0644 eyJhbGciOi.x.y",
		"/etc/cloud/mount-volumes.sh 0755 #!/bin/sh\nif ! mountpoint -q '/data'; then mkdir -p '/data' && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 data '/data'; fi\n",
		"/etc/cloud/environment 0644 A=b\n",
	}
	if strings.Join(got, "\n---\n") != strings.Join(want, "\n---\n") {
		t.Errorf("write_files:\n%s\nwant:\n%s", strings.Join(got, "\n---\n"), strings.Join(want, "\n---\n"))
	}
	if strings.Contains(string(ud), "s3cr3t") {
		t.Errorf("the secret is in user-data in clear, not base64:\n%s", ud)
	}
}

// A link out of a secret's directory and file volumes over the bound fail
// CreateContainer with InvalidArgument naming the mount, before any disk
// is made.
func TestAssembleRefusesBadFileVolumes(t *testing.T) {
	podDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(podDir, "node-secret"), []byte("node secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	evil := kubeletVolume(t, podDir, "secret", "evil", map[string]string{"k": "v"}, 0o400)
	if err := os.Symlink(filepath.Join(podDir, "node-secret"), filepath.Join(evil, "stolen")); err != nil {
		t.Fatal(err)
	}
	big := kubeletVolume(t, podDir, "configmap", "big", map[string]string{"blob": strings.Repeat("x", 1<<20+1)}, 0o644)
	for _, tt := range []struct {
		m    podtypes.Mount
		want string
	}{
		{podtypes.Mount{ContainerPath: "/etc/evil", HostPath: evil}, `pod ns/vm1: volume mount at "/etc/evil" (host path "` + evil + `"): reading volume file ` + evil + `/stolen: a symbolic link leads out of the volume directory`},
		{podtypes.Mount{ContainerPath: "/etc/big", HostPath: big}, `pod ns/vm1: volume mount at "/etc/big" (host path "` + big + `"): the files of the container's secret, configMap, projected and downwardAPI volumes exceed 1048576 bytes together`},
	} {
		sb, c, img := fixture(t, nil)
		c.Config.Mounts = []podtypes.Mount{tt.m}
		made := 0
		a, _ := New(Config{DomainType: domain.TypeQEMU,
			Overlay:  func(context.Context, string, string, int64) (int64, error) { made++; return 0, nil },
			WriteISO: func(context.Context, *cloudinit.Contents, string) error { made++; return nil },
		})
		_, err := a.Assemble(context.Background(), sb, c, img)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("err = %v\nwant InvalidArgument starting %q", err, tt.want)
		}
		if err != nil && (strings.Contains(err.Error(), "node secret") || strings.Contains(err.Error(), "xxxx")) {
			t.Errorf("the error shows a file's content: %v", err)
		}
		if made != 0 {
			t.Error("a disk or drive was made")
		}
		if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
			t.Errorf("VM dir exists after failure: %v", err)
		}
	}
}

// The pod's sysctls reach the guest: bootcmd sets them, sorted by name,
// after the user's own bootcmd, and a sysctl.d file keeps them.
func TestAssembleSetsSysctls(t *testing.T) {
	sb, c, img := fixture(t, map[string]string{"VirtletCloudInitUserData": "bootcmd:\n- echo from-user\n"})
	sb.Config.Sysctls = map[string]string{"net.ipv4.ip_local_port_range": "1024 65000", "kernel.shm_rmid_forced": "1"}
	var drive *cloudinit.Contents
	a, _ := New(Config{DomainType: domain.TypeQEMU, Overlay: fakeOverlay, WriteISO: captureISO(&drive)})
	if _, err := a.Assemble(context.Background(), sb, c, img); err != nil {
		t.Fatal(err)
	}
	ud, _ := drive.File("user-data")
	var doc struct {
		BootCmd []any `json:"bootcmd"`
	}
	if err := yaml.Unmarshal(ud, &doc); err != nil {
		t.Fatalf("user-data: %v\n%s", err, ud)
	}
	want := []any{
		"echo from-user",
		[]any{"sysctl", "-w", "kernel.shm_rmid_forced=1"},
		[]any{"sysctl", "-w", "net.ipv4.ip_local_port_range=1024 65000"},
	}
	if d := cmp.Diff(want, doc.BootCmd); d != "" {
		t.Errorf("bootcmd (-want +got):\n%s", d)
	}
	conf := cloudinit.SysctlConfPath + " 0644 kernel.shm_rmid_forced = 1\nnet.ipv4.ip_local_port_range = 1024 65000\n"
	if got := writeFiles(t, ud); !slices.Contains(got, conf) {
		t.Errorf("write_files lacks %q:\n%s", conf, strings.Join(got, "\n---\n"))
	}
	if len(drive.Warnings) > 0 {
		t.Errorf("warnings: %v", drive.Warnings)
	}
}

// A user-data script cannot carry the sysctls: the drive is still made,
// and the log says they are not set.
func TestAssembleSysctlsWithAScriptWarns(t *testing.T) {
	sb, c, img := fixture(t, map[string]string{"VirtletCloudInitUserDataScript": "#!/bin/sh\necho hi\n"})
	sb.Config.Sysctls = map[string]string{"kernel.shm_rmid_forced": "1"}
	var drive *cloudinit.Contents
	var log bytes.Buffer
	a, _ := New(Config{DomainType: domain.TypeQEMU, Overlay: fakeOverlay, WriteISO: captureISO(&drive),
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if _, err := a.Assemble(context.Background(), sb, c, img); err != nil {
		t.Fatal(err)
	}
	if ud, _ := drive.File("user-data"); string(ud) != "#!/bin/sh\necho hi\n" {
		t.Errorf("user-data = %q, want the script", ud)
	}
	if !strings.Contains(log.String(), "1 sysctls are not set in the guest: user-data is a script") {
		t.Errorf("log lacks the warning:\n%s", log.String())
	}
}

type fixedLimit struct {
	limit int64
	err   error
}

func (f fixedLimit) EphemeralStorageLimit(context.Context, string, string, string) (int64, error) {
	return f.limit, f.err
}

// A root volume larger than the container's ephemeral-storage limit is
// refused naming both, and nothing is left; within it, or when the limit
// cannot be read, the VM is made.
func TestEphemeralStorage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ann    map[string]string
		limits fixedLimit
		want   string
	}{
		{name: "ann-over", ann: map[string]string{"VirtletRootVolumeSize": "2Gi"}, limits: fixedLimit{limit: 1 << 30},
			want: `the root volume, VirtletRootVolumeSize 2Gi (2147483648 bytes, at least the image's size), is larger than container "vm"'s ephemeral-storage limit 1073741824 bytes (1024 MiB)`},
		{name: "image-over", limits: fixedLimit{limit: 1 << 20},
			want: `the root volume, the image's virtual size 2147483648 bytes (2048 MiB), is larger than container "vm"'s ephemeral-storage limit 1048576 bytes (1 MiB)`},
		{name: "within", ann: map[string]string{"VirtletRootVolumeSize": "2Gi"}, limits: fixedLimit{limit: 4 << 30}},
		{name: "none", ann: map[string]string{"VirtletRootVolumeSize": "2Gi"}},
		{name: "unread", ann: map[string]string{"VirtletRootVolumeSize": "2Gi"}, limits: fixedLimit{err: errors.New("connection refused")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb, c, img := fixture(t, tc.ann)
			a, _ := New(Config{DomainType: domain.TypeQEMU, PodLimits: tc.limits,
				Overlay: func(_ context.Context, _, path string, minSize int64) (int64, error) {
					return max(minSize, 2<<30), os.WriteFile(path, []byte("x"), 0o600)
				},
				WriteISO: func(_ context.Context, _ *cloudinit.Contents, path string) error {
					return os.WriteFile(path, nil, 0o600)
				},
			})
			_, err := a.Assemble(context.Background(), sb, c, img)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want InvalidArgument with %q", err, tc.want)
			}
			if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
				t.Errorf("the refused VM's directory is left: %v", err)
			}
		})
	}
}

// A VM that can grow in place: under KVM its extra vCPUs are hot-plugged
// later (<vcpu current>); under TCG all are present from boot and the
// drive's bootcmd takes those above the count offline.
func TestAssembleVCPUsToGrow(t *testing.T) {
	for _, tc := range []struct {
		name, dtype    string
		max            int
		value, current uint
		offlineAtBoot  bool
	}{
		{"kvm hot-plug", domain.TypeKVM, 2, 2, 1, false},
		{"tcg in the guest", domain.TypeQEMU, 2, 2, 0, true},
		{"tcg, no growth", domain.TypeQEMU, 1, 1, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb, c, img := fixture(t, nil)
			var drive *cloudinit.Contents
			a, _ := New(Config{DomainType: tc.dtype, MaxVCPUs: tc.max, Overlay: fakeOverlay, WriteISO: captureISO(&drive)})
			x, err := a.Assemble(context.Background(), sb, c, img)
			if err != nil {
				t.Fatal(err)
			}
			var d libvirtxml.Domain
			if err := d.Unmarshal(x); err != nil {
				t.Fatal(err)
			}
			if d.VCPU.Value != tc.value || d.VCPU.Current != tc.current {
				t.Errorf("<vcpu current=%d>%d; want current=%d, %d", d.VCPU.Current, d.VCPU.Value, tc.current, tc.value)
			}
			ud, _ := drive.File("user-data")
			var doc struct {
				BootCmd []any `json:"bootcmd"`
			}
			if err := yaml.Unmarshal(ud, &doc); err != nil {
				t.Fatalf("user-data: %v\n%s", err, ud)
			}
			if got := slices.Contains(doc.BootCmd, any(GuestVCPUsBootCmd(1))); got != tc.offlineAtBoot {
				t.Errorf("bootcmd %q has the vCPUs' entry: %v, want %v", doc.BootCmd, got, tc.offlineAtBoot)
			}
		})
	}
}

// The bootcmd entry leaves n CPUs online: run on a sysfs-like directory.
func TestGuestVCPUsBootCmd(t *testing.T) {
	needTool(t, "sh")
	dir := t.TempDir()
	for cpu, online := range map[string]string{"cpu0": "", "cpu1": "1", "cpu2": "1", "cpu10": "1"} {
		if err := os.MkdirAll(filepath.Join(dir, cpu), 0o755); err != nil {
			t.Fatal(err)
		}
		if online != "" {
			if err := os.WriteFile(filepath.Join(dir, cpu, "online"), []byte(online), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	script := strings.ReplaceAll(GuestVCPUsBootCmd(2), "/sys/devices/system/cpu", dir)
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil || !strings.Contains(string(out), "2 vCPUs online") {
		t.Fatalf("%v: %s", err, out)
	}
	for cpu, want := range map[string]string{"cpu1": "1", "cpu2": "0", "cpu10": "0"} {
		if b, _ := os.ReadFile(filepath.Join(dir, cpu, "online")); strings.TrimSpace(string(b)) != want {
			t.Errorf("%s online = %q; want %s", cpu, b, want)
		}
	}
}
