package daemon

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestKVMProbeDirDefaultsIntoStateDir: the KVM trial's files go where the
// DaemonSet's libvirt container sees them too (the state dir), not /tmp.
func TestKVMProbeDirDefaultsIntoStateDir(t *testing.T) {
	state := t.TempDir()
	cfg := Config{Listen: "unix:///tmp/x.sock", StateDir: state}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(state, "kvm-probe"); cfg.KVMProbeDir != want {
		t.Errorf("KVMProbeDir = %q, want %q", cfg.KVMProbeDir, want)
	}

	cfg = Config{Listen: "unix:///tmp/x.sock", StateDir: state, KVMProbeDir: "/shared/probe"}
	if err := cfg.Validate(); err != nil || cfg.KVMProbeDir != "/shared/probe" {
		t.Errorf("explicit KVMProbeDir: %v, %q", err, cfg.KVMProbeDir)
	}
	cfg = Config{Listen: "unix:///tmp/x.sock", StateDir: state, KVMProbeDir: "probe"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "kvm-probe-dir") {
		t.Errorf("relative KVMProbeDir: %v, want an error naming kvm-probe-dir", err)
	}
}
