package cloudinit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

const (
	key1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOne user1@example"
	key2 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQTwo user2@example"
	key3 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIThree user3@example"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// testDS holds every object the golden cases refer to, in namespace "ns".
func testDS() *StaticDataSource {
	return &StaticDataSource{
		ConfigMaps: map[string]map[string]string{
			"ns/ud": {
				"users":    "- name: fromsource\n  shell: /bin/sh\n",
				"runcmd":   "- echo from-source\n",
				"timezone": "UTC",
			},
			"ns/ud-key": {
				"script":      "#!/bin/sh\necho hello from a configmap script\n",
				"cloudconfig": b64("#cloud-config\npackages:\n- nginx\nruncmd:\n- echo from-key\n"),
				"other":       "ignored: true\n",
			},
			"ns/keys": {
				"authorized_keys": "# team keys\n" + key1 + "\n\n" + key2 + "\n",
				"ops":             key3 + "\n",
			},
			"ns/files": {
				"motd":            b64("hello guest\n"),
				"motd_path":       "/etc/motd",
				"app":             "port: 8080\n",
				"app_path":        "/etc/app/app.yaml",
				"app_encoding":    "plain",
				"app_mode":        "0600",
				"script":          b64("#!/bin/sh\necho hi\n"),
				"script_path":     "/usr/local/bin/hi",
				"script_mode":     "755",
				"script_encoding": "base64",
			},
		},
		Secrets: map[string]map[string][]byte{
			"ns/ud-secret": {
				"ssh_pwauth": []byte("true\n"),
				"chpasswd":   []byte("expire: false\n"),
				"password":   []byte("s3cret"),
			},
			"ns/keys": {
				"authorized_keys": []byte(key3 + "\n"),
			},
		},
	}
}

func base() Input {
	return Input{PodName: "vm", PodNamespace: "ns"}
}

func with(f func(*Input)) Input {
	in := base()
	f(&in)
	return in
}

var overlay = map[string]any{
	"users": []any{map[string]any{
		"name":                "cloudy",
		"gecos":               "Magic Cloud App Daemon User",
		"sudo":                "ALL=(ALL) NOPASSWD:ALL",
		"ssh_authorized_keys": []any{key1},
	}},
	"runcmd":   []any{"echo from-annotation"},
	"timezone": "Europe/Berlin",
	"chpasswd": map[string]any{"expire": false},
}

func singleNIC() *NetworkInfo {
	return &NetworkInfo{Interfaces: []Interface{{
		Name: "eth0", MAC: "0A:58:0A:F4:01:05", MTU: 1450,
		Addresses: []Address{{CIDR: "10.244.1.5/24", Gateway: "10.244.1.1"}},
		Routes: []Route{
			{Dst: "10.96.0.0/12"},
			{Dst: "0.0.0.0/0", Gateway: "10.244.1.1"}, // same as the gateway: folded
		},
	}}}
}

func multiNIC() *NetworkInfo {
	return &NetworkInfo{Interfaces: []Interface{
		{
			Name: "eth0", MAC: "0a:58:0a:f4:01:05", MTU: 1500,
			Addresses: []Address{
				{CIDR: "10.244.1.5/24", Gateway: "10.244.1.1"},
				{CIDR: "fd00:10:244:1::5/64", Gateway: "fd00:10:244:1::1"},
			},
			Routes: []Route{{Dst: "fd00:10:96::/112"}},
		},
		{
			Name: "net1", MAC: "0a:58:c0:a8:64:0a",
			Addresses: []Address{{CIDR: "192.168.100.10/24"}},
			Routes:    []Route{{Dst: "172.16.0.0/16", Gateway: "192.168.100.254"}},
		},
		{Name: "net2", MAC: "0a:58:c0:a8:65:0b"}, // no address: DHCP
	}}
}

var podDNS = &DNSConfig{
	Servers:  []string{"10.96.0.10"},
	Searches: []string{"ns.svc.cluster.local", "svc.cluster.local", "cluster.local"},
	Options:  []string{"ndots:5"},
}

var everything = func(in *Input) {
	in.MetaData = map[string]any{"availability-zone": "zone-a"}
	in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "ud"}
	in.UserData = overlay
	in.SSHKeys = []string{key2}
	in.SSHKeySource = &SourceRef{Kind: SourceSecret, Name: "keys"}
	in.FilesFrom = &SourceRef{Kind: SourceConfigMap, Name: "files"}
	in.Env = []EnvVar{{Name: "MY_VAR", Value: "42"}}
	in.Files = []GuestFile{{Path: "/etc/secret/token", Content: []byte("t0ken"), Mode: 0o400}}
	in.Mounts = [][]string{{"data", "/data", "9p", "trans=virtio"}}
	in.Network = singleNIC()
	in.DNS = podDNS
}

var goldenCases = []struct {
	name string
	in   Input
}{
	// Each annotation alone.
	{"plain", base()},
	{"plain_configdrive", with(func(in *Input) { in.Type = ConfigDrive })},
	{"hostname", with(func(in *Input) { in.Hostname = "vm-host" })},
	{"metadata", with(func(in *Input) {
		in.MetaData = map[string]any{"local-hostname": "custom", "extra": map[string]any{"a": 1}}
	})},
	{"metadata_configdrive", with(func(in *Input) {
		in.Type = ConfigDrive
		in.MetaData = map[string]any{"instance-id": "fixed-id", "local-hostname": "custom"}
	})},
	{"userdata", with(func(in *Input) { in.UserData = overlay })},
	{"userdata_overwrite", with(func(in *Input) { in.UserData = overlay; in.UserDataOverwrite = true })},
	{"userdata_script", with(func(in *Input) { in.UserDataScript = "#!/bin/sh\necho hello\n" })},
	{"userdata_source_configmap", with(func(in *Input) { in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "ud"} })},
	{"userdata_source_secret", with(func(in *Input) { in.UserDataSource = &SourceRef{Kind: SourceSecret, Name: "ud-secret"} })},
	{"userdata_source_key_script", with(func(in *Input) {
		in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "ud-key", Key: "script"}
	})},
	{"userdata_source_key_base64_cloudconfig", with(func(in *Input) {
		in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "ud-key", Key: "cloudconfig", Encoding: EncodingBase64}
	})},
	{"sshkeys", with(func(in *Input) { in.SSHKeys = []string{key1, key2} })},
	{"sshkeys_configdrive", with(func(in *Input) { in.Type = ConfigDrive; in.SSHKeys = []string{key1, key2} })},
	{"sshkeysource", with(func(in *Input) { in.SSHKeySource = &SourceRef{Kind: SourceConfigMap, Name: "keys"} })},
	{"sshkeysource_key", with(func(in *Input) { in.SSHKeySource = &SourceRef{Kind: SourceConfigMap, Name: "keys", Key: "ops"} })},
	{"filesfrom", with(func(in *Input) { in.FilesFrom = &SourceRef{Kind: SourceConfigMap, Name: "files"} })},
	{"env", with(func(in *Input) {
		in.Env = []EnvVar{{Name: "PLAIN", Value: "value"}, {Name: "SPACED", Value: "two words"}, {Name: "QUOTE", Value: "it's $HOME"}}
	})},
	{"volumes", with(func(in *Input) {
		in.Files = []GuestFile{
			{Path: "/etc/secret/password", Content: []byte("pw"), Mode: 0o400},
			{Path: "/etc/config/app.conf", Content: []byte("a=1\n")},
		}
		in.Mounts = [][]string{{"data", "/data", "9p", "trans=virtio"}}
		in.RunCmd = []string{"/etc/cloud/mount-volumes.sh"}
	})},
	// 9p shares as runtime/volume gives them, merged after the user's own
	// mounts and runcmd (Virtlet's order).
	{"volumes_9p_merge", with(func(in *Input) {
		in.UserData = map[string]any{
			"mounts": []any{[]any{"/dev/vdb", "/mnt/extra", "ext4", "defaults", "0", "2"}},
			"runcmd": []any{"echo from-user"},
		}
		in.Mounts = [][]string{
			{"data", "/var/data", "9p", "trans=virtio,version=9p2000.L,msize=262144,nofail", "0", "0"},
			{"cfg", "/etc/cfg", "9p", "trans=virtio,version=9p2000.L,msize=262144,ro,nofail", "0", "0"},
		}
		in.Files = []GuestFile{{Path: "/etc/cloud/mount-volumes.sh", Mode: 0o755, Content: []byte("#!/bin/sh\n" +
			"if ! mountpoint -q '/var/data'; then mkdir -p '/var/data' && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 data '/var/data'; fi\n" +
			"chown -R 1000:1000 '/var/data'\n")}}
		in.RunCmd = []string{"chown -R 1000:1000 '/var/data'"}
	})},
	// The pod's sysctls: bootcmd after the user's own, and a sysctl.d file
	// after the other generated files. argv lists: no shell sees the values.
	{"sysctls_bootcmd_merge", with(func(in *Input) {
		in.UserData = map[string]any{
			"bootcmd":     []any{"echo from-user > /dev/console", []any{"modprobe", "sch_fq"}},
			"write_files": []any{map[string]any{"path": "/etc/from-user", "content": "x"}},
		}
		in.Env = []EnvVar{{Name: "A", Value: "1"}}
		in.Sysctls = []Sysctl{
			{Name: "kernel.shm_rmid_forced", Value: "1"},
			{Name: "net.ipv4.ip_local_port_range", Value: "1024 65000"},
			{Name: "net/ipv4/ping_group_range", Value: "0\t2147483647"},
			{Name: "kernel.domainname", Value: "it's $(reboot) ; `x`"},
		}
	})},
	// Block volumes' device links (runtime/volume's GuestLinks, golden
	// there): bootcmd after the user's and the sysctls', before the
	// user's mounts of the device path run.
	{"block_links_bootcmd_merge", with(func(in *Input) {
		in.UserData = map[string]any{
			"bootcmd": []any{"echo from-user"},
			"mounts":  []any{[]any{"/dev/testpvc", "/mnt"}},
		}
		in.Sysctls = []Sysctl{{Name: "kernel.shm_rmid_forced", Value: "1"}}
		in.BootCmd = []string{"(\npodvisor_link() { :; }\nrc=0\npodvisor_link 'podvisor-0c1b9d1e' '/dev/testpvc' || rc=1\nexit $rc\n)\n"}
	})},
	// A user-data script without @virtlet-mount-script@ gets no links: a
	// warning says so.
	{"block_links_script", with(func(in *Input) {
		in.UserDataScript = "#!/bin/sh\necho hello\n"
		in.BootCmd = []string{"(\nexit 0\n)\n"}
	})},
	{"sysctls_configdrive", with(func(in *Input) {
		in.Type = ConfigDrive
		in.Sysctls = []Sysctl{{Name: "kernel.shm_rmid_forced", Value: "1"}}
	})},
	// A user-data script cannot take them: a warning says so.
	{"sysctls_script", with(func(in *Input) {
		in.UserDataScript = "#!/bin/sh\necho hello\n"
		in.Sysctls = []Sysctl{{Name: "kernel.shm_rmid_forced", Value: "1"}, {Name: "kernel.msgmax", Value: "65536"}}
	})},
	{"network_v1", with(func(in *Input) { in.Network = singleNIC(); in.DNS = podDNS })},
	{"network_v2", with(func(in *Input) { in.Network = singleNIC(); in.DNS = podDNS; in.NetworkConfigVersion = 2 })},
	{"network_configdrive", with(func(in *Input) { in.Type = ConfigDrive; in.Network = singleNIC(); in.DNS = podDNS })},
	{"network_dhcp_forced", with(func(in *Input) { in.Network = singleNIC(); in.DNS = podDNS; in.ForceDHCP = true })},

	// Combinations that interact.
	{"source_overlay_merge", with(func(in *Input) {
		in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "ud"}
		in.UserData = overlay
	})},
	{"source_overlay_overwrite", with(func(in *Input) {
		in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "ud"}
		in.UserData = overlay
		in.UserDataOverwrite = true
		in.Env = []EnvVar{{Name: "KEPT", Value: "generated parts survive overwrite"}}
	})},
	{"source_overlay_overwrite_script", with(func(in *Input) {
		in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "ud"}
		in.UserData = overlay
		in.UserDataOverwrite = true
		in.UserDataScript = "#!/bin/sh\necho script wins\n"
	})},
	{"source_key_cloudconfig_overlay", with(func(in *Input) {
		in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "ud-key", Key: "cloudconfig", Encoding: EncodingBase64}
		in.UserData = overlay
	})},
	{"source_key_script_and_script", with(func(in *Input) {
		in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "ud-key", Key: "script"}
		in.UserDataScript = "#!/bin/sh\necho loses\n"
		in.UserData = overlay
	})},
	{"script_mount_placeholder", with(func(in *Input) {
		in.UserDataScript = "#!/bin/sh\n@virtlet-mount-script@\necho mounted\n"
		in.MountScript = "mkdir -p /data && mount -t 9p -o trans=virtio data /data"
		in.Mounts = [][]string{{"data", "/data", "9p", "trans=virtio"}}
		in.Env = []EnvVar{{Name: "DROPPED", Value: "1"}}
	})},
	{"sshkeys_and_source", with(func(in *Input) {
		in.SSHKeySource = &SourceRef{Kind: SourceConfigMap, Name: "keys"}
		in.SSHKeys = []string{key3, key1} // key1 is also in the source: once
	})},
	{"sshkeys_and_source_overwrite", with(func(in *Input) {
		in.SSHKeySource = &SourceRef{Kind: SourceConfigMap, Name: "keys"}
		in.SSHKeys = []string{key3}
		in.UserDataOverwrite = true
	})},
	{"overlay_write_files_and_generated", with(func(in *Input) {
		in.UserData = map[string]any{"write_files": []any{map[string]any{"path": "/etc/from-annotation", "content": "x"}}}
		in.FilesFrom = &SourceRef{Kind: SourceConfigMap, Name: "files"}
		in.Env = []EnvVar{{Name: "A", Value: "1"}}
	})},
	{"network_multi_v1", with(func(in *Input) { in.Network = multiNIC(); in.DNS = podDNS })},
	{"network_multi_v2", with(func(in *Input) { in.Network = multiNIC(); in.DNS = podDNS; in.NetworkConfigVersion = 2 })},
	{"network_multi_configdrive", with(func(in *Input) { in.Type = ConfigDrive; in.Network = multiNIC(); in.DNS = podDNS })},
	{"network_dhcp_forced_configdrive", with(func(in *Input) {
		in.Type = ConfigDrive
		in.Network = singleNIC()
		in.ForceDHCP = true
	})},
	{"everything_nocloud", with(everything)},
	{"everything_nocloud_v2", with(func(in *Input) { everything(in); in.NetworkConfigVersion = 2 })},
	{"everything_configdrive", with(func(in *Input) { everything(in); in.Type = ConfigDrive })},
}

const goldenDir = "testdata/golden"

func TestGenerateGolden(t *testing.T) {
	ctx := context.Background()
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Generate(ctx, tc.in, testDS())
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			checkWellFormed(t, tc.in, c)
			got := contentsAsFiles(c)
			dir := filepath.Join(goldenDir, tc.name)
			if *update {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				for p, data := range got {
					fp := filepath.Join(dir, filepath.FromSlash(p))
					if err := os.MkdirAll(filepath.Dir(fp), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(fp, []byte(data), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			want := readTree(t, dir)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("drive differs from %s (-golden +got); run go test ./runtime/cloudinit/ -update to accept:\n%s", dir, diff)
			}
			// Deterministic: a second run gives the same bytes.
			c2, err := Generate(ctx, tc.in, testDS())
			if err != nil {
				t.Fatalf("second Generate: %v", err)
			}
			if diff := cmp.Diff(got, contentsAsFiles(c2)); diff != "" {
				t.Errorf("second run differs:\n%s", diff)
			}
		})
	}
}

// TestGoldenDirsHaveCases catches golden directories left from renamed cases.
func TestGoldenDirsHaveCases(t *testing.T) {
	entries, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, tc := range goldenCases {
		names[tc.name] = true
	}
	for _, e := range entries {
		if !names[e.Name()] {
			t.Errorf("%s/%s has no test case; delete it", goldenDir, e.Name())
		}
	}
}

func contentsAsFiles(c *Contents) map[string]string {
	m := map[string]string{"label": c.Label + "\n"}
	for _, f := range c.Files {
		m[f.Path] = string(f.Data)
	}
	if len(c.Warnings) > 0 {
		m["warnings"] = strings.Join(c.Warnings, "\n") + "\n"
	}
	return m
}

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		m[filepath.ToSlash(rel)] = string(data)
		return nil
	})
	if err != nil {
		t.Fatalf("reading golden %s: %v (run with -update to create it)", dir, err)
	}
	return m
}

// checkWellFormed asserts what must hold whatever the golden files say:
// the file set of the drive type, parseable formats, identity keys.
func checkWellFormed(t *testing.T, in Input, c *Contents) {
	t.Helper()
	var md, ud, nw string
	switch in.Type {
	case ConfigDrive:
		if c.Label != "config-2" {
			t.Errorf("label %q, want config-2", c.Label)
		}
		md, ud, nw = PathConfigDriveMetaData, PathConfigDriveUserData, PathConfigDriveNetwork
	default:
		if c.Label != "cidata" {
			t.Errorf("label %q, want cidata", c.Label)
		}
		md, ud, nw = PathNoCloudMetaData, PathNoCloudUserData, PathNoCloudNetwork
	}
	if !sort.SliceIsSorted(c.Files, func(i, j int) bool { return c.Files[i].Path < c.Files[j].Path }) {
		t.Errorf("files not sorted by path")
	}
	meta, ok := c.File(md)
	if !ok {
		t.Fatalf("no %s", md)
	}
	var m map[string]any
	if err := yaml.Unmarshal(meta, &m); err != nil {
		t.Fatalf("%s is not YAML/JSON: %v", md, err)
	}
	if _, ok := in.MetaData["instance-id"]; !ok && m["instance-id"] != in.PodName+"."+in.PodNamespace {
		t.Errorf("instance-id = %v, want %s.%s", m["instance-id"], in.PodName, in.PodNamespace)
	}
	if in.Type == ConfigDrive {
		if !json.Valid(meta) {
			t.Errorf("%s is not JSON", md)
		}
		if m["uuid"] != m["instance-id"] || m["hostname"] != m["local-hostname"] {
			t.Errorf("configdrive copies disagree: uuid %v instance-id %v hostname %v local-hostname %v",
				m["uuid"], m["instance-id"], m["hostname"], m["local-hostname"])
		}
	}
	user, ok := c.File(ud)
	if !ok {
		t.Fatalf("no %s", ud)
	}
	if strings.HasPrefix(string(user), "#cloud-config\n") {
		var u map[string]any
		if err := yaml.Unmarshal(user, &u); err != nil {
			t.Errorf("%s is not YAML: %v", ud, err)
		}
		if len(in.Sysctls) > 0 {
			conf, err := sysctlConf(in.Sysctls)
			if err != nil {
				t.Fatal(err)
			}
			if !hasWriteFile(u, SysctlConfPath, b64(conf)) {
				t.Errorf("%s has no write_files entry for %s with %q", ud, SysctlConfPath, conf)
			}
			bc, _ := u["bootcmd"].([]any)
			if len(bc) < len(in.Sysctls)+len(in.BootCmd) {
				t.Fatalf("bootcmd has %d entries, want at least the %d sysctls and %d more", len(bc), len(in.Sysctls), len(in.BootCmd))
			}
			// The sysctls, then Input.BootCmd's entries.
			for i, c := range in.BootCmd {
				if got := bc[len(bc)-len(in.BootCmd)+i]; got != c {
					t.Errorf("bootcmd entry %d from Input.BootCmd: %q, want %q", i, got, c)
				}
			}
			bc = bc[:len(bc)-len(in.BootCmd)]
			tail := bc[len(bc)-len(in.Sysctls):]
			for i, sc := range in.Sysctls {
				want := []any{"sysctl", "-w", sc.Name + "=" + sc.Value}
				if d := cmp.Diff(want, tail[i]); d != "" {
					t.Errorf("bootcmd entry for %s (-want +got):\n%s", sc.Name, d)
				}
			}
		}
		if env := envFile(in.Env); env != "" && in.UserDataScript == "" {
			if !hasWriteFile(u, EnvFilePath, env) {
				t.Errorf("%s has no write_files entry for %s with %q", ud, EnvFilePath, env)
			}
		}
	}
	netData, hasNet := c.File(nw)
	wantNet := in.Network != nil && !in.ForceDHCP
	if hasNet != wantNet {
		t.Errorf("network config present = %v, want %v", hasNet, wantNet)
	}
	if hasNet {
		var n map[string]any
		if err := yaml.Unmarshal(netData, &n); err != nil {
			t.Errorf("%s is not YAML/JSON: %v", nw, err)
		}
		if in.Type != ConfigDrive {
			want := float64(1)
			if in.NetworkConfigVersion == 2 {
				want = 2
			}
			if n["version"] != want {
				t.Errorf("network config version %v, want %v", n["version"], want)
			}
		}
		for _, ifc := range in.Network.Interfaces {
			if !strings.Contains(string(netData), strings.ToLower(ifc.MAC)) {
				t.Errorf("network config lacks MAC %s", ifc.MAC)
			}
		}
	}
}

func hasWriteFile(u map[string]any, path, content string) bool {
	wf, _ := u["write_files"].([]any)
	for _, e := range wf {
		m, _ := e.(map[string]any)
		if m["path"] == path && m["content"] == content {
			return true
		}
	}
	return false
}
