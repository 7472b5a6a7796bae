package vmbuild

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/podvisor/podvisor/runtime/cgroups"
	"github.com/podvisor/podvisor/runtime/domain"
)

// A pod routed by Virtlet's annotation has a pod cgroup of its
// container's limit alone (no RuntimeClass overhead): podvisor raises it
// to the VM's, guest RAM plus QEMU's overhead, else kubelet's pod cgroup
// OOM-kills QEMU (Virtlet's cirros-vm, 160Mi). A pod cgroup with room is
// left as it is.
func TestPrepareStartMakesRoomForQEMUInThePodCgroup(t *testing.T) {
	for _, tt := range []struct {
		name     string
		podLimit int64
		want     int64
	}{
		{"no overhead", 160 << 20, (160 + 96 + 64) << 20},
		{"RuntimeClass overhead with room", 1 << 30, 1 << 30},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			fs := &cgroups.FS{V2: true, Hierarchies: []cgroups.Hierarchy{{Mount: root, Unified: true}}}
			pod := filepath.Join(root, "kubepods/burstable/poduid-1")
			if err := os.MkdirAll(pod, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(pod, "memory.max"), []byte(itoa(tt.podLimit)), 0o644); err != nil {
				t.Fatal(err)
			}
			sb, c, _ := fixture(t, nil)
			sb.Config.CgroupParent = "/kubepods/burstable/poduid-1"
			c.Config.Resources.MemoryLimitBytes = 160 << 20
			a, _ := New(Config{DomainType: domain.TypeQEMU, TCGTranslationCacheMiB: 64, Cgroups: fs})
			if err := a.PrepareStart(context.Background(), sb, c); err != nil {
				t.Fatal(err)
			}
			for dir, want := range map[string]int64{pod: tt.want, filepath.Join(pod, c.DomainName): (160 + 96 + 64) << 20} {
				b, err := os.ReadFile(filepath.Join(dir, "memory.max"))
				if got := strings.TrimSpace(string(b)); err != nil || got != itoa(want) {
					t.Errorf("%s memory.max = %q, %v; want %d", dir, got, err, want)
				}
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
