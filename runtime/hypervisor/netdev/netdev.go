// Package netdev reads a network namespace's interface counters from
// /proc/<pid>/net/dev, the table the kernel keeps for the namespace the
// process runs in. A VM's emulator runs in its pod's namespace, so this
// is the pod network's traffic without entering the namespace.
package netdev

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// ReadPID reads the interfaces of the network namespace process pid is in.
func ReadPID(pid int) ([]hypervisor.InterfaceStats, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return nil, fmt.Errorf("reading the network counters of process %d: %w", pid, err)
	}
	defer f.Close()
	ifs, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("reading the network counters of process %d: %w", pid, err)
	}
	return ifs, nil
}

// Parse reads a /proc/net/dev table. The loopback interface is left out:
// it is not the pod's traffic (cAdvisor leaves it out too).
func Parse(r io.Reader) ([]hypervisor.InterfaceStats, error) {
	var out []hypervisor.InterfaceStats
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if n <= 2 {
			continue // the two header lines
		}
		if !ok {
			return nil, fmt.Errorf("line %d: no interface name before ':'", n)
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if len(f) < 16 {
			return nil, fmt.Errorf("line %d (%s): %d counters, want 16", n, name, len(f))
		}
		var v [16]uint64
		for i := range v {
			x, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d (%s): counter %d: %w", n, name, i+1, err)
			}
			v[i] = x
		}
		if name == "lo" {
			continue
		}
		out = append(out, hypervisor.InterfaceStats{Name: name,
			RxBytes: v[0], RxPackets: v[1], RxErrors: v[2], RxDropped: v[3],
			TxBytes: v[8], TxPackets: v[9], TxErrors: v[10], TxDropped: v[11]})
	}
	return out, sc.Err()
}
