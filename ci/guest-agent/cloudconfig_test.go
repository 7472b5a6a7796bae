package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func goldenUserData(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(golden, dir, "user-data"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseCloudConfigGoldens(t *testing.T) {
	tests := []struct {
		dir  string
		want *cloudConfig
	}{
		{"volumes", &cloudConfig{
			Files: []guestFile{
				{Path: "/etc/secret/password", Content: []byte("pw"), Mode: 0o400},
				{Path: "/etc/config/app.conf", Content: []byte("a=1\n"), Mode: 0o644},
			},
			Mounts: [][]string{{"data", "/data", "9p", "trans=virtio"}},
			RunCmd: [][]string{{"sh", "-c", "/etc/cloud/mount-volumes.sh"}},
		}},
		{"env", &cloudConfig{Files: []guestFile{{
			Path: "/etc/cloud/environment", Mode: 0o644,
			Content: []byte("PLAIN=value\nSPACED='two words'\nQUOTE='it'\\''s $HOME'\n"),
		}}}},
		{"plain", &cloudConfig{}},
		{"sysctls_bootcmd_merge", &cloudConfig{
			BootCmd: [][]string{
				{"sh", "-c", "echo from-user > /dev/console"},
				{"modprobe", "sch_fq"},
				{"sysctl", "-w", "kernel.shm_rmid_forced=1"},
				{"sysctl", "-w", "net.ipv4.ip_local_port_range=1024 65000"},
				{"sysctl", "-w", "net/ipv4/ping_group_range=0\t2147483647"},
				{"sysctl", "-w", "kernel.domainname=it's $(reboot) ; `x`"},
			},
			Files: []guestFile{
				{Path: "/etc/from-user", Content: []byte("x"), Mode: 0o644},
				{Path: "/etc/cloud/environment", Content: []byte("A=1\n"), Mode: 0o644},
				{Path: "/etc/sysctl.d/90-podvisor.conf", Mode: 0o644, Content: []byte("kernel.shm_rmid_forced = 1\n" +
					"net.ipv4.ip_local_port_range = 1024 65000\nnet/ipv4/ping_group_range = 0\t2147483647\n" +
					"kernel.domainname = it's $(reboot) ; `x`\n")},
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			got, err := parseCloudConfig(goldenUserData(t, tt.dir))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	// Every cloud-config podvisor writes parses.
	ents, err := os.ReadDir(golden)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(golden, e.Name(), "user-data"))
		if err != nil || !bytes.HasPrefix(b, []byte("#cloud-config")) {
			continue
		}
		n++
		if _, err := parseCloudConfig(string(b)); err != nil {
			t.Errorf("%s: %v", e.Name(), err)
		}
	}
	if n < 10 {
		t.Errorf("only %d cloud-config goldens found", n)
	}
}

func TestBlockScalars(t *testing.T) {
	src := "#cloud-config\nwrite_files:\n- path: /a\n  content: |\n    #!/bin/sh\n\n    echo hi\n      indented\n\n- path: /b\n  content: |-\n    no newline\n- path: /c\n  content: |+\n    keep\n\n\nruncmd:\n- [ls, -l]\n- |\n  echo two\n  echo lines\n"
	got, err := parseCloudConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	want := &cloudConfig{
		Files: []guestFile{
			{Path: "/a", Content: []byte("#!/bin/sh\n\necho hi\n  indented\n"), Mode: 0o644},
			{Path: "/b", Content: []byte("no newline"), Mode: 0o644},
			{Path: "/c", Content: []byte("keep\n\n\n"), Mode: 0o644},
		},
		RunCmd: [][]string{{"ls", "-l"}, {"sh", "-c", "echo two\necho lines\n"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestCloudConfigErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"#!/bin/sh\necho\n", "not #cloud-config"},
		{"#cloud-config\nwrite_files:\n- path: rel\n", `write_files[0].path: "rel" is not an absolute path`},
		{"#cloud-config\nwrite_files:\n- path: /x\n  encoding: gz+b64\n", `write_files[0].encoding: "gz+b64"`},
		{"#cloud-config\nwrite_files:\n- path: /x\n  content: '!!'\n  encoding: b64\n", "content is not base64"},
		{"#cloud-config\nwrite_files:\n- path: /x\n  permissions: '0999'\n", `permissions: "0999" is not an octal mode`},
		{"#cloud-config\nmounts:\n- [only]\n", "mounts[0]: want [device, directory, type, options]"},
		{"#cloud-config\nbootcmd:\n- []\n", "bootcmd[0]: empty command"},
		{"#cloud-config\nbootcmd:\n- a: b\n", "bootcmd[0]: want a string or a list"},
		{"#cloud-config\nwrite_files:\n- path: /x\n  content: >\n    folded\n", `block scalar ">"`},
	}
	for _, tt := range tests {
		if _, err := parseCloudConfig(tt.src); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want an error containing %q", tt.src, err, tt.want)
		}
	}
}

type fakeCloud struct {
	files []string
	runs  []string
	// steps are the files and commands in the order they happened.
	steps []string
	fail  string
}

func (f *fakeCloud) WriteFile(g guestFile) error {
	f.files = append(f.files, g.Path)
	f.steps = append(f.steps, "write "+g.Path)
	return nil
}

func (f *fakeCloud) Run(argv ...string) (string, error) {
	c := strings.Join(argv, " ")
	f.runs = append(f.runs, c)
	f.steps = append(f.steps, "run "+c)
	if f.fail != "" && strings.Contains(c, f.fail) {
		return "no such device\n", errors.New("exit status 32")
	}
	return "", nil
}

func TestApplyCloudConfig(t *testing.T) {
	cc, err := parseCloudConfig(goldenUserData(t, "volumes"))
	if err != nil {
		t.Fatal(err)
	}
	ops := &fakeCloud{fail: "mount -t 9p"}
	var log bytes.Buffer
	if n := applyCloudConfig(cc, ops, &log); n != 1 {
		t.Errorf("failed steps = %d, want 1 (the mount)", n)
	}
	if d := cmp.Diff([]string{"/etc/secret/password", "/etc/config/app.conf"}, ops.files); d != "" {
		t.Errorf("files (-want +got):\n%s", d)
	}
	wantRuns := []string{"mkdir -p /data", "mount -t 9p -o trans=virtio data /data", "sh -c /etc/cloud/mount-volumes.sh"}
	if d := cmp.Diff(wantRuns, ops.runs); d != "" {
		t.Errorf("commands (-want +got):\n%s", d)
	}
	if !strings.Contains(log.String(), "cloud-config: mounted data on /data: FAILED: exit status 32: no such device") {
		t.Errorf("log lacks the failed mount:\n%s", log.String())
	}
}

func TestApplyCloudConfigVolumes(t *testing.T) {
	cc, err := parseCloudConfig(goldenUserData(t, "volumes_9p_merge"))
	if err != nil {
		t.Fatal(err)
	}
	cc.Mounts = append(cc.Mounts, []string{"later", "/later", "9p", "trans=virtio,noauto"})
	ops := &fakeCloud{}
	var log bytes.Buffer
	if n := applyCloudConfig(cc, ops, &log); n != 0 {
		t.Errorf("failed steps = %d:\n%s", n, log.String())
	}
	wantRuns := []string{
		"mkdir -p /mnt/extra", "mount -t ext4 /dev/vdb /mnt/extra",
		"mkdir -p /var/data", "mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 data /var/data",
		"mkdir -p /etc/cfg", "mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro cfg /etc/cfg",
		"sh -c echo from-user",
		"sh -c chown -R 1000:1000 '/var/data'",
	}
	if d := cmp.Diff(wantRuns, ops.runs); d != "" {
		t.Errorf("commands (-want +got):\n%s", d)
	}
	if !strings.Contains(log.String(), "later on /later is noauto: not mounted") {
		t.Errorf("log lacks the noauto entry:\n%s", log.String())
	}
}

// bootcmd runs first, argv lists without a shell, and a failing one does
// not stop the rest.
func TestApplyCloudConfigBootCmd(t *testing.T) {
	cc, err := parseCloudConfig("#cloud-config\nbootcmd:\n- echo early\n- [sysctl, -w, kernel.nope=1]\n- - sysctl\n  - -w\n  - net.ipv4.ip_local_port_range=1024 65000\n" +
		"write_files:\n- path: /etc/sysctl.d/90-podvisor.conf\n  content: x\nruncmd:\n- echo late\n")
	if err != nil {
		t.Fatal(err)
	}
	ops := &fakeCloud{fail: "kernel.nope"}
	var log bytes.Buffer
	if n := applyCloudConfig(cc, ops, &log); n != 1 {
		t.Errorf("failed steps = %d, want 1:\n%s", n, log.String())
	}
	want := []string{
		"run sh -c echo early",
		"run sysctl -w kernel.nope=1",
		"run sysctl -w net.ipv4.ip_local_port_range=1024 65000",
		"write /etc/sysctl.d/90-podvisor.conf",
		"run sh -c echo late",
	}
	if d := cmp.Diff(want, ops.steps); d != "" {
		t.Errorf("steps (-want +got):\n%s", d)
	}
	if !strings.Contains(log.String(), "cloud-config: ran sysctl -w kernel.nope=1: FAILED: exit status 32") {
		t.Errorf("log lacks the failed bootcmd:\n%s", log.String())
	}
}

func TestKernelMountOptions(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		noauto   bool
	}{
		{"defaults", "", false},
		{"trans=virtio,version=9p2000.L,ro,nofail,comment=cloudconfig", "trans=virtio,version=9p2000.L,ro", false},
		{"defaults,nofail,x-systemd.requires=cloud-init.service,_netdev", "", false},
		{"noauto,rw", "rw", true},
	} {
		got, noauto := kernelMountOptions(tc.in)
		if got != tc.want || noauto != tc.noauto {
			t.Errorf("kernelMountOptions(%q) = %q, %v; want %q, %v", tc.in, got, noauto, tc.want, tc.noauto)
		}
	}
}

func TestGuestCloudOpsWriteFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "f")
	ops := guestCloudOps{}
	if err := ops.WriteFile(guestFile{Path: p, Content: []byte("one\n"), Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	if err := ops.WriteFile(guestFile{Path: p, Content: []byte("two\n"), Mode: 0o600, Append: true}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	st, _ := os.Stat(p)
	if err != nil || string(b) != "one\ntwo\n" || st.Mode().Perm() != 0o600 {
		t.Errorf("file = %q, mode %v, %v", b, st.Mode(), err)
	}
}
