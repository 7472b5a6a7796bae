// Package vmenv is the contract between podvisor and its emulator wrapper
// (cmd/podvisor-vmwrapper): the environment variables podvisor sets on a
// domain with <qemu:env>, and the QEMU arguments the wrapper derives from
// them. It has no dependencies beyond the standard library so the wrapper
// stays a small static binary.
package vmenv

import (
	"fmt"
	"net"
	"strings"
)

// Environment variables the wrapper reads.
const (
	// EnvNetNS is the path of the network namespace the emulator runs in
	// (e.g. /run/netns/podvisor-0123456789ab).
	EnvNetNS = "PODVISOR_NETNS"
	// EnvNICs lists the taps and MACs of the VM's NICs: entries
	// "<tap>=<mac>" separated by ';', e.g. "pv-tap0=0a:58:0a:4d:00:05".
	EnvNICs = "PODVISOR_NICS"
	// EnvQEMU overrides the real emulator the wrapper executes.
	EnvQEMU = "PODVISOR_QEMU"
)

// DefaultQEMU is the emulator the wrapper executes when EnvQEMU is unset.
const DefaultQEMU = "/usr/bin/qemu-system-x86_64"

// PCISlot is the slot on PCI bus 0 the wrapper's NICs take (functions 0..7
// of it). It must be one libvirt never assigns: runtime/domain keeps
// domain.WrapperNICPCISlot free for this; the two must agree (a test checks).
const PCISlot = 0x1f

// MaxNICs is how many NICs fit in the functions of PCISlot.
const MaxNICs = 8

// NIC is one network device of the VM: a tap in the pod's network namespace
// and the MAC the guest sees.
type NIC struct {
	Tap string
	MAC net.HardwareAddr
}

// EncodeNICs renders nics for EnvNICs.
func EncodeNICs(nics []NIC) string {
	parts := make([]string, len(nics))
	for i, n := range nics {
		parts[i] = n.Tap + "=" + n.MAC.String()
	}
	return strings.Join(parts, ";")
}

// DecodeNICs parses the value of EnvNICs and checks every entry.
func DecodeNICs(s string) ([]NIC, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%s is empty: want entries <tap>=<mac> separated by ';'", EnvNICs)
	}
	var nics []NIC
	for i, part := range strings.Split(s, ";") {
		tap, mac, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%s entry %d %q: want <tap>=<mac>", EnvNICs, i, part)
		}
		if err := checkIfName(tap); err != nil {
			return nil, fmt.Errorf("%s entry %d %q: tap name: %w", EnvNICs, i, part, err)
		}
		hw, err := net.ParseMAC(mac)
		if err != nil || len(hw) != 6 {
			return nil, fmt.Errorf("%s entry %d %q: MAC %q: want six hex bytes like 52:54:00:12:34:56", EnvNICs, i, part, mac)
		}
		if hw[0]&1 != 0 {
			return nil, fmt.Errorf("%s entry %d %q: MAC %s is a multicast address", EnvNICs, i, part, mac)
		}
		nics = append(nics, NIC{Tap: tap, MAC: hw})
	}
	if len(nics) > MaxNICs {
		return nil, fmt.Errorf("%s has %d entries: at most %d NICs fit in PCI slot %#x", EnvNICs, len(nics), MaxNICs, PCISlot)
	}
	return nics, nil
}

// checkIfName accepts what the kernel accepts as an interface name and
// nothing that could break out of a QEMU option string.
func checkIfName(name string) error {
	if name == "" || len(name) > 15 {
		return fmt.Errorf("%q: want 1 to 15 characters", name)
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return fmt.Errorf("%q: character %q not allowed (want letters, digits, '-', '_', '.')", name, c)
		}
	}
	return nil
}

// QEMUArgs returns the arguments that give the VM its NICs: a tap netdev
// (no scripts: the tap exists, attached to the pod's bridge) and a
// virtio-net device at a fixed PCI address per NIC.
func QEMUArgs(nics []NIC) []string {
	var args []string
	for i, n := range nics {
		id := fmt.Sprintf("podvisor-net%d", i)
		dev := fmt.Sprintf("virtio-net-pci,netdev=%s,mac=%s,addr=%#x.%d", id, n.MAC, PCISlot, i)
		if i == 0 && len(nics) > 1 {
			dev += ",multifunction=on"
		}
		args = append(args,
			"-netdev", fmt.Sprintf("tap,id=%s,ifname=%s,script=no,downscript=no", id, n.Tap),
			"-device", dev)
	}
	return args
}

// Linux capability numbers (linux/capability.h) of QEMUCapabilities.
const (
	CapDACOverride = 1
	CapFowner      = 3
	CapNetAdmin    = 12
)

// QEMUCapabilities are the only capabilities QEMU keeps, as a mask of
// 1<<number: the wrapper drops every other one from all its sets (bounding,
// permitted, effective, inheritable, ambient) before it executes QEMU, which
// runs as root. CAP_DAC_OVERRIDE opens and writes the 9p-shared
// directories whoever owns them; CAP_FOWNER sets times and the user.virtfs
// attributes of 9p files QEMU does not own (touch -d, tar, sticky
// directories); CAP_NET_ADMIN attaches the tap (TUNSETIFF). Gone, among
// others: CAP_MKNOD and CAP_FSETID (device nodes, setuid and setgid bits),
// CAP_SETFCAP (file capabilities), CAP_CHOWN, CAP_SETUID and CAP_SETGID,
// CAP_SYS_ADMIN (mounts, setns), CAP_DAC_READ_SEARCH (open_by_handle_at),
// CAP_SYS_PTRACE, CAP_SYS_MODULE.
const QEMUCapabilities uint64 = 1<<CapDACOverride | 1<<CapFowner | 1<<CapNetAdmin
