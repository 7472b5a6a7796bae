package vmenv

import (
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podvisor/podvisor/runtime/domain"
)

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func TestSlotAgreesWithDomain(t *testing.T) {
	if PCISlot != domain.WrapperNICPCISlot {
		t.Fatalf("vmenv.PCISlot = %#x, domain.WrapperNICPCISlot = %#x: the wrapper's NIC would clash with libvirt's devices", PCISlot, domain.WrapperNICPCISlot)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, nics := range [][]NIC{
		{{Tap: "pv-tap0", MAC: mac("0a:58:0a:4d:00:05")}},
		{{Tap: "pv-tap0", MAC: mac("0a:58:0a:4d:00:05")}, {Tap: "tap_1.x", MAC: mac("52:54:00:12:34:56")}},
	} {
		s := EncodeNICs(nics)
		got, err := DecodeNICs(s)
		if err != nil {
			t.Fatalf("DecodeNICs(%q): %v", s, err)
		}
		if diff := cmp.Diff(nics, got); diff != "" {
			t.Errorf("round trip of %q (-want +got):\n%s", s, diff)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "PODVISOR_NICS is empty"},
		{"pv-tap0", `entry 0 "pv-tap0": want <tap>=<mac>`},
		{"=52:54:00:12:34:56", "tap name"},
		{"tap,script=/bin/evil=52:54:00:12:34:56", "not allowed"},
		{"averyveryverylongname=52:54:00:12:34:56", "1 to 15 characters"},
		{"pv-tap0=zz:54:00:12:34:56", `MAC "zz:54:00:12:34:56"`},
		{"pv-tap0=01:00:5e:00:00:01", "multicast"},
		{"pv-tap0=00:11:22:33:44:55:66:77", "six hex bytes"},
		{"a=52:54:00:12:34:56;b", "entry 1"},
		{strings.Repeat("t=52:54:00:12:34:56;", 8) + "t=52:54:00:12:34:56", "at most 8"},
	} {
		_, err := DecodeNICs(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DecodeNICs(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestQEMUArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		nics []NIC
		want []string
	}{
		{"one", []NIC{{Tap: "pv-tap0", MAC: mac("0a:58:0a:4d:00:05")}}, []string{
			"-netdev", "tap,id=podvisor-net0,ifname=pv-tap0,script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=podvisor-net0,mac=0a:58:0a:4d:00:05,addr=0x1f.0",
		}},
		{"two share the slot", []NIC{{Tap: "a", MAC: mac("0a:58:0a:4d:00:05")}, {Tap: "b", MAC: mac("0a:58:0a:4d:00:06")}}, []string{
			"-netdev", "tap,id=podvisor-net0,ifname=a,script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=podvisor-net0,mac=0a:58:0a:4d:00:05,addr=0x1f.0,multifunction=on",
			"-netdev", "tap,id=podvisor-net1,ifname=b,script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=podvisor-net1,mac=0a:58:0a:4d:00:06,addr=0x1f.1",
		}},
		{"none", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, QEMUArgs(tc.nics)); diff != "" {
				t.Errorf("QEMUArgs (-want +got):\n%s", diff)
			}
		})
	}
}
