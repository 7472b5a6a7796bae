package virtletconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTranslate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cm        map[string]string
		want      Settings
		from      map[string]string
		wantWarns []string // substrings, one per warning, in order
	}{
		{name: "empty", from: map[string]string{}},
		{name: "Virtlet's example: disable_kvm=y, download_protocol=http, image_regexp_translation=1",
			cm:   map[string]string{"disable_kvm": "y", "download_protocol": "http", "image_regexp_translation": "1"},
			want: Settings{KVM: "off"}, from: map[string]string{"kvm": "disable_kvm"},
			wantWarns: []string{`download_protocol="http" has no effect: podvisor downloads the URL a translation gives`, `image_regexp_translation="1" has no effect: podvisor always applies regexp`}},
		{name: "disable_kvm false keeps podvisor's default", cm: map[string]string{"disableKVM": "false"}, from: map[string]string{}},
		{name: "config field names", cm: map[string]string{"imageTranslationConfigsDir": "/etc/virtlet/images", "libvirtURI": "qemu+unix:///system", "cniPluginDir": "/opt/cni/bin,/usr/lib/cni", "cniConfigDir": "/etc/cni/net.d", "logLevel": "3"},
			want: Settings{ImageTranslationsDir: "/etc/virtlet/images", LibvirtURI: "qemu+unix:///system", CNIBinDirs: []string{"/opt/cni/bin", "/usr/lib/cni"}, CNIConfDir: "/etc/cni/net.d", LogLevel: "debug"},
			from: map[string]string{"image-translations-dir": "imageTranslationConfigsDir", "libvirt-uri": "libvirtURI", "cni-bin-dir": "cniPluginDir", "cni-conf-dir": "cniConfigDir", "log-level": "logLevel"}},
		{name: "Virtlet's streamPort and skipImageTranslation are named, not unknown", cm: map[string]string{"streamPort": "10010", "stream_port": "10010", "skipImageTranslation": "true"},
			from:      map[string]string{},
			wantWarns: []string{`skipImageTranslation="true" has no effect: a Virtlet test setting`, `streamPort="10010" has no effect: use podvisor's --stream-addr`, `stream_port="10010" has no effect: use podvisor's --stream-addr`}},
		{name: "loglevel 1 is info", cm: map[string]string{"loglevel": "1"}, want: Settings{LogLevel: "info"}, from: map[string]string{"log-level": "loglevel"}},
		{name: "bad values and unknown keys are warnings", cm: map[string]string{"disable_kvm": "maybe", "loglevel": "loud", "disable_kvn": "y", "sriov_support": "true", "raw_devices": "sd*", "calico-subnet": "24", "cpu-model": "host-model", "disable_logging": "y"},
			from: map[string]string{},
			wantWarns: []string{
				`calico-subnet="24" has no effect: podvisor takes the prefix length from the CNI result`,
				`cpu-model="host-model" has no effect: podvisor has no node-wide CPU model: use the VirtletCPUModel`,
				`disable_kvm: "maybe" is not a boolean`,
				`disable_kvn: not a Virtlet setting podvisor knows`,
				`disable_logging="y" has no effect`,
				`loglevel: "loud" is not a verbosity`,
				`raw_devices="sd*" has no effect: podvisor passes the block volumes kubelet gives`,
				`sriov_support="true" has no effect: SR-IOV is not supported`,
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Translate(tc.cm)
			if d := cmp.Diff(tc.want, r.Settings); d != "" {
				t.Errorf("settings (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.from, r.From); d != "" {
				t.Errorf("from (-want +got):\n%s", d)
			}
			if len(r.Warnings) != len(tc.wantWarns) {
				t.Fatalf("warnings:\n%s\nwant %d", strings.Join(r.Warnings, "\n"), len(tc.wantWarns))
			}
			for i, w := range tc.wantWarns {
				if !strings.Contains(r.Warnings[i], w) {
					t.Errorf("warning %d %q lacks %q", i, r.Warnings[i], w)
				}
			}
		})
	}
}

// Read takes a configMap volume's layout: keys are links into ..data.
func TestReadConfigMapVolume(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "..2026_12_03_17_00_00.123")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "disable_kvm"), []byte("y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(data), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/disable_kvm", filepath.Join(dir, "disable_kvm")); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{"disable_kvm": "y"}, got); d != "" {
		t.Errorf("keys (-want +got):\n%s", d)
	}
	if got, err := Read(filepath.Join(dir, "absent")); err != nil || got != nil {
		t.Errorf("a missing directory (the optional ConfigMap absent): %v, %v", got, err)
	}
}
