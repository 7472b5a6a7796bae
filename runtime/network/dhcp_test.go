package network

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

var (
	vmMAC    = net.HardwareAddr{0x0a, 0x58, 0x0a, 0x4d, 0x00, 0x05}
	otherMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}
)

func testLease() *lease {
	return &lease{
		MAC:      vmMAC,
		IP:       net.IPv4(10, 77, 0, 5).To4(),
		Mask:     net.CIDRMask(24, 32),
		Gateway:  net.IPv4(10, 77, 0, 1).To4(),
		DNS:      []net.IP{net.IPv4(10, 96, 0, 10).To4()},
		Search:   []string{"default.svc.cluster.local", "svc.cluster.local"},
		MTU:      1450,
		Hostname: "vm-pod",
		ServerIP: serverIP,
	}
}

func request(t *testing.T, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// summary is the part of a reply the tests compare.
type summary struct {
	Type, YourIP, ServerID, Mask, Router, DNS, DomainName, Broadcast, Host string
	Search                                                                 []string
	MTU                                                                    int
	Lease                                                                  string
	Routes                                                                 string
}

func summarize(m *dhcpv4.DHCPv4) summary {
	s := summary{Type: m.MessageType().String()}
	if !m.YourIPAddr.IsUnspecified() {
		s.YourIP = m.YourIPAddr.String()
	}
	if ip := m.ServerIdentifier(); ip != nil {
		s.ServerID = ip.String()
	}
	if mask := m.SubnetMask(); mask != nil {
		s.Mask = net.IP(mask).String()
	}
	if r := m.Router(); len(r) > 0 {
		s.Router = r[0].String()
	}
	if d := m.DNS(); len(d) > 0 {
		s.DNS = d[0].String()
	}
	s.DomainName = m.DomainName()
	if b := m.BroadcastAddress(); b != nil {
		s.Broadcast = b.String()
	}
	s.Host = m.HostName()
	if l := m.DomainSearch(); l != nil {
		s.Search = l.Labels
	}
	if v := m.Options.Get(dhcpv4.OptionInterfaceMTU); len(v) == 2 {
		s.MTU = int(binary.BigEndian.Uint16(v))
	}
	if d := m.IPAddressLeaseTime(0); d != 0 {
		s.Lease = d.String()
	}
	if r := m.ClasslessStaticRoute(); r != nil {
		for _, x := range r {
			s.Routes += x.String() + ";"
		}
	}
	return s
}

func TestLeaseReply(t *testing.T) {
	full := summary{
		YourIP: "10.77.0.5", ServerID: "169.254.75.1", Mask: "255.255.255.0", Router: "10.77.0.1",
		DNS: "10.96.0.10", DomainName: "default.svc.cluster.local", Broadcast: "10.77.0.255", Host: "vm-pod",
		Search: []string{"default.svc.cluster.local", "svc.cluster.local"}, MTU: 1450, Lease: "8760h0m0s",
		Routes: "route to 169.254.75.1/32 via 0.0.0.0;route to 0.0.0.0/0 via 10.77.0.1;",
	}
	with := func(typ string, f func(*summary)) *summary {
		s := full
		s.Type = typ
		if f != nil {
			f(&s)
		}
		return &s
	}
	requestIP := func(ip net.IP) dhcpv4.Modifier { return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)) }
	for _, tc := range []struct {
		name  string
		lease func(*lease)
		req   *dhcpv4.DHCPv4
		want  *summary // nil: no reply
	}{
		{name: "discover", req: request(t, vmMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover)), want: with("OFFER", nil)},
		{name: "request", req: request(t, vmMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), requestIP(net.IPv4(10, 77, 0, 5)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP))), want: with("ACK", nil)},
		{name: "renew by ciaddr", req: request(t, vmMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4(10, 77, 0, 5))),
			want: with("ACK", nil)},
		{name: "request of another address", req: request(t, vmMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), requestIP(net.IPv4(10, 77, 0, 9))),
			want: &summary{Type: "NAK", ServerID: "169.254.75.1"}},
		{name: "request to another server", req: request(t, vmMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), requestIP(net.IPv4(10, 77, 0, 5)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1))))},
		{name: "other client", req: request(t, otherMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))},
		{name: "release", req: request(t, vmMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease))},
		{name: "inform", req: request(t, vmMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(net.IPv4(10, 77, 0, 5))),
			want: with("ACK", func(s *summary) { s.YourIP, s.Lease = "", "" })},
		{name: "routes go to option 121 with the server's and the default route", lease: func(l *lease) {
			l.Routes = []*dhcpv4.Route{{Dest: &net.IPNet{IP: net.IPv4(10, 96, 0, 0).To4(), Mask: net.CIDRMask(12, 32)}, Router: net.IPv4(10, 77, 0, 254).To4()}}
		}, req: request(t, vmMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover)),
			want: with("OFFER", func(s *summary) {
				s.Routes = "route to 169.254.75.1/32 via 0.0.0.0;route to 10.96.0.0/12 via 10.77.0.254;route to 0.0.0.0/0 via 10.77.0.1;"
			})},
		{name: "no gateway, DNS, search, MTU", lease: func(l *lease) {
			l.Gateway, l.DNS, l.Search, l.MTU, l.Mask = nil, nil, nil, 0, net.CIDRMask(32, 32)
		}, req: request(t, vmMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover)),
			want: &summary{Type: "OFFER", YourIP: "10.77.0.5", ServerID: "169.254.75.1", Mask: "255.255.255.255", Host: "vm-pod", Lease: "8760h0m0s",
				Routes: "route to 169.254.75.1/32 via 0.0.0.0;"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := testLease()
			if tc.lease != nil {
				tc.lease(l)
			}
			resp, err := l.reply(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if resp != nil {
					t.Fatalf("reply = %s, want none", resp.Summary())
				}
				return
			}
			if resp == nil {
				t.Fatal("no reply")
			}
			if resp.TransactionID != tc.req.TransactionID || resp.ClientHWAddr.String() != tc.req.ClientHWAddr.String() {
				t.Errorf("reply xid/chaddr %v/%v, want the request's %v/%v", resp.TransactionID, resp.ClientHWAddr, tc.req.TransactionID, tc.req.ClientHWAddr)
			}
			if diff := cmp.Diff(*tc.want, summarize(resp)); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReplyAddr(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  *dhcpv4.DHCPv4
		want string
	}{
		{"no address yet", request(t, vmMAC), "255.255.255.255:68"},
		{"renewing", request(t, vmMAC, dhcpv4.WithClientIP(net.IPv4(10, 77, 0, 5))), "10.77.0.5:68"},
		{"asks for broadcast", request(t, vmMAC, dhcpv4.WithClientIP(net.IPv4(10, 77, 0, 5)), dhcpv4.WithBroadcast(true)), "255.255.255.255:68"},
	} {
		if got := replyAddr(tc.req).String(); got != tc.want {
			t.Errorf("%s: replyAddr = %s, want %s", tc.name, got, tc.want)
		}
	}
}
