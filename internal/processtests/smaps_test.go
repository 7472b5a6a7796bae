package processtests

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// mapping is one mapping of /proc/<pid>/smaps (sizes in KiB).
type mapping struct {
	header          string // address range, perms, offset, device, inode, path
	perms, path     string
	size, rss, pss  uint64
	anonymous, swap uint64
}

// readSmaps parses /proc/<pid>/smaps.
func readSmaps(pid int) ([]mapping, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return nil, err
	}
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") { // a header: addr perms offset dev inode [path]
			m := mapping{header: line}
			if len(f) > 1 {
				m.perms = f[1]
			}
			if len(f) > 5 {
				m.path = strings.Join(f[5:], " ")
			}
			out = append(out, m)
			continue
		}
		if len(out) == 0 || len(f) < 2 {
			continue
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue // VmFlags and the like
		}
		m := &out[len(out)-1]
		switch f[0] {
		case "Size:":
			m.size = v
		case "Rss:":
			m.rss = v
		case "Pss:":
			m.pss = v
		case "Anonymous:":
			m.anonymous = v
		case "Swap:":
			m.swap = v
		}
	}
	return out, sc.Err()
}

// qemuMemory splits an emulator's memory (KiB): the guest's RAM (the
// anonymous mapping of the guest's size), TCG's translation cache (the
// anonymous executable mappings, tb-size in all), and the rest.
type qemuMemory struct {
	rss, pss             uint64
	ramRSS, ramPSS       uint64
	tbSize, tbRSS, tbPSS uint64
}

func splitQEMU(maps []mapping, ramKiB uint64) (qemuMemory, error) {
	var q qemuMemory
	var ram, tb bool
	for _, m := range maps {
		q.rss += m.rss
		q.pss += m.pss
		anon := m.path == "" || m.path == "[heap]"
		switch {
		case anon && !ram && m.size >= ramKiB && m.size <= ramKiB+4096:
			q.ramRSS, q.ramPSS, ram = m.rss, m.pss, true
		// The cache is cut into one region per vCPU thread and more, each
		// followed by a guard page, so it shows as many mappings: 1 GiB in
		// regions of tens of MiB, 64 MiB in regions of a few (the first
		// run counted only those of 16 MiB and up, and missed a 64 MiB
		// cache whole). Nothing else of QEMU is anonymous and executable.
		case anon && strings.Contains(m.perms, "x"):
			q.tbSize += m.size
			q.tbRSS += m.rss
			q.tbPSS += m.pss
			tb = true
		}
	}
	if !ram {
		return q, fmt.Errorf("no anonymous mapping of the guest's %d KiB", ramKiB)
	}
	_ = tb // a KVM emulator has none
	return q, nil
}

// vmRSS is a process's VmRSS in KiB.
func vmRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.ParseUint(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// findProcess is the first process whose command line has every one of
// parts (0 when none).
func findProcess(parts ...string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		ok := true
		for _, p := range parts {
			ok = ok && bytes.Contains(cmd, []byte(p))
		}
		if ok {
			return pid
		}
	}
	return 0
}

// findComm is the first process named comm (0 when none).
func findComm(comm string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(b)) == comm {
			return pid
		}
	}
	return 0
}
