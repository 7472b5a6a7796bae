package volume

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podvisor/podvisor/runtime/domain"
)

const podDir = "/var/lib/kubelet/pods/7c1d2e3f-0a1b-4c5d-8e9f-a0b1c2d3e4f5"

// kubeletMounts is what kubelet passes for a pod with an emptyDir, a
// hostPath, a PVC, a secret, a configMap and the service account token.
func kubeletMounts(dir string) []Mount {
	return []Mount{
		{ContainerPath: "/etc/hosts", HostPath: dir + "/etc-hosts"},
		{ContainerPath: "/dev/termination-log", HostPath: dir + "/containers/vm/3b0f1c2d"},
		{ContainerPath: "/var/cache/app", HostPath: dir + "/volumes/kubernetes.io~empty-dir/cache"},
		{ContainerPath: "/srv/config", HostPath: dir + "/host/config", ReadOnly: true},
		{ContainerPath: "/var/lib/db", HostPath: dir + "/volumes/kubernetes.io~csi/pvc-1/mount"},
		{ContainerPath: "/etc/secret", HostPath: dir + "/volumes/kubernetes.io~secret/creds", ReadOnly: true},
		{ContainerPath: "/etc/app", HostPath: dir + "/volumes/kubernetes.io~configmap/app", ReadOnly: true},
		{ContainerPath: "/var/run/secrets/kubernetes.io/serviceaccount", HostPath: dir + "/volumes/kubernetes.io~projected/kube-api-access-x7k2p", ReadOnly: true},
	}
}

// makeTree creates the host side of kubeletMounts under a temporary dir.
func makeTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"containers/vm", "volumes/kubernetes.io~empty-dir/cache", "host/config",
		"volumes/kubernetes.io~csi/pvc-1/mount", "volumes/kubernetes.io~secret/creds",
		"volumes/kubernetes.io~configmap/app", "volumes/kubernetes.io~projected/kube-api-access-x7k2p"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"etc-hosts", "containers/vm/3b0f1c2d"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPlanKubeletMounts(t *testing.T) {
	dir := makeTree(t)
	p, err := PlanMounts(kubeletMounts(dir), os.Stat)
	if err != nil {
		t.Fatal(err)
	}
	var shares []string
	for _, s := range p.Shares {
		shares = append(shares, s.Tag+" "+s.ContainerPath+" "+strings.TrimPrefix(s.HostPath, dir))
	}
	// Depth first, then path: /srv/config (2) before the 3-deep ones.
	want := []string{
		"config /srv/config /host/config",
		"app /var/cache/app /volumes/kubernetes.io~empty-dir/cache",
		"db /var/lib/db /volumes/kubernetes.io~csi/pvc-1/mount",
	}
	if diff := cmp.Diff(want, shares); diff != "" {
		t.Errorf("shares (-want +got):\n%s", diff)
	}
	if !p.Shares[0].ReadOnly || p.Shares[1].ReadOnly {
		t.Errorf("read-only flags not kept: %+v", p.Shares)
	}
	skipped := map[string]Skip{}
	for _, s := range p.Skipped {
		skipped[s.ContainerPath] = s
	}
	for path, want := range map[string]string{
		"/etc/hosts":           "kubelet's /etc/hosts",
		"/dev/termination-log": "termination message",
		"/etc/secret":          "a secret volume",
		"/etc/app":             "a configmap volume",
		"/var/run/secrets/kubernetes.io/serviceaccount": "a projected volume",
	} {
		s, ok := skipped[path]
		if !ok {
			t.Errorf("%s is not skipped", path)
			continue
		}
		if !strings.Contains(s.Reason, want) {
			t.Errorf("%s skipped because %q, want it to say %q", path, s.Reason, want)
		}
		if expected := path == "/etc/hosts" || path == "/dev/termination-log" || path == "/var/run/secrets/kubernetes.io/serviceaccount"; s.Expected != expected {
			t.Errorf("%s: Expected = %v", path, s.Expected)
		}
	}
	if len(p.Skipped) != 5 {
		t.Errorf("%d skipped, want 5: %+v", len(p.Skipped), p.Skipped)
	}
	fss := p.Filesystems()
	if len(fss) != 3 || fss[0] != (domain.Filesystem{HostPath: dir + "/host/config", Tag: "config", ReadOnly: true}) {
		t.Errorf("Filesystems() = %+v", fss)
	}
}

func TestPlanFilesAndOddTypes(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(sub, link); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p, err := PlanMounts([]Mount{
		{ContainerPath: "/etc/app.conf", HostPath: file},
		{ContainerPath: "/data", HostPath: link},
		{ContainerPath: "/run/app.sock", HostPath: sock},
	}, os.Stat)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Shares) != 1 || p.Shares[0].HostPath != link || p.Shares[0].Tag != "data" {
		t.Errorf("a symbolic link to a directory should be shared: %+v", p.Shares)
	}
	if len(p.Skipped) != 2 || !strings.Contains(p.Skipped[0].Reason, "a file, not a directory") ||
		!strings.Contains(p.Skipped[1].Reason, "not a directory") || p.Skipped[0].Expected {
		t.Errorf("skipped: %+v", p.Skipped)
	}
}

func TestPlanErrorsNameTheMount(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		m    Mount
		want string
	}{
		{Mount{ContainerPath: "/data", HostPath: filepath.Join(dir, "missing")}, `volume mount at "/data" (host path "` + dir + `/missing"): the host path does not exist`},
		{Mount{ContainerPath: "data", HostPath: dir}, `volume mount at "data" (host path "` + dir + `"): the container path is not absolute`},
		{Mount{ContainerPath: "/", HostPath: dir}, "cannot be mounted over the guest's root"},
		{Mount{ContainerPath: "/a/../b", HostPath: dir}, `not clean ("/b")`},
		{Mount{ContainerPath: "/my data", HostPath: dir}, "whitespace"},
		{Mount{ContainerPath: `/a\040b`, HostPath: dir}, "backslashes"},
		{Mount{ContainerPath: "/data", HostPath: "relative"}, "the host path is not an absolute path"},
	}
	for _, tt := range tests {
		_, err := PlanMounts([]Mount{tt.m}, os.Stat)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want it to contain %q", tt.m, err, tt.want)
		}
	}
	// Every problem at once.
	_, err := PlanMounts([]Mount{
		{ContainerPath: "/a", HostPath: filepath.Join(dir, "x")},
		{ContainerPath: "/b", HostPath: dir},
		{ContainerPath: "/b", HostPath: dir},
		{ContainerPath: "/c", HostPath: filepath.Join(dir, "y")},
	}, os.Stat)
	if err == nil || strings.Count(err.Error(), "\n") != 2 || !strings.Contains(err.Error(), `"/b"`) || !strings.Contains(err.Error(), "same container path") {
		t.Errorf("want three problems, one a duplicate /b: %v", err)
	}
}

func TestTags(t *testing.T) {
	dir := t.TempDir()
	long := "/" + strings.Repeat("x", 40)
	p, err := PlanMounts([]Mount{
		{ContainerPath: "/b/data", HostPath: dir},
		{ContainerPath: "/a/data", HostPath: dir},
		{ContainerPath: "/data", HostPath: dir},
		{ContainerPath: long, HostPath: dir},
		{ContainerPath: "/opt/my:dir", HostPath: dir},
		{ContainerPath: "/opt/..hidden", HostPath: dir},
	}, os.Stat)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range p.Shares {
		if !domain.ValidTag(s.Tag) {
			t.Errorf("%s: invalid tag %q", s.ContainerPath, s.Tag)
		}
		got[s.ContainerPath] = s.Tag
	}
	if got["/data"] != "data" {
		t.Errorf("/data has tag %q: the shallowest gets the plain name", got["/data"])
	}
	for _, p := range []string{"/a/data", "/b/data"} {
		if !strings.HasPrefix(got[p], "data-") || len(got[p]) != len("data-")+8 {
			t.Errorf("%s has tag %q, want data-<8 hex>", p, got[p])
		}
	}
	if got["/a/data"] == got["/b/data"] {
		t.Error("two shares have one tag")
	}
	if tag := got[long]; len(tag) != 31 || !strings.HasPrefix(tag, strings.Repeat("x", 22)+"-") {
		t.Errorf("a long name gives tag %q", tag)
	}
	if tag := got["/opt/my:dir"]; !strings.HasPrefix(tag, "my_dir-") {
		t.Errorf("/opt/my:dir gives tag %q", tag)
	}
	if tag := got["/opt/..hidden"]; tag != "..hidden" {
		t.Errorf("/opt/..hidden gives tag %q", tag)
	}
	// The same mounts in another order give the same tags.
	q, err := PlanMounts([]Mount{
		{ContainerPath: "/opt/..hidden", HostPath: dir},
		{ContainerPath: "/a/data", HostPath: dir},
		{ContainerPath: long, HostPath: dir},
		{ContainerPath: "/data", HostPath: dir},
		{ContainerPath: "/opt/my:dir", HostPath: dir},
		{ContainerPath: "/b/data", HostPath: dir},
	}, os.Stat)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p.Shares, q.Shares); diff != "" {
		t.Errorf("the order of kubelet's mounts changed the plan:\n%s", diff)
	}
}

func TestGuest(t *testing.T) {
	p := &Plan{Shares: []Share{
		{Mount: Mount{ContainerPath: "/data", HostPath: "/h/data"}, Tag: "data"},
		{Mount: Mount{ContainerPath: "/srv/it's", HostPath: "/h/cfg", ReadOnly: true}, Tag: "it_s-0a1b2c3d"},
	}}
	g := p.Guest(nil)
	want := [][]string{
		{"data", "/data", "9p", "trans=virtio,version=9p2000.L,msize=262144,nofail", "0", "0"},
		{"it_s-0a1b2c3d", "/srv/it's", "9p", "trans=virtio,version=9p2000.L,msize=262144,ro,nofail", "0", "0"},
	}
	if diff := cmp.Diff(want, g.Mounts); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	script := "if ! mountpoint -q '/data'; then mkdir -p '/data' && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 data '/data'; fi\n" +
		`if ! mountpoint -q '/srv/it'\''s'; then mkdir -p '/srv/it'\''s' && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro it_s-0a1b2c3d '/srv/it'\''s'; fi`
	if g.MountScript != script {
		t.Errorf("mount script:\n%s\nwant:\n%s", g.MountScript, script)
	}
	if len(g.Files) != 1 || g.Files[0].Path != MountScriptPath || g.Files[0].Mode != 0o755 || string(g.Files[0].Content) != "#!/bin/sh\n"+script+"\n" {
		t.Errorf("files: %+v", g.Files)
	}
	if g.RunCmd != nil {
		t.Errorf("runcmd without chown: %q", g.RunCmd)
	}

	g = p.Guest(&DefaultOwner)
	if diff := cmp.Diff([]string{"chown -R 1000:1000 '/data'"}, g.RunCmd); diff != "" {
		t.Errorf("chown runcmd: only the read-write share (-want +got):\n%s", diff)
	}
	if !strings.Contains(g.MountScript, "data '/data'; fi\nchown -R 1000:1000 '/data'\nif") {
		t.Errorf("the mount script does not chown /data right after mounting it:\n%s", g.MountScript)
	}

	if g := (&Plan{}).Guest(&DefaultOwner); g.Mounts != nil || g.Files != nil || g.RunCmd != nil || g.MountScript != "" {
		t.Errorf("no shares gave %+v", g)
	}
}
