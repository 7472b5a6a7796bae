package volume

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podvisor/podvisor/runtime/cloudinit"
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
	} {
		s, ok := skipped[path]
		if !ok {
			t.Errorf("%s is not skipped", path)
			continue
		}
		if !strings.Contains(s.Reason, want) || !s.Expected {
			t.Errorf("%s skipped because %q (expected %v), want it to say %q", path, s.Reason, s.Expected, want)
		}
	}
	if len(p.Skipped) != 2 {
		t.Errorf("%d skipped, want 2: %+v", len(p.Skipped), p.Skipped)
	}
	var files []string
	for _, f := range p.FileMounts {
		files = append(files, fmt.Sprintf("%s %s %s %v %v", f.Kind, f.ContainerPath, strings.TrimPrefix(f.HostPath, dir), f.ReadOnly, f.ServiceAccountToken()))
	}
	if diff := cmp.Diff([]string{
		"configmap /etc/app /volumes/kubernetes.io~configmap/app true false",
		"secret /etc/secret /volumes/kubernetes.io~secret/creds true false",
		"projected /var/run/secrets/kubernetes.io/serviceaccount /volumes/kubernetes.io~projected/kube-api-access-x7k2p true true",
	}, files); diff != "" {
		t.Errorf("file mounts (-want +got):\n%s", diff)
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

type key struct {
	content string
	mode    os.FileMode
}

// kubeletVolume lays out a volume directory as kubelet's atomic writer
// does: the files in a timestamped directory, ..data a link to it, and each
// top-level key a link into ..data. It returns the volume directory.
func kubeletVolume(t *testing.T, podDir, kind, name string, keys map[string]key) string {
	t.Helper()
	vol := filepath.Join(podDir, "volumes", "kubernetes.io~"+kind, name)
	ts := filepath.Join(vol, "..2026_03_01_10_00_00.123456789")
	top := map[string]bool{}
	for k, v := range keys {
		p := filepath.Join(ts, k)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v.content), v.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, v.mode); err != nil { // past the umask
			t.Fatal(err)
		}
		top[strings.Split(k, "/")[0]] = true
	}
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(vol, "..data")); err != nil {
		t.Fatal(err)
	}
	for k := range top {
		if err := os.Symlink(filepath.Join("..data", k), filepath.Join(vol, k)); err != nil {
			t.Fatal(err)
		}
	}
	return vol
}

// Each kind of kubelet volume becomes files below its container path, with
// the host files' modes; kubelet's bookkeeping entries do not.
func TestFileVolumes(t *testing.T) {
	for _, tt := range []struct {
		name, kind, dir, containerPath string
		keys                           map[string]key
		want                           []cloudinit.GuestFile
		token                          bool
	}{
		{name: "secret, defaultMode 0400", kind: "secret", dir: "creds", containerPath: "/etc/creds",
			keys: map[string]key{"username": {"admin", 0o400}, "password": {"s3cr3t\n", 0o400}},
			want: []cloudinit.GuestFile{{Path: "/etc/creds/password", Content: []byte("s3cr3t\n"), Mode: 0o400}, {Path: "/etc/creds/username", Content: []byte("admin"), Mode: 0o400}}},
		{name: "configMap with an item path and mode", kind: "configmap", dir: "app", containerPath: "/etc/app",
			keys: map[string]key{"app.conf": {"a=1\n", 0o644}, "scripts/run.sh": {"#!/bin/sh\n", 0o755}},
			want: []cloudinit.GuestFile{{Path: "/etc/app/app.conf", Content: []byte("a=1\n"), Mode: 0o644}, {Path: "/etc/app/scripts/run.sh", Content: []byte("#!/bin/sh\n"), Mode: 0o755}}},
		{name: "service account token", kind: "projected", dir: "kube-api-access-x7k2p", containerPath: "/var/run/secrets/kubernetes.io/serviceaccount", token: true,
			keys: map[string]key{"token": {"eyJhbGciOi.x.y", 0o644}, "ca.crt": {"-----BEGIN CERTIFICATE-----\n", 0o644}, "namespace": {"ns", 0o644}},
			want: []cloudinit.GuestFile{
				{Path: "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt", Content: []byte("-----BEGIN CERTIFICATE-----\n"), Mode: 0o644},
				{Path: "/var/run/secrets/kubernetes.io/serviceaccount/namespace", Content: []byte("ns"), Mode: 0o644},
				{Path: "/var/run/secrets/kubernetes.io/serviceaccount/token", Content: []byte("eyJhbGciOi.x.y"), Mode: 0o644}}},
		{name: "other projected volume", kind: "projected", dir: "bundle", containerPath: "/etc/bundle",
			keys: map[string]key{"cfg/a": {"1", 0o440}},
			want: []cloudinit.GuestFile{{Path: "/etc/bundle/cfg/a", Content: []byte("1"), Mode: 0o440}}},
		{name: "downwardAPI", kind: "downward-api", dir: "podinfo", containerPath: "/etc/podinfo",
			keys: map[string]key{"labels": {"app=\"vm\"\n", 0o644}},
			want: []cloudinit.GuestFile{{Path: "/etc/podinfo/labels", Content: []byte("app=\"vm\"\n"), Mode: 0o644}}},
		{name: "empty secret (optional, missing)", kind: "secret", dir: "none", containerPath: "/etc/none",
			keys: map[string]key{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			vol := kubeletVolume(t, t.TempDir(), tt.kind, tt.dir, tt.keys)
			p, err := PlanMounts([]Mount{{ContainerPath: tt.containerPath, HostPath: vol, ReadOnly: true}}, os.Stat)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.FileMounts) != 1 || len(p.Shares) != 0 || len(p.Skipped) != 0 {
				t.Fatalf("plan %+v, want one file mount", p)
			}
			if f := p.FileMounts[0]; f.Kind != tt.kind || f.ServiceAccountToken() != tt.token {
				t.Errorf("kind %q token %v", f.Kind, f.ServiceAccountToken())
			}
			if err := p.ReadFiles(context.Background(), MaxFileBytes); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, p.GuestFiles()); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
		})
	}
}

// Several file mounts: in mount order (by depth, then path), whatever
// kubelet's order, next to shares and skipped mounts.
func TestFileVolumesWithOthers(t *testing.T) {
	pod := t.TempDir()
	sec := kubeletVolume(t, pod, "secret", "s", map[string]key{"k": {"v", 0o600}})
	cm := kubeletVolume(t, pod, "configmap", "c", map[string]key{"k": {"w", 0o644}})
	data := filepath.Join(pod, "volumes/kubernetes.io~empty-dir/data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := PlanMounts([]Mount{
		{ContainerPath: "/etc/z/deeper", HostPath: cm},
		{ContainerPath: "/data", HostPath: data},
		{ContainerPath: "/etc/hosts", HostPath: filepath.Join(pod, "etc-hosts")},
		{ContainerPath: "/etc/with space", HostPath: sec},
	}, os.Stat)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ReadFiles(context.Background(), MaxFileBytes); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range p.GuestFiles() {
		got = append(got, fmt.Sprintf("%s %o %s", f.Path, f.Mode, f.Content))
	}
	if diff := cmp.Diff([]string{"/etc/with space/k 600 v", "/etc/z/deeper/k 644 w"}, got); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if len(p.Shares) != 1 || len(p.Skipped) != 1 {
		t.Errorf("shares %+v skipped %+v", p.Shares, p.Skipped)
	}
}

func TestFileVolumeErrorsNameTheMount(t *testing.T) {
	pod := t.TempDir()
	sec := kubeletVolume(t, pod, "secret", "s", map[string]key{"k": {"v", 0o600}})
	for _, tt := range []struct {
		m    Mount
		want string
	}{
		{Mount{ContainerPath: "etc/s", HostPath: sec}, `volume mount at "etc/s" (host path "` + sec + `"): the container path is not absolute`},
		{Mount{ContainerPath: "/", HostPath: sec}, "cannot be written over the guest's root"},
		{Mount{ContainerPath: "/etc/../s", HostPath: sec}, `not clean ("/s")`},
		{Mount{ContainerPath: "/etc/s\n", HostPath: sec}, "control characters"},
		{Mount{ContainerPath: "/s", HostPath: "var/lib/kubelet/pods/u/volumes/kubernetes.io~secret/s"}, "the host path is not an absolute path"},
	} {
		if _, err := PlanMounts([]Mount{tt.m}, os.Stat); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want it to contain %q", tt.m, err, tt.want)
		}
	}
	_, err := PlanMounts([]Mount{{ContainerPath: "/s", HostPath: sec}, {ContainerPath: "/s", HostPath: pod}}, os.Stat)
	if err == nil || !strings.Contains(err.Error(), "same container path") {
		t.Errorf("a share over a file mount's path: %v", err)
	}

	// Read errors: a missing directory, a link out of the volume.
	missing := filepath.Join(pod, "volumes/kubernetes.io~configmap/gone")
	outside := filepath.Join(pod, "node-file")
	if err := os.WriteFile(outside, []byte("node secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	evil := kubeletVolume(t, pod, "secret", "evil", map[string]key{"ok": {"v", 0o600}})
	if err := os.Symlink(outside, filepath.Join(evil, "stolen")); err != nil {
		t.Fatal(err)
	}
	p, err := PlanMounts([]Mount{{ContainerPath: "/gone", HostPath: missing}, {ContainerPath: "/evil", HostPath: evil}, {ContainerPath: "/fine", HostPath: sec}}, os.Stat)
	if err != nil {
		t.Fatal(err)
	}
	err = p.ReadFiles(context.Background(), MaxFileBytes)
	for _, want := range []string{
		`volume mount at "/evil" (host path "` + evil + `"): reading volume file ` + evil + `/stolen: a symbolic link leads out of the volume directory`,
		`volume mount at "/gone" (host path "` + missing + `"): reading volume directory`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to contain %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "node secret") {
		t.Errorf("the error shows a file's content: %v", err)
	}
}

// The bound is on all file mounts together; the one that passes it is named.
func TestFileVolumesBound(t *testing.T) {
	pod := t.TempDir()
	a := kubeletVolume(t, pod, "secret", "a", map[string]key{"k": {strings.Repeat("a", 600), 0o600}})
	b := kubeletVolume(t, pod, "configmap", "b", map[string]key{"k": {strings.Repeat("b", 400), 0o644}})
	mounts := []Mount{{ContainerPath: "/b", HostPath: b}, {ContainerPath: "/a", HostPath: a}}
	p, _ := PlanMounts(mounts, os.Stat)
	if err := p.ReadFiles(context.Background(), 1000); err != nil {
		t.Errorf("1000 bytes in a bound of 1000: %v", err)
	}
	p, _ = PlanMounts(mounts, os.Stat)
	err := p.ReadFiles(context.Background(), 999)
	want := `volume mount at "/b" (host path "` + b + `"): the files of the container's secret, configMap, projected and downwardAPI volumes exceed 999 bytes together`
	if !errors.Is(err, cloudinit.ErrTooLarge) || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v\nwant it to contain %q", err, want)
	}
	if strings.Contains(err.Error(), "bbbb") {
		t.Errorf("the error shows the content: %v", err)
	}
}

func TestChooseMetadata(t *testing.T) {
	dir := t.TempDir()
	var ms []Mount
	for _, d := range []string{"xattrs", "none", "broken"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, Mount{ContainerPath: "/" + d, HostPath: filepath.Join(dir, d)})
	}
	probe := func(p string) (bool, error) {
		switch filepath.Base(p) {
		case "xattrs":
			return true, nil
		case "none":
			return false, nil
		}
		return false, errors.New("permission denied")
	}
	p, err := PlanMounts(ms[:2], os.Stat)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ChooseMetadata(probe); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range p.Filesystems() {
		got = append(got, fmt.Sprintf("%s %v", f.Tag, f.MetadataInFiles))
	}
	if diff := cmp.Diff([]string{"none true", "xattrs false"}, got); diff != "" {
		t.Errorf("shares (-want +got):\n%s", diff)
	}
	p, err = PlanMounts(ms, os.Stat)
	if err != nil {
		t.Fatal(err)
	}
	err = p.ChooseMetadata(probe)
	if want := `volume mount at "/broken" (host path "` + filepath.Join(dir, "broken") + `"): asking whether the host directory takes user extended attributes: permission denied`; err == nil || err.Error() != want {
		t.Errorf("a failed probe: %v, want %s", err, want)
	}
}

// UserXattrs on the real filesystems: the test's temporary directory
// (ext4 or similar), a tmpfs (user xattrs since Linux 6.6) and a ramfs
// (none, like tmpfs before 6.6).
func TestUserXattrs(t *testing.T) {
	if ok, err := UserXattrs(t.TempDir()); !ok || err != nil {
		t.Errorf("UserXattrs(a temporary directory) = %v, %v; want true", ok, err)
	}
	if _, err := UserXattrs(filepath.Join(t.TempDir(), "gone")); err == nil || !strings.Contains(err.Error(), "getxattr") {
		t.Errorf("UserXattrs(a missing directory): %v, want a getxattr error", err)
	}
	if os.Geteuid() != 0 {
		if os.Getenv("PODVISOR_ALLOW_SKIP") == "1" {
			t.Skip("needs root to mount a ramfs")
		}
		t.Fatal("needs root to mount a ramfs (set PODVISOR_ALLOW_SKIP=1 to skip)")
	}
	for _, fstype := range []string{"ramfs", "tmpfs"} {
		d := t.TempDir()
		if out, err := exec.Command("mount", "-t", fstype, fstype, d).CombinedOutput(); err != nil {
			t.Fatalf("mount %s: %v\n%s", fstype, err, out)
		}
		ok, err := UserXattrs(d)
		// Through a symbolic link (a hostPath may be one): the target's
		// answer, not the link's.
		link := filepath.Join(t.TempDir(), "link")
		if err := os.Symlink(d, link); err != nil {
			t.Fatal(err)
		}
		if viaLink, err := UserXattrs(link); viaLink != ok || err != nil {
			t.Errorf("UserXattrs(a link to a %s) = %v, %v; want %v as for the directory", fstype, viaLink, err, ok)
		}
		exec.Command("umount", d).Run()
		if err != nil {
			t.Errorf("UserXattrs(%s): %v", fstype, err)
		}
		// Whether tmpfs takes them depends on the kernel; ramfs never does.
		t.Logf("%s takes user xattrs: %v", fstype, ok)
		if fstype == "ramfs" && ok {
			t.Errorf("UserXattrs(ramfs) = true, want false")
		}
	}
}
