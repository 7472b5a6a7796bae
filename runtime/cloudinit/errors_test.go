package cloudinit

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestGenerateErrors(t *testing.T) {
	ds := testDS()
	ds.ConfigMaps["ns/badyaml"] = map[string]string{"users": "- [unclosed"}
	ds.ConfigMaps["ns/badfiles"] = map[string]string{"f": "eA=="}
	ds.ConfigMaps["ns/badenc"] = map[string]string{"f": "x", "f_path": "/x", "f_encoding": "rot13"}
	ds.ConfigMaps["ns/badmode"] = map[string]string{"f": "x", "f_path": "/x", "f_encoding": "plain", "f_mode": "999"}
	ds.ConfigMaps["ns/relpath"] = map[string]string{"f": "x", "f_path": "etc/x", "f_encoding": "plain"}
	ds.ConfigMaps["ns/notb64"] = map[string]string{"f": "not base64!", "f_path": "/x"}
	ds.ConfigMaps["ns/ccnotmap"] = map[string]string{"k": "#cloud-config\n- a list\n"}

	tests := []struct {
		name string
		in   Input
		ds   DataSource
		want []string // all must appear in the error
	}{
		{"no pod name", Input{PodNamespace: "ns"}, nil, []string{"pod name"}},
		{"sysctl name with =", with(func(in *Input) { in.Sysctls = []Sysctl{{Name: "kernel.x=1", Value: "1"}} }), nil,
			[]string{"pod ns/vm", `sysctl name "kernel.x=1"`, "without spaces"}},
		{"sysctl value with a newline", with(func(in *Input) { in.Sysctls = []Sysctl{{Name: "kernel.msgmax", Value: "1\nkernel.panic = 1"}} }), nil,
			[]string{"pod ns/vm", "sysctl kernel.msgmax", "on one line"}},
		{"empty sysctl value", with(func(in *Input) { in.Sysctls = []Sysctl{{Name: "kernel.msgmax"}} }), nil,
			[]string{"sysctl kernel.msgmax", "non-empty"}},
		{"DNS option with a space", with(func(in *Input) {
			in.DNS = &DNSConfig{Servers: []string{"10.96.0.10"}, Options: []string{"ndots:5", "x; reboot"}}
		}), nil, []string{"pod ns/vm", "dns_config.options", `"x; reboot"`, "ndots:5"}},
		{"bad image type", with(func(in *Input) { in.Type = "iso" }), nil,
			[]string{"pod ns/vm", "VirtletCloudInitImageType", `"iso"`, "nocloud", "configdrive"}},
		{"bad network version", with(func(in *Input) { in.NetworkConfigVersion = 3 }), nil,
			[]string{"pod ns/vm", "version 3", "1 or 2"}},
		{"user-data source without client", with(func(in *Input) {
			in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "ud"}
		}), nil, []string{"pod ns/vm", "VirtletCloudInitUserDataSource", "configmap/ud", "no", "Kubernetes client"}},
		{"ssh key source without client", with(func(in *Input) {
			in.SSHKeySource = &SourceRef{Kind: SourceSecret, Name: "keys", Key: "k"}
		}), nil, []string{"pod ns/vm", "VirtletSSHKeySource", "secret/keys/k", "Kubernetes client"}},
		{"files source without client", with(func(in *Input) {
			in.FilesFrom = &SourceRef{Kind: SourceConfigMap, Name: "files"}
		}), nil, []string{"pod ns/vm", "VirtletFilesFromDataSource", "configmap/files", "Kubernetes client"}},
		{"missing configmap", with(func(in *Input) {
			in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "nope"}
		}), ds, []string{"pod ns/vm", "VirtletCloudInitUserDataSource", "configmap ns/nope", "not found"}},
		{"missing user-data key", with(func(in *Input) {
			in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "ud-key", Key: "nokey"}
		}), ds, []string{"VirtletCloudInitUserDataSourceKey", `"nokey"`, `"script"`}},
		{"bad encoding", with(func(in *Input) {
			in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "ud-key", Key: "script", Encoding: "hex"}
		}), ds, []string{"VirtletCloudInitUserDataSourceEncoding", `"hex"`, "plain", "base64"}},
		{"bad base64", with(func(in *Input) {
			in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "ud-key", Key: "script", Encoding: EncodingBase64}
		}), ds, []string{"VirtletCloudInitUserDataSourceEncoding", "not valid base64"}},
		{"cloud-config key not a map", with(func(in *Input) {
			in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "ccnotmap", Key: "k"}
		}), ds, []string{"VirtletCloudInitUserDataSourceKey", "not a YAML map"}},
		{"source key not YAML", with(func(in *Input) {
			in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "badyaml"}
		}), ds, []string{"VirtletCloudInitUserDataSource", `key "users"`, "not valid YAML"}},
		{"ssh key source missing key", with(func(in *Input) {
			in.SSHKeySource = &SourceRef{Kind: SourceSecret, Name: "keys", Key: "ops"}
		}), ds, []string{"VirtletSSHKeySource", `"ops"`, `"authorized_keys"`}},
		{"files without path", with(func(in *Input) {
			in.FilesFrom = &SourceRef{Kind: SourceConfigMap, Name: "badfiles"}
		}), ds, []string{"VirtletFilesFromDataSource", `"f_path"`}},
		{"files bad encoding", with(func(in *Input) {
			in.FilesFrom = &SourceRef{Kind: SourceConfigMap, Name: "badenc"}
		}), ds, []string{"VirtletFilesFromDataSource", `"f_encoding"`, `"rot13"`}},
		{"files bad mode", with(func(in *Input) {
			in.FilesFrom = &SourceRef{Kind: SourceConfigMap, Name: "badmode"}
		}), ds, []string{"VirtletFilesFromDataSource", `"f_mode"`, `"999"`, "octal"}},
		{"files relative path", with(func(in *Input) {
			in.FilesFrom = &SourceRef{Kind: SourceConfigMap, Name: "relpath"}
		}), ds, []string{"VirtletFilesFromDataSource", `"etc/x"`, "absolute"}},
		{"files not base64", with(func(in *Input) {
			in.FilesFrom = &SourceRef{Kind: SourceConfigMap, Name: "notb64"}
		}), ds, []string{"VirtletFilesFromDataSource", `"f"`, "base64"}},
		{"guest file relative", with(func(in *Input) {
			in.Files = []GuestFile{{Path: "x/../y"}}
		}), nil, []string{"pod ns/vm", `"x/../y"`}},
		{"user-data not JSON-able", with(func(in *Input) {
			in.UserData = map[string]any{"f": func() {}}
		}), nil, []string{"VirtletCloudInitUserData", "JSON"}},
		{"bad MAC", with(func(in *Input) {
			in.Network = &NetworkInfo{Interfaces: []Interface{{MAC: "zz"}}}
		}), nil, []string{"pod ns/vm", "eth0", `"zz"`, "MAC"}},
		{"duplicate MAC", with(func(in *Input) {
			in.Network = &NetworkInfo{Interfaces: []Interface{{MAC: "02:00:00:00:00:01"}, {MAC: "02:00:00:00:00:01"}}}
		}), nil, []string{"eth1", "used twice"}},
		{"bad CIDR", with(func(in *Input) {
			in.Network = &NetworkInfo{Interfaces: []Interface{{MAC: "02:00:00:00:00:01", Addresses: []Address{{CIDR: "10.1.2.3"}}}}}
		}), nil, []string{`"10.1.2.3"`, "prefix length"}},
		{"gateway of other family", with(func(in *Input) {
			in.Network = &NetworkInfo{Interfaces: []Interface{{MAC: "02:00:00:00:00:01",
				Addresses: []Address{{CIDR: "10.1.2.3/24", Gateway: "fd00::1"}}}}}
		}), nil, []string{`"fd00::1"`, "same family"}},
		{"route without any gateway", with(func(in *Input) {
			in.Network = &NetworkInfo{Interfaces: []Interface{{MAC: "02:00:00:00:00:01",
				Addresses: []Address{{CIDR: "10.1.2.3/24"}}, Routes: []Route{{Dst: "10.96.0.0/12"}}}}}
		}), nil, []string{"10.96.0.0/12", "no gateway"}},
		{"bad MTU", with(func(in *Input) {
			in.Network = &NetworkInfo{Interfaces: []Interface{{MAC: "02:00:00:00:00:01", MTU: -1}}}
		}), nil, []string{"MTU -1"}},
		{"bad DNS server", with(func(in *Input) {
			in.Network = &NetworkInfo{Interfaces: []Interface{{MAC: "02:00:00:00:00:01"}}}
			in.DNS = &DNSConfig{Servers: []string{"dns.example"}}
		}), nil, []string{`"dns.example"`, "IP address"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Generate(context.Background(), tc.in, tc.ds)
			if err == nil {
				t.Fatalf("Generate succeeded, want an error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestGenerateNotFoundIsWrapped(t *testing.T) {
	in := with(func(in *Input) { in.SSHKeySource = &SourceRef{Kind: SourceSecret, Name: "missing"} })
	_, err := Generate(context.Background(), in, testDS())
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("error %v does not wrap ErrNotFound", err)
	}
}

// The caller's maps must come back untouched: they belong to the parsed
// annotations, which may be reused.
func TestGenerateDoesNotModifyInput(t *testing.T) {
	ud := map[string]any{"runcmd": []any{"a"}, "write_files": []any{map[string]any{"path": "/p"}}}
	md := map[string]any{"x": "y"}
	in := with(func(in *Input) {
		in.UserData = ud
		in.MetaData = md
		in.Env = []EnvVar{{Name: "A", Value: "1"}}
		in.RunCmd = []string{"b"}
		in.UserDataSource = &SourceRef{Kind: SourceConfigMap, Name: "ud"}
	})
	if _, err := Generate(context.Background(), in, testDS()); err != nil {
		t.Fatal(err)
	}
	if got := len(ud["runcmd"].([]any)); got != 1 {
		t.Errorf("runcmd of the input has %d entries after Generate, want 1", got)
	}
	if got := len(ud["write_files"].([]any)); got != 1 {
		t.Errorf("write_files of the input has %d entries after Generate, want 1", got)
	}
	if len(md) != 1 {
		t.Errorf("meta-data input changed: %v", md)
	}
}

func TestParseSourceRef(t *testing.T) {
	tests := []struct {
		value    string
		allowKey bool
		want     *SourceRef
		wantErr  string
	}{
		{"configmap/ud", false, &SourceRef{Kind: SourceConfigMap, Name: "ud"}, ""},
		{"Secret/keys/ops", true, &SourceRef{Kind: SourceSecret, Name: "keys", Key: "ops"}, ""},
		{"secret/keys/ops", false, nil, "configmap/NAME or secret/NAME"},
		{"volume/x", true, nil, `kind "volume"`},
		{"configmap", true, nil, "configmap/NAME[/KEY]"},
		{"configmap//k", true, nil, "empty"},
		{"configmap/a/b/c", true, nil, "bad value"},
	}
	for _, tc := range tests {
		got, err := ParseSourceRef("VirtletSSHKeySource", tc.value, tc.allowKey)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "VirtletSSHKeySource") {
				t.Errorf("ParseSourceRef(%q) error = %v, want one naming the annotation and containing %q", tc.value, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSourceRef(%q): %v", tc.value, err)
			continue
		}
		if *got != *tc.want {
			t.Errorf("ParseSourceRef(%q) = %+v, want %+v", tc.value, got, tc.want)
		}
	}
}
