package libvirt

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// TestLibvirtStats reads the stats of a running test guest: CPU time that
// grows, the guest's own memory figures from its balloon driver (the
// domain's <stats period>), the root overlay's I/O and allocation, and the
// interfaces of the emulator's network namespace.
func TestLibvirtStats(t *testing.T) {
	integration(t)
	h := newTestHypervisor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	name := "podvisor-it-stats"
	x := testDomain(t, h, name)
	_ = h.Destroy(ctx, name)
	_ = h.Undefine(ctx, name)
	if _, err := h.Define(ctx, x); err != nil {
		t.Fatalf("Define: %v", err)
	}
	t.Cleanup(func() {
		_ = h.Destroy(context.Background(), name)
		_ = h.Undefine(context.Background(), name)
	})
	if err := h.Start(ctx, name); err != nil {
		t.Fatalf("Start: %v", err)
	}
	con, err := h.Console(ctx, name)
	if err != nil {
		t.Fatalf("Console: %v", err)
	}
	defer con.Close()
	readConsole(con).waitFor(t, "PODVISOR-GUEST: ready", bootDeadline)

	first, err := h.Stats(ctx, name)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	// The balloon driver reports every 10 s once the guest loaded it; a
	// second sample at least, for the CPU time to grow (the first run of
	// this test compared the first sample with itself).
	st := first
	for deadline := time.Now().Add(90 * time.Second); (!st.Memory.FromGuest || !st.Timestamp.After(first.Timestamp)) && time.Now().Before(deadline); {
		time.Sleep(2 * time.Second)
		if st, err = h.Stats(ctx, name); err != nil {
			t.Fatalf("Stats: %v", err)
		}
	}
	t.Logf("stats: %+v", st)
	if !st.Memory.FromGuest {
		t.Errorf("the guest's balloon statistics never came (memory %+v)", st.Memory)
	}
	if st.CPUTime <= first.CPUTime || !st.Timestamp.After(first.Timestamp) {
		t.Errorf("CPU time did not grow: %v at %v, then %v at %v", first.CPUTime, first.Timestamp, st.CPUTime, st.Timestamp)
	}
	m := st.Memory
	if m.RSSBytes == 0 || m.WorkingSetBytes == 0 || m.WorkingSetBytes > m.UsageBytes || m.UsageBytes > st.MemoryLimitBytes ||
		st.MemoryBytes != m.WorkingSetBytes || st.MemoryLimitBytes != 256<<20 {
		t.Errorf("memory %+v (limit %d): want a working set within usage within the guest's 256 MiB, and the emulator's RSS", m, st.MemoryLimitBytes)
	}
	checkRootDisk(t, st)
	for _, i := range st.Interfaces {
		if i.Name == "lo" {
			t.Error("the loopback interface is listed")
		}
	}
}

func checkRootDisk(t *testing.T, st hypervisor.Stats) {
	t.Helper()
	if len(st.Disks) == 0 {
		t.Fatal("no disks")
	}
	root := st.Disks[0]
	fi, err := os.Stat(root.Path)
	if err != nil {
		t.Fatalf("root disk %+v: %v", root, err)
	}
	blocks := uint64(fi.Sys().(*syscall.Stat_t).Blocks) * 512
	if root.Target == "" || root.ReadBytes == 0 || root.ReadOps == 0 || root.AllocatedBytes == 0 || root.AllocatedBytes > blocks+(1<<20) {
		t.Errorf("root disk %+v: want reads of the boot and the overlay's allocation (%d bytes now)", root, blocks)
	}
}
