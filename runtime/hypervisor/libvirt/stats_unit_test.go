package libvirt

import (
	"os"
	"testing"
	"time"

	"github.com/podvisor/podvisor/runtime/hypervisor"
	lv "libvirt.org/go/libvirt"
)

func TestParseProcStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       time.Duration
		wantErr    bool
	}{
		{name: "qemu", line: "7756 (qemu-system-x86) S 1 7756 7756 0 -1 4194560 9 0 0 0 1234 567 0 0 20 0 5 0 100 3133440 414 0",
			want: 18010 * time.Millisecond},
		{name: "a command with spaces and parentheses", line: "12 (a b) (c)) R 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 1 1 0",
			want: 70 * time.Millisecond},
		{name: "no command", line: "12 a b c", wantErr: true},
		{name: "too few fields", line: "12 (qemu) S 1 2 3", wantErr: true},
		{name: "a bad number", line: "12 (qemu) S 1 1 1 0 -1 0 0 0 0 0 x 4 0 0 20 0 1 0 1 1 1 0", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStatCPU(tc.line)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("parseProcStatCPU(%q) = %v, %v; want %v (error %v)", tc.line, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestProcessCPUTimeGrows(t *testing.T) {
	first, err := processCPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel accounts at least two ticks more.
	deadline := time.Now().Add(10 * time.Second)
	for now := first; now < first+2*time.Second/userHZ; now, err = processCPUTime(os.Getpid()) {
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time stayed %v while spinning for 10 s", now)
		}
	}
}

// A disk's top image is listed under -blockdev with a backingIndex (its
// node's number): it is still the disk the guest writes.
func TestFillStatsKeepsTopImagesWithABackingIndex(t *testing.T) {
	var s hypervisor.Stats
	fillStats(&s, lv.DomainStats{Block: []lv.DomainStatsBlock{
		{NameSet: true, Name: "sda", PathSet: true, Path: "/nonexistent/root.qcow2", BackingIndexSet: true, BackingIndex: 2,
			RdBytesSet: true, RdBytes: 100, RdReqsSet: true, RdReqs: 3},
		{NameSet: true, Name: "sdb", PathSet: true, Path: "/nonexistent/cloudinit.iso", BackingIndexSet: true, BackingIndex: 1},
	}})
	if len(s.Disks) != 2 || s.Disks[0].Target != "sda" || s.Disks[0].ReadBytes != 100 || s.Disks[0].ReadOps != 3 || s.Disks[1].Target != "sdb" {
		t.Fatalf("disks %+v: want sda (100 bytes read in 3 ops) then sdb", s.Disks)
	}
}
