package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podvisor/podvisor/internal/daemon"
)

func TestApplyVirtletConfig(t *testing.T) {
	dir := t.TempDir()
	for k, v := range map[string]string{"disable_kvm": "y", "loglevel": "3", "libvirt_uri": "qemu:///session", "sriov_support": "y"} {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name      string
		set       map[string]bool
		file      daemon.Config
		wantKVM   string
		wantURI   string
		wantLevel string
		wantWarn  []string
	}{
		{name: "nothing else says: the keys apply", set: map[string]bool{}, wantKVM: "off", wantURI: "qemu:///session", wantLevel: "debug",
			wantWarn: []string{"sriov_support"}},
		{name: "a flag and the file win", set: map[string]bool{"kvm": true}, file: daemon.Config{LibvirtURI: "qemu:///system"},
			wantKVM: "on", wantURI: "qemu:///system", wantLevel: "debug",
			wantWarn: []string{"sriov_support", "disable_kvm (--kvm off) is overridden by podvisor's own --kvm", "libvirt_uri (--libvirt-uri qemu:///session) is overridden"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := daemon.Config{KVM: "auto", LibvirtURI: "qemu:///system"}
			if tc.set["kvm"] {
				cfg.KVM = "on"
			}
			level := "info"
			n, err := applyVirtletConfig(dir, &cfg, tc.file, tc.set, &level)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff([]string{tc.wantKVM, tc.wantURI, tc.wantLevel}, []string{cfg.KVM, cfg.LibvirtURI, level}); d != "" {
				t.Errorf("kvm, libvirt URI, log level (-want +got):\n%s", d)
			}
			if len(n.Warn) != len(tc.wantWarn) {
				t.Fatalf("warnings %q, want %d", n.Warn, len(tc.wantWarn))
			}
			for i, w := range tc.wantWarn {
				if !strings.Contains(n.Warn[i], w) {
					t.Errorf("warning %q lacks %q", n.Warn[i], w)
				}
			}
		})
	}
	cfg := daemon.Config{KVM: "auto"}
	if n, err := applyVirtletConfig("", &cfg, daemon.Config{}, nil, new(string)); err != nil || cfg.KVM != "auto" || len(n.Info)+len(n.Warn) > 0 {
		t.Errorf("no directory: %+v, %v, %+v", n, err, cfg)
	}
}
