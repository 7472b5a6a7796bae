package network

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Names of the links podvisor makes inside a pod's network namespace.
const (
	podIfName  = "eth0"
	bridgeName = "pv-br0"
	tapName    = "pv-tap0"
)

// serverIP is the DHCP server's address, on the bridge in the pod's
// namespace: link-local, so it never clashes with a pod network, and a /32
// so the namespace gets no route from it.
var serverIP = net.IPv4(169, 254, 75, 1).To4()

// linkSet names what plumb makes for one CNI interface of the pod: eth0
// (index 0) or an extra network's (index 1..): its bridge, the VM's tap
// and the DHCP server's address on the bridge (one per NIC, so the guest's
// on-link routes to the servers do not clash).
type linkSet struct {
	pod    string
	bridge string
	tap    string
	server net.IP
}

// linksFor returns the names of NIC index, whose CNI interface is ifname.
func linksFor(index int, ifname string) linkSet {
	if index == 0 {
		return linkSet{pod: podIfName, bridge: bridgeName, tap: tapName, server: serverIP}
	}
	return linkSet{pod: ifname, bridge: fmt.Sprintf("pv-br%d", index), tap: fmt.Sprintf("pv-tap%d", index),
		server: net.IPv4(169, 254, 75, byte(1+index)).To4()}
}

// moved is what plumb took from eth0; restore gives it back.
type moved struct {
	// MAC is eth0's MAC as CNI set it: the VM's MAC from now on.
	MAC string `json:"mac"`
	// Addrs are eth0's IPv4 addresses (CIDR).
	Addrs []string `json:"addrs,omitempty"`
	MTU   int      `json:"mtu"`
}

// plumb joins the pod's eth0 to a new tap for the VM through a bridge, in the
// namespace at netnsPath: it takes eth0's IPv4 addresses and routes away (the
// guest owns them now), gives eth0 a random MAC (the guest gets eth0's, so the
// CNI's host side sees the MAC it expects), and puts the DHCP server's
// address on the bridge. rec is filled before each change so that restore
// can undo a plumb that failed part way.
func plumb(netnsPath string, ls linkSet, rec *moved) error {
	return ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		// QEMU runs in this namespace (the wrapper puts it here), and
		// programs in a pod expect loopback up, as the CNI loopback
		// plugin makes it for containers.
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("finding the loopback interface: %w", err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return fmt.Errorf("bringing the loopback interface up: %w", err)
		}
		eth, addrs, err := recordPodIf(ls, rec)
		if err != nil {
			return err
		}
		br, tap, err := addBridgeAndTap(ls, rec.MTU)
		if err != nil {
			return err
		}
		if err := movePodIf(ls, eth, addrs, br); err != nil {
			return err
		}
		for _, l := range []netlink.Link{eth, tap, br} {
			if err := netlink.LinkSetUp(l); err != nil {
				return fmt.Errorf("setting %s up: %w", l.Attrs().Name, err)
			}
		}
		return addServerAddress(ls, br, addrs)
	})
}

// recordPodIf finds eth0 and records its MAC, MTU and IPv4 addresses.
func recordPodIf(ls linkSet, rec *moved) (netlink.Link, []netlink.Addr, error) {
	eth, err := netlink.LinkByName(ls.pod)
	if err != nil {
		return nil, nil, fmt.Errorf("finding %s (the CNI plugin's interface): %w", ls.pod, err)
	}
	rec.MAC = eth.Attrs().HardwareAddr.String()
	rec.MTU = eth.Attrs().MTU
	addrs, err := netlink.AddrList(eth, netlink.FAMILY_V4)
	if err != nil {
		return nil, nil, fmt.Errorf("listing the addresses of %s: %w", ls.pod, err)
	}
	for _, a := range addrs {
		rec.Addrs = append(rec.Addrs, a.IPNet.String())
	}
	return eth, addrs, nil
}

// addBridgeAndTap makes the bridge and the VM's tap on it.
func addBridgeAndTap(ls linkSet, mtu int) (*netlink.Bridge, *netlink.Tuntap, error) {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: ls.bridge, MTU: mtu, HardwareAddr: randomMAC()}}
	if err := netlink.LinkAdd(br); err != nil {
		return nil, nil, fmt.Errorf("creating bridge %s: %w", ls.bridge, err)
	}
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: ls.tap, MTU: mtu, MasterIndex: br.Attrs().Index},
		Mode:      netlink.TUNTAP_MODE_TAP,
		// QEMU opens it with these; a persistent tap keeps
		// existing while no process has it open.
		Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
	}
	if err := netlink.LinkAdd(tap); err != nil {
		return nil, nil, fmt.Errorf("creating tap %s: %w", ls.tap, err)
	}
	return br, tap, nil
}

// movePodIf takes eth0's addresses and routes away (the guest owns them
// now), gives it a random MAC and puts it on the bridge.
func movePodIf(ls linkSet, eth netlink.Link, addrs []netlink.Addr, br *netlink.Bridge) error {
	for _, a := range addrs {
		if err := netlink.AddrDel(eth, &a); err != nil {
			return fmt.Errorf("moving address %s off %s: %w", a.IPNet, ls.pod, err)
		}
	}
	// Routes through eth0 mostly go with its addresses; the rest would
	// send the namespace's own traffic nowhere.
	routes, err := netlink.RouteList(eth, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing the routes of %s: %w", ls.pod, err)
	}
	for _, r := range routes {
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("removing route %s from %s: %w", r, ls.pod, err)
		}
	}
	if err := netlink.LinkSetDown(eth); err != nil {
		return fmt.Errorf("setting %s down: %w", ls.pod, err)
	}
	if err := netlink.LinkSetHardwareAddr(eth, randomMAC()); err != nil {
		return fmt.Errorf("changing the MAC of %s: %w", ls.pod, err)
	}
	if err := netlink.LinkSetMaster(eth, br); err != nil {
		return fmt.Errorf("adding %s to bridge %s: %w", ls.pod, ls.bridge, err)
	}
	return nil
}

// addServerAddress puts the DHCP server's address on the bridge, with a
// route to each of the guest's addresses: the namespace reaches the guest
// from the server address, which the guest has an on-link route to (DHCP
// option 121), so port-forward can dial the guest from here.
func addServerAddress(ls linkSet, br *netlink.Bridge, addrs []netlink.Addr) error {
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ls.server, Mask: net.CIDRMask(32, 32)}}
	if err := netlink.AddrAdd(br, addr); err != nil {
		return fmt.Errorf("adding the DHCP server address %s to %s: %w", addr.IPNet, ls.bridge, err)
	}
	for _, a := range addrs {
		r := &netlink.Route{LinkIndex: br.Attrs().Index, Scope: netlink.SCOPE_LINK, Src: ls.server,
			Dst: &net.IPNet{IP: a.IP, Mask: net.CIDRMask(8*len(a.IP.To4()), 32)}}
		if err := netlink.RouteAdd(r); err != nil {
			return fmt.Errorf("adding a route to the guest's address %s on %s: %w", a.IP, ls.bridge, err)
		}
	}
	return nil
}

// restore undoes plumb as far as rec records: tap and bridge gone, eth0's
// MAC and addresses back, so that CNI DEL finds the interface as CNI ADD
// left it (the bridge plugin removes its masquerade rules for the addresses
// it finds on eth0). Links already restored or missing are fine.
func restore(netnsPath string, ls linkSet, rec *moved) error {
	return ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		for _, name := range []string{ls.tap, ls.bridge} {
			l, err := netlink.LinkByName(name)
			if errors.As(err, &netlink.LinkNotFoundError{}) {
				continue
			}
			if err != nil {
				return fmt.Errorf("finding %s: %w", name, err)
			}
			if err := netlink.LinkDel(l); err != nil {
				return fmt.Errorf("deleting %s: %w", name, err)
			}
		}
		eth, err := netlink.LinkByName(ls.pod)
		if errors.As(err, &netlink.LinkNotFoundError{}) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("finding %s: %w", ls.pod, err)
		}
		if rec == nil {
			return nil
		}
		if rec.MAC != "" && eth.Attrs().HardwareAddr.String() != rec.MAC {
			mac, err := net.ParseMAC(rec.MAC)
			if err != nil {
				return fmt.Errorf("restoring the MAC of %s: recorded MAC %q: %w", ls.pod, rec.MAC, err)
			}
			if err := netlink.LinkSetDown(eth); err != nil {
				return fmt.Errorf("setting %s down: %w", ls.pod, err)
			}
			if err := netlink.LinkSetHardwareAddr(eth, mac); err != nil {
				return fmt.Errorf("restoring the MAC %s of %s: %w", mac, ls.pod, err)
			}
		}
		if err := netlink.LinkSetUp(eth); err != nil {
			return fmt.Errorf("setting %s up: %w", ls.pod, err)
		}
		have, err := netlink.AddrList(eth, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("listing the addresses of %s: %w", ls.pod, err)
		}
	next:
		for _, s := range rec.Addrs {
			a, err := netlink.ParseAddr(s)
			if err != nil {
				return fmt.Errorf("restoring the address of %s: recorded address %q: %w", ls.pod, s, err)
			}
			for _, h := range have {
				if h.IPNet.String() == a.IPNet.String() {
					continue next
				}
			}
			if err := netlink.AddrAdd(eth, a); err != nil {
				return fmt.Errorf("restoring address %s on %s: %w", s, ls.pod, err)
			}
		}
		return nil
	})
}

// bridgeReady checks that the links plumb made are still there.
func bridgeReady(netnsPath string, ls linkSet) error {
	return ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		for _, name := range []string{ls.bridge, ls.tap} {
			if _, err := netlink.LinkByName(name); err != nil {
				return fmt.Errorf("finding %s: %w", name, err)
			}
		}
		return nil
	})
}

// randomMAC returns a random locally administered unicast MAC.
func randomMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	_, _ = rand.Read(mac)
	mac[0] = mac[0]&0xfe | 0x02
	return mac
}
