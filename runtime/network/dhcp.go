package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// LeaseTime is what the guest is told. It is long because the address never
// changes while the pod lives, and a guest whose renewals go unanswered
// (podvisor restarting) keeps its address until the lease ends.
const LeaseTime = 365 * 24 * time.Hour

// lease is everything the DHCP server tells the one guest it serves.
type lease struct {
	MAC      net.HardwareAddr
	IP       net.IP
	Mask     net.IPMask
	Gateway  net.IP // nil: none
	Routes   []*dhcpv4.Route
	DNS      []net.IP
	Search   []string
	MTU      int
	Hostname string
	ServerIP net.IP
}

// reply answers req, or returns nil when req is not for this server: other
// clients, messages to another server, releases.
func (l *lease) reply(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	if req.OpCode != dhcpv4.OpcodeBootRequest || req.ClientHWAddr.String() != l.MAC.String() {
		return nil, nil
	}
	var mt dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		mt = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(l.ServerIP) {
			return nil, nil // the client took another server's offer
		}
		want := req.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = req.ClientIPAddr // renewing or rebinding
		}
		if !want.Equal(l.IP) {
			return dhcpv4.NewReplyFromRequest(req,
				dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(l.ServerIP)),
				dhcpv4.WithOption(dhcpv4.OptMessage(fmt.Sprintf("this pod's address is %s", l.IP))))
		}
		mt = dhcpv4.MessageTypeAck
	case dhcpv4.MessageTypeInform:
		mt = dhcpv4.MessageTypeAck
	default:
		return nil, nil
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithServerIP(l.ServerIP),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(l.ServerIP)),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(l.Mask)),
	}
	if req.MessageType() != dhcpv4.MessageTypeInform {
		mods = append(mods,
			dhcpv4.WithYourIP(l.IP),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(LeaseTime)))
	}
	if bcast := broadcastAddr(l.IP, l.Mask); bcast != nil {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptBroadcastAddress(bcast)))
	}
	if l.Gateway != nil {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(l.Gateway)))
	}
	// Option 121 always carries an on-link route to the server: renewals
	// (unicast to it) reach it, and so do the replies to connections from
	// the pod's namespace (port-forward). RFC 3442: a client that gets
	// option 121 ignores option 3, so the default route goes into 121 too.
	routes := []*dhcpv4.Route{{Dest: &net.IPNet{IP: l.ServerIP, Mask: net.CIDRMask(32, 32)}, Router: net.IPv4zero.To4()}}
	routes = append(routes, l.Routes...)
	if l.Gateway != nil {
		routes = append(routes, &dhcpv4.Route{Dest: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Router: l.Gateway})
	}
	mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClasslessStaticRoute(routes...)))
	if len(l.DNS) > 0 {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(l.DNS...)))
	}
	if len(l.Search) > 0 {
		mods = append(mods,
			dhcpv4.WithOption(dhcpv4.OptDomainName(l.Search[0])),
			dhcpv4.WithDomainSearchList(l.Search...))
	}
	if l.MTU > 0 {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionInterfaceMTU, binary.BigEndian.AppendUint16(nil, uint16(l.MTU))))
	}
	if l.Hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(l.Hostname)))
	}
	return dhcpv4.NewReplyFromRequest(req, mods...)
}

func broadcastAddr(ip net.IP, mask net.IPMask) net.IP {
	ip4 := ip.To4()
	if ip4 == nil || len(mask) != 4 {
		return nil
	}
	if ones, _ := mask.Size(); ones >= 31 {
		return nil
	}
	b := make(net.IP, 4)
	for i := range b {
		b[i] = ip4[i] | ^mask[i]
	}
	return b
}

// replyAddr is where a reply to req goes: the client's address when it has
// one (renewal), else the broadcast address (the client has no address
// yet, and broadcast needs no ARP entry for it).
func replyAddr(req *dhcpv4.DHCPv4) *net.UDPAddr {
	if ip := req.ClientIPAddr; ip != nil && !ip.IsUnspecified() && !req.IsBroadcast() {
		return &net.UDPAddr{IP: ip, Port: dhcpv4.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}

// dhcpServer serves one lease on one interface of a pod's network namespace.
type dhcpServer struct {
	conn  net.PacketConn
	lease *lease
	log   *slog.Logger
	done  chan struct{}
	once  sync.Once
}

// startDHCP opens the server's socket inside the namespace at netnsPath,
// bound to ifname, and serves from a goroutine: a socket stays in the
// namespace it was made in, so no thread has to stay there.
func startDHCP(netnsPath, ifname string, l *lease, log *slog.Logger) (*dhcpServer, error) {
	var conn net.PacketConn
	err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		c, err := server4.NewIPv4UDPConn(ifname, &net.UDPAddr{Port: dhcpv4.ServerPort})
		conn = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening the DHCP server socket on %s in %s: %w", ifname, netnsPath, err)
	}
	s := &dhcpServer{conn: conn, lease: l, log: log, done: make(chan struct{})}
	go s.serve()
	return s, nil
}

func (s *dhcpServer) serve() {
	defer close(s.done)
	buf := make([]byte, 1500)
	for {
		n, _, err := s.conn.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			s.log.Error("DHCP server: reading; the server stops", "err", err)
			return
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			s.log.Debug("DHCP server: ignoring a malformed message", "err", err)
			continue
		}
		resp, err := s.lease.reply(req)
		if err != nil {
			s.log.Error("DHCP server: building a reply", "request", req.Summary(), "err", err)
			continue
		}
		if resp == nil {
			continue
		}
		if _, err := s.conn.WriteTo(resp.ToBytes(), replyAddr(req)); err != nil {
			s.log.Error("DHCP server: sending a reply", "to", replyAddr(req), "err", err)
			continue
		}
		s.log.Info("DHCP server: answered the VM", "request", req.MessageType().String(), "reply", resp.MessageType().String(), "mac", req.ClientHWAddr.String(), "ip", s.lease.IP.String())
	}
}

// stop closes the socket and waits for the serving goroutine.
func (s *dhcpServer) stop() {
	s.once.Do(func() { s.conn.Close() })
	<-s.done
}
