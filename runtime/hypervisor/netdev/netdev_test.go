package netdev

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

const table = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 5433290    4100    1    2    0     0          0         0   310942    2511    3    4    0     0       0          0
   tap0:      70       1    0    0    0     0          0         0      90       2    0    0    0     0       0          0
`

func TestParse(t *testing.T) {
	got, err := Parse(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	want := []hypervisor.InterfaceStats{
		{Name: "eth0", RxBytes: 5433290, RxPackets: 4100, RxErrors: 1, RxDropped: 2, TxBytes: 310942, TxPackets: 2511, TxErrors: 3, TxDropped: 4},
		{Name: "tap0", RxBytes: 70, RxPackets: 1, TxBytes: 90, TxPackets: 2},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Parse (-want +got):\n%s", d)
	}
}

func TestParseRejects(t *testing.T) {
	head := strings.Join(strings.SplitN(table, "\n", 3)[:2], "\n") + "\n"
	for name, body := range map[string]string{
		"no colon":     "eth0 1 2 3\n",
		"short":        "eth0: 1 2 3\n",
		"not a number": "eth0: 1 2 3 4 5 6 7 8 x 10 11 12 13 14 15 16\n",
	} {
		if _, err := Parse(strings.NewReader(head + body)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestReadPID reads this process's own namespace: lo is left out and
// whatever else there is parses.
func TestReadPID(t *testing.T) {
	ifs, err := ReadPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Name == "lo" || i.Name == "" {
			t.Errorf("interface %q listed", i.Name)
		}
	}
	if _, err := ReadPID(-1); err == nil {
		t.Error("pid -1: no error")
	}
}
