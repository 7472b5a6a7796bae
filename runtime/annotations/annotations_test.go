package annotations

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"libvirt.org/go/libvirtxml"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func mustParse(t *testing.T, ann map[string]string) *VMConfig {
	t.Helper()
	c, err := Parse(ann, Resources{}, nil)
	if err != nil {
		t.Fatalf("Parse(%v): %v", ann, err)
	}
	return c
}

func TestParseDefaults(t *testing.T) {
	got := mustParse(t, nil)
	want := &VMConfig{
		VCPUCount:   1,
		DiskDriver:  DiskDriverSCSI,
		MemoryBytes: 1024 << 20,
		CloudInit:   CloudInit{ImageType: CloudInitNoCloud, UserDataSourceEncoding: EncodingPlain},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	// Empty values mean the default too, as in Virtlet.
	empty := map[string]string{}
	for k := range known {
		empty[k] = ""
	}
	if diff := cmp.Diff(want, mustParse(t, empty)); diff != "" {
		t.Errorf("empty annotations (-want +got):\n%s", diff)
	}
}

// Each annotation with each accepted value sets the one field it should.
func TestParseValues(t *testing.T) {
	tests := []struct {
		key, value string
		get        func(*VMConfig) any
		want       any
	}{
		{KeyVCPUCount, "1", func(c *VMConfig) any { return c.VCPUCount }, 1},
		{KeyVCPUCount, " 8 ", func(c *VMConfig) any { return c.VCPUCount }, 8},
		{KeyVCPUCount, "255", func(c *VMConfig) any { return c.VCPUCount }, 255},
		{KeyDiskDriver, "scsi", func(c *VMConfig) any { return c.DiskDriver }, DiskDriverSCSI},
		{KeyDiskDriver, "virtio", func(c *VMConfig) any { return c.DiskDriver }, DiskDriverVirtio},
		{KeyCPUModel, "host-model", func(c *VMConfig) any { return c.CPUModel }, CPUModelHostModel},
		{KeyCPUModel, "", func(c *VMConfig) any { return c.CPUModel }, CPUModelDefault},
		{KeyLibvirtCPUSetting, "mode: host-passthrough", func(c *VMConfig) any { return c.CPUSetting },
			&libvirtxml.DomainCPU{Mode: "host-passthrough"}},
		{KeyLibvirtCPUSetting, "mode: custom\nmodel:\n  value: core2duo\nfeatures:\n- name: vmx\n", func(c *VMConfig) any { return c.CPUSetting },
			&libvirtxml.DomainCPU{Mode: "custom", Model: &libvirtxml.DomainCPUModel{Value: "core2duo"},
				Features: []libvirtxml.DomainCPUFeature{{Name: "vmx", Policy: "require"}}}},
		{KeyLibvirtCPUSetting, `{"Mode": "maximum", "Check": "none"}`, func(c *VMConfig) any { return c.CPUSetting },
			&libvirtxml.DomainCPU{Mode: "maximum", Check: "none"}},
		{KeyRootVolumeSize, "10Gi", func(c *VMConfig) any { return c.RootVolumeSize }, int64(10 << 30)},
		{KeyRootVolumeSize, "20G", func(c *VMConfig) any { return c.RootVolumeSize }, int64(20e9)},
		{KeyRootVolumeSize, "0", func(c *VMConfig) any { return c.RootVolumeSize }, int64(0)},
		{KeyCloudInitImageType, "nocloud", func(c *VMConfig) any { return c.CloudInit.ImageType }, CloudInitNoCloud},
		{KeyCloudInitImageType, "configdrive", func(c *VMConfig) any { return c.CloudInit.ImageType }, CloudInitConfigDrive},
		{KeyCloudInitImageType, "ConfigDrive", func(c *VMConfig) any { return c.CloudInit.ImageType }, CloudInitConfigDrive},
		{KeyCloudInitMetaData, "instance-id: abc\nextra:\n  num: 1\n", func(c *VMConfig) any { return c.CloudInit.MetaData },
			map[string]any{"instance-id": "abc", "extra": map[string]any{"num": float64(1)}}},
		{KeyCloudInitMetaData, `{"local-hostname": "h"}`, func(c *VMConfig) any { return c.CloudInit.MetaData },
			map[string]any{"local-hostname": "h"}},
		{KeyCloudInitUserData, "packages: [nginx]\nruncmd:\n- [ls, /]\n", func(c *VMConfig) any { return c.CloudInit.UserData },
			map[string]any{"packages": []any{"nginx"}, "runcmd": []any{[]any{"ls", "/"}}}},
		{KeyCloudInitUserDataOverwrite, "true", func(c *VMConfig) any { return c.CloudInit.UserDataOverwrite }, true},
		{KeyCloudInitUserDataOverwrite, "false", func(c *VMConfig) any { return c.CloudInit.UserDataOverwrite }, false},
		{KeyCloudInitUserDataScript, "#!/bin/sh\necho hi\n", func(c *VMConfig) any { return c.CloudInit.UserDataScript }, "#!/bin/sh\necho hi\n"},
		{KeyCloudInitUserDataSource, "configmap/my-ud", func(c *VMConfig) any { return c.CloudInit.UserDataSource },
			&DataSourceRef{Kind: DataSourceConfigMap, Name: "my-ud"}},
		{KeyCloudInitUserDataSource, "secret/ud.v1", func(c *VMConfig) any { return c.CloudInit.UserDataSource },
			&DataSourceRef{Kind: DataSourceSecret, Name: "ud.v1"}},
		{KeyCloudInitUserDataSourceEncoding, "plain", func(c *VMConfig) any { return c.CloudInit.UserDataSourceEncoding }, EncodingPlain},
		{KeyCloudInitUserDataSourceEncoding, "base64", func(c *VMConfig) any { return c.CloudInit.UserDataSourceEncoding }, EncodingBase64},
		{KeySSHKeys, "ssh-rsa AAA a@b\n\n  ssh-ed25519 BBB c@d  \n", func(c *VMConfig) any { return c.CloudInit.SSHKeys },
			[]string{"ssh-rsa AAA a@b", "ssh-ed25519 BBB c@d"}},
		{KeySSHKeySource, "secret/keys", func(c *VMConfig) any { return c.CloudInit.SSHKeySource },
			&DataSourceRef{Kind: DataSourceSecret, Name: "keys", Key: DefaultSSHKeySourceKey}},
		{KeySSHKeySource, "configmap/keys/admin_keys", func(c *VMConfig) any { return c.CloudInit.SSHKeySource },
			&DataSourceRef{Kind: DataSourceConfigMap, Name: "keys", Key: "admin_keys"}},
		{KeyFilesFromDataSource, "configmap/files", func(c *VMConfig) any { return c.CloudInit.FilesFromDataSource },
			&DataSourceRef{Kind: DataSourceConfigMap, Name: "files"}},
		{KeyChown9pfsMounts, "true", func(c *VMConfig) any { return c.Chown9pfsMounts }, true},
		{KeySystemUUID, "6ED9E1C2-8F3B-4A57-9C0D-2B1E3F4A5B6C", func(c *VMConfig) any { return c.SystemUUID }, "6ed9e1c2-8f3b-4a57-9c0d-2b1e3f4a5b6c"},
		{KeyForceDHCPNetworkConfig, "true", func(c *VMConfig) any { return c.CloudInit.ForceDHCPNetworkConfig }, true},
		{KeyTargetRuntime, "virtlet.cloud", func(c *VMConfig) any { return c.Unknown }, []string(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			got := tt.get(mustParse(t, map[string]string{tt.key: tt.value}))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseUserDataSourceKey(t *testing.T) {
	c := mustParse(t, map[string]string{
		KeyCloudInitUserDataSource:         "secret/ud",
		KeyCloudInitUserDataSourceKey:      "user-data.b64",
		KeyCloudInitUserDataSourceEncoding: "base64",
	})
	if c.CloudInit.UserDataSourceKey != "user-data.b64" || c.CloudInit.UserDataSourceEncoding != EncodingBase64 {
		t.Errorf("got %+v", c.CloudInit)
	}
}

func TestParseResourcesAndEnv(t *testing.T) {
	env := []EnvVar{{Name: "A", Value: "1"}, {Name: "B.c-d", Value: "x=y\nz"}}
	c, err := Parse(nil, Resources{MemoryLimitBytes: 1000000000, CPUShares: 512, CPUPeriod: 100000, CPUQuota: 50000}, env)
	if err != nil {
		t.Fatal(err)
	}
	// 1e9 bytes is 953.67 MiB: the guest gets 954 MiB, never less.
	if c.MemoryBytes != 954<<20 || c.CPUShares != 512 || c.CPUPeriod != 100000 || c.CPUQuota != 50000 {
		t.Errorf("resources: %+v", c)
	}
	if diff := cmp.Diff(env, c.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	c, err = Parse(nil, Resources{CPUQuota: -1}, nil)
	if err != nil || c.CPUQuota != 0 {
		t.Errorf("quota -1 (no limit): %v, %+v", err, c)
	}
}

func TestParseUnknownVirtletAnnotations(t *testing.T) {
	c := mustParse(t, map[string]string{"VirtletVCPUcount": "2", "VirtletConfigMapAsFiles": "x", "other/annotation": "y"})
	if diff := cmp.Diff([]string{"VirtletConfigMapAsFiles", "VirtletVCPUcount"}, c.Unknown); diff != "" {
		t.Errorf("Unknown (-want +got):\n%s", diff)
	}
}

type errorCase struct {
	name string
	ann  map[string]string
	res  Resources
	env  []EnvVar
}

func errorCases() []errorCase {
	one := func(k, v string) map[string]string { return map[string]string{k: v} }
	return []errorCase{
		{name: "vcpu-zero", ann: one(KeyVCPUCount, "0")},
		{name: "vcpu-too-many", ann: one(KeyVCPUCount, "256")},
		{name: "vcpu-not-a-number", ann: one(KeyVCPUCount, "two")},
		{name: "disk-driver-ide", ann: one(KeyDiskDriver, "ide")},
		{name: "disk-driver-case", ann: one(KeyDiskDriver, "VirtIO")},
		{name: "cpu-model", ann: one(KeyCPUModel, "host-passthrough")},
		{name: "cpu-setting-syntax", ann: one(KeyLibvirtCPUSetting, "mode: host-model\nmodel: [")},
		{name: "cpu-setting-unknown-field", ann: one(KeyLibvirtCPUSetting, "mode: custom\nmodle:\n  value: Westmere\n")},
		{name: "cpu-setting-type", ann: one(KeyLibvirtCPUSetting, "model: Westmere")},
		{name: "cpu-setting-list", ann: one(KeyLibvirtCPUSetting, "- mode: custom")},
		{name: "cpu-setting-values", ann: one(KeyLibvirtCPUSetting, "mode: passthrough\nfeatures:\n- name: vmx\n  policy: want\n")},
		{name: "cpu-setting-topology", ann: map[string]string{KeyVCPUCount: "2", KeyLibvirtCPUSetting: "topology: {sockets: 2, cores: 2, threads: 1}"}},
		{name: "cpu-setting-numa", ann: one(KeyLibvirtCPUSetting, "mode: host-model\nnuma:\n  cell:\n  - memory: 1024\n")},
		{name: "root-volume-size-unit", ann: one(KeyRootVolumeSize, "10GB")},
		{name: "root-volume-size-negative", ann: one(KeyRootVolumeSize, "-1Gi")},
		{name: "root-volume-size-huge", ann: one(KeyRootVolumeSize, "100Ei")},
		{name: "cloud-init-image-type", ann: one(KeyCloudInitImageType, "iso9660")},
		{name: "meta-data-syntax", ann: one(KeyCloudInitMetaData, "instance-id: a\n  local-hostname: b\n")},
		{name: "meta-data-list", ann: one(KeyCloudInitMetaData, "- a\n- b\n")},
		{name: "user-data-syntax", ann: one(KeyCloudInitUserData, "{\"runcmd\": [\"ls\"}")},
		{name: "user-data-scalar", ann: one(KeyCloudInitUserData, "just some text")},
		{name: "user-data-overwrite", ann: one(KeyCloudInitUserDataOverwrite, "yes")},
		{name: "user-data-source-kind", ann: one(KeyCloudInitUserDataSource, "pvc/data")},
		{name: "user-data-source-key-in-ref", ann: one(KeyCloudInitUserDataSource, "configmap/ud/user-data")},
		{name: "user-data-source-name", ann: one(KeyCloudInitUserDataSource, "secret/My_Secret")},
		{name: "user-data-source-key-alone", ann: one(KeyCloudInitUserDataSourceKey, "user-data")},
		{name: "user-data-source-key-chars", ann: map[string]string{KeyCloudInitUserDataSource: "secret/ud", KeyCloudInitUserDataSourceKey: "user data"}},
		{name: "user-data-source-encoding", ann: one(KeyCloudInitUserDataSourceEncoding, "gzip")},
		{name: "ssh-key-source", ann: one(KeySSHKeySource, "secret")},
		{name: "ssh-key-source-too-long", ann: one(KeySSHKeySource, "secret/a/b/c")},
		{name: "files-from-data-source", ann: one(KeyFilesFromDataSource, "configmap/")},
		{name: "chown-9pfs", ann: one(KeyChown9pfsMounts, "True")},
		{name: "system-uuid", ann: one(KeySystemUUID, "not-a-uuid")},
		{name: "force-dhcp", ann: one(KeyForceDHCPNetworkConfig, "1")},
		{name: "memory-too-small", res: Resources{MemoryLimitBytes: 1 << 20}},
		{name: "memory-negative", res: Resources{MemoryLimitBytes: -1}},
		{name: "cpu-shares", res: Resources{CPUShares: 1}},
		{name: "cpu-period", res: Resources{CPUPeriod: 10}},
		{name: "cpu-quota", res: Resources{CPUQuota: 10}},
		{name: "env-name", env: []EnvVar{{Name: "", Value: "secret"}}},
		{name: "env-value-nul", env: []EnvVar{{Name: "TOKEN", Value: "se\x00cret"}}},
		{name: "long-value-is-shortened", ann: one(KeyCloudInitMetaData, "a: ["+strings.Repeat("x", 200))},
		{name: "many-at-once", ann: map[string]string{KeyVCPUCount: "-3", KeyDiskDriver: "ide", KeyCloudInitImageType: "iso"}, res: Resources{CPUShares: 1}},
	}
}

// TestParseErrors pins every message a user can see (testdata/errors.golden,
// which docs/annotations.md quotes) and checks each is an *Error naming the
// annotation and the rejected value.
func TestParseErrors(t *testing.T) {
	var b strings.Builder
	for _, c := range errorCases() {
		cfg, err := Parse(c.ann, c.res, c.env)
		if err == nil {
			t.Errorf("%s: Parse accepted it: %+v", c.name, cfg)
			continue
		}
		if cfg != nil {
			t.Errorf("%s: Parse returned a config with the error", c.name)
		}
		checkErrors(t, err)
		var ae *Error
		if !errors.As(err, &ae) {
			t.Fatalf("%s: errors.As failed on %v", c.name, err)
		}
		if c.env != nil && strings.Contains(err.Error(), "cret") {
			t.Errorf("%s: an env value leaked into %q", c.name, err)
		}
		fmt.Fprintf(&b, "== %s\n%s\n", c.name, err)
	}
	compareGolden(t, filepath.Join("testdata", "errors.golden"), b.String())
}

// Every error of a multi-error Parse is found with errors.As, in input order.
func TestParseCollectsAllErrors(t *testing.T) {
	_, err := Parse(map[string]string{KeyVCPUCount: "x", KeyDiskDriver: "ide", KeySystemUUID: "u"}, Resources{CPUQuota: 5}, nil)
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %T is not a joined error", err)
	}
	var names []string
	for _, e := range j.Unwrap() {
		var ae *Error
		if !errors.As(e, &ae) {
			t.Fatalf("%v is not an *Error", e)
		}
		names = append(names, ae.Annotation)
	}
	want := []string{KeyVCPUCount, KeyDiskDriver, KeySystemUUID, FieldCPUQuota}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestErrorMessage(t *testing.T) {
	e := &Error{Annotation: KeyDiskDriver, Value: "ide", Accepted: `"scsi" (default) or "virtio"`}
	const want = `annotation VirtletDiskDriver: invalid value "ide": accepted values are "scsi" (default) or "virtio"`
	if e.Error() != want {
		t.Errorf("got  %s\nwant %s", e.Error(), want)
	}
	cause := errors.New("cause")
	e = &Error{Annotation: FieldCPUShares, Value: "1", Accepted: "2 to 3", Err: cause}
	if got := e.Error(); got != `container resources cpu_shares: invalid value "1": cause: accepted values are 2 to 3` {
		t.Errorf("got %s", got)
	}
	if !errors.Is(e, cause) {
		t.Error("Error does not unwrap to its cause")
	}
}

// TestParseGolden pins the whole VMConfig of a Virtlet-style pod using every
// annotation at once, as JSON.
func TestParseGolden(t *testing.T) {
	c, err := Parse(map[string]string{
		KeyTargetRuntime:                   "virtlet.cloud",
		KeyVCPUCount:                       "2",
		KeyDiskDriver:                      "virtio",
		KeyCPUModel:                        "host-model",
		KeyLibvirtCPUSetting:               "mode: custom\nmodel:\n  value: Westmere\nfeatures:\n- name: avx\n  policy: disable\n",
		KeyRootVolumeSize:                  "4Gi",
		KeyCloudInitImageType:              "configdrive",
		KeyCloudInitMetaData:               `{"local-hostname": "my-vm"}`,
		KeyCloudInitUserData:               "users:\n- name: testuser\n  sudo: ALL=(ALL) NOPASSWD:ALL\n",
		KeyCloudInitUserDataOverwrite:      "false",
		KeyCloudInitUserDataScript:         "",
		KeyCloudInitUserDataSource:         "secret/vm-userdata",
		KeyCloudInitUserDataSourceKey:      "userdata",
		KeyCloudInitUserDataSourceEncoding: "base64",
		KeySSHKeys:                         "ssh-rsa AAAAB3Nza user@host\nssh-ed25519 AAAAC3Nz other@host\n",
		KeySSHKeySource:                    "configmap/vm-keys/keys",
		KeyFilesFromDataSource:             "configmap/vm-files",
		KeyChown9pfsMounts:                 "true",
		KeySystemUUID:                      "{6ed9e1c2-8f3b-4a57-9c0d-2b1e3f4a5b6c}",
		KeyForceDHCPNetworkConfig:          "true",
	}, Resources{MemoryLimitBytes: 2 << 30, CPUShares: 2048, CPUPeriod: 100000, CPUQuota: 200000},
		[]EnvVar{{Name: "APP_MODE", Value: "production"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	compareGolden(t, filepath.Join("testdata", "vmconfig-all-annotations.json"), string(b)+"\n")
}

func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (go test ./runtime/annotations/... -update writes it): %v", err)
	}
	if diff := cmp.Diff(strings.Split(string(want), "\n"), strings.Split(got, "\n")); diff != "" {
		t.Errorf("%s differs (-golden +got); run with -update if intended:\n%s", path, diff)
	}
}

func TestParseQuantity(t *testing.T) {
	good := map[string]int64{
		"0": 0, "1": 1, "1024": 1024, "1Ki": 1024, "10Gi": 10 << 30, "1.5Gi": 3 << 29, "20G": 20e9,
		"500M": 500e6, "1k": 1000, "1e3": 1000, "1E3": 1000, "2e+2": 200, "1500m": 2, "0.5": 1,
		".5Ki": 512, "5.": 5, " 7Mi\n": 7 << 20, "+3": 3, "1E": 1e18, "7Ei": 7 << 60, "-0": 0,
	}
	for in, want := range good {
		got, err := parseQuantity(in)
		if err != nil || got != want {
			t.Errorf("parseQuantity(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "Gi", "10GB", "1.2.3", "-1", "--1", "1e", "1e100", "8Ei", "1 Gi", "0x10", "1e-", "1i", strings.Repeat("9", 50)} {
		if got, err := parseQuantity(in); err == nil {
			t.Errorf("parseQuantity(%q) = %d, want an error", in, got)
		}
	}
}

// The CPU limit bounds the vCPUs: without VirtletVCPUCount it gives their
// number (rounded up), with it a count above the limit is refused naming
// both.
func TestVCPUCountAndTheCPULimit(t *testing.T) {
	for _, tc := range []struct {
		name         string
		ann          map[string]string
		quota, per   int64
		want         int
		fixed        bool
		errSubstring string
	}{
		{name: "no limit, no annotation", want: DefaultVCPUCount},
		{name: "limit 2 CPUs", quota: 200000, per: 100000, want: 2},
		{name: "limit 1.5 CPUs rounds up", quota: 150000, per: 100000, want: 2},
		{name: "limit 0.1 CPU", quota: 10000, want: 1},
		{name: "huge limit capped", quota: 1 << 40, per: 100000, want: MaxVCPUCount},
		{name: "annotation within the limit", ann: map[string]string{KeyVCPUCount: "2"}, quota: 300000, per: 100000, want: 2, fixed: true},
		{name: "annotation without a limit", ann: map[string]string{KeyVCPUCount: "4"}, want: 4, fixed: true},
		{name: "annotation above the limit", ann: map[string]string{KeyVCPUCount: "4"}, quota: 150000, per: 100000,
			errSubstring: `annotation VirtletVCPUCount: invalid value "4": 4 vCPUs are more than the container's CPU limit allows (resources cpu_quota 150000 / resources cpu_period 100000 = 1.5 CPUs, so at most 2 vCPUs)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(tc.ann, Resources{CPUQuota: tc.quota, CPUPeriod: tc.per}, nil)
			if tc.errSubstring != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSubstring) {
					t.Fatalf("err = %v; want one with %q", err, tc.errSubstring)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.VCPUCount != tc.want || c.VCPUCountFixed != tc.fixed {
				t.Errorf("VCPUCount %d fixed %v; want %d fixed %v", c.VCPUCount, c.VCPUCountFixed, tc.want, tc.fixed)
			}
		})
	}
}
