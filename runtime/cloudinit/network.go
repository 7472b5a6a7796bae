package cloudinit

import (
	"fmt"
	"net"
	"net/netip"

	"sigs.k8s.io/yaml"
)

// nic is an Interface with its addresses parsed and its routes resolved.
type nic struct {
	name   string
	mac    string
	mtu    int
	addrs  []nicAddr
	routes []nicRoute
}

type nicAddr struct {
	prefix netip.Prefix // address with its prefix length, not masked
	gw     netip.Addr   // invalid when none
}

type nicRoute struct {
	dst netip.Prefix // masked
	gw  netip.Addr
}

func parseNetwork(n *NetworkInfo) ([]nic, error) {
	var r []nic
	names := map[string]bool{}
	macs := map[string]bool{}
	for i, ifc := range n.Interfaces {
		c := nic{name: ifc.Name, mtu: ifc.MTU}
		if c.name == "" {
			c.name = fmt.Sprintf("eth%d", i)
		}
		where := fmt.Sprintf("interface %d (%s)", i, c.name)
		if names[c.name] {
			return nil, fmt.Errorf("%s: name used twice", where)
		}
		names[c.name] = true
		hw, err := net.ParseMAC(ifc.MAC)
		if err != nil || len(hw) != 6 {
			return nil, fmt.Errorf("%s: bad MAC %q: accepted six colon-separated hex bytes", where, ifc.MAC)
		}
		c.mac = hw.String()
		if macs[c.mac] {
			return nil, fmt.Errorf("%s: MAC %s used twice", where, c.mac)
		}
		macs[c.mac] = true
		if ifc.MTU < 0 || ifc.MTU > 65535 {
			return nil, fmt.Errorf("%s: bad MTU %d: accepted 0 (default) to 65535", where, ifc.MTU)
		}
		for _, a := range ifc.Addresses {
			p, err := netip.ParsePrefix(a.CIDR)
			if err != nil {
				return nil, fmt.Errorf("%s: bad address %q: accepted an address with prefix length such as 10.1.2.3/24", where, a.CIDR)
			}
			na := nicAddr{prefix: p}
			if a.Gateway != "" {
				gw, err := netip.ParseAddr(a.Gateway)
				if err != nil || gw.Is4() != p.Addr().Is4() {
					return nil, fmt.Errorf("%s: bad gateway %q for address %s: accepted an IP of the same family", where, a.Gateway, a.CIDR)
				}
				na.gw = gw
			}
			c.addrs = append(c.addrs, na)
		}
		for _, rt := range ifc.Routes {
			dst, err := netip.ParsePrefix(rt.Dst)
			if err != nil {
				return nil, fmt.Errorf("%s: bad route destination %q: accepted a CIDR such as 10.96.0.0/12", where, rt.Dst)
			}
			dst = dst.Masked()
			var gw netip.Addr
			if rt.Gateway != "" {
				gw, err = netip.ParseAddr(rt.Gateway)
				if err != nil || gw.Is4() != dst.Addr().Is4() {
					return nil, fmt.Errorf("%s: bad gateway %q for route to %s: accepted an IP of the same family", where, rt.Gateway, rt.Dst)
				}
			} else {
				for _, a := range c.addrs {
					if a.gw.IsValid() && a.gw.Is4() == dst.Addr().Is4() {
						gw = a.gw
						break
					}
				}
				if !gw.IsValid() {
					return nil, fmt.Errorf("%s: route to %s has no gateway and the interface has no gateway of that family", where, rt.Dst)
				}
			}
			// The default route of an address with a gateway is already there.
			if dst.Bits() == 0 && c.hasGateway(gw) {
				continue
			}
			c.routes = append(c.routes, nicRoute{dst: dst, gw: gw})
		}
		r = append(r, c)
	}
	return r, nil
}

func (c *nic) hasGateway(gw netip.Addr) bool {
	for _, a := range c.addrs {
		if a.gw == gw {
			return true
		}
	}
	return false
}

// subnetFor picks the address whose subnet holds the route's gateway, else
// the first one of the family, as Virtlet did; -1 when none.
func (c *nic) subnetFor(rt nicRoute) int {
	first := -1
	for i, a := range c.addrs {
		if a.prefix.Addr().Is4() != rt.gw.Is4() {
			continue
		}
		if a.prefix.Masked().Contains(rt.gw) {
			return i
		}
		if first < 0 {
			first = i
		}
	}
	return first
}

func netmask(p netip.Prefix) string {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return net.IP(net.CIDRMask(p.Bits(), bits)).String()
}

func parseDNS(d *DNSConfig) ([]any, []any, error) {
	if d == nil {
		return nil, nil, nil
	}
	var servers, searches []any
	for _, s := range d.Servers {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, nil, fmt.Errorf("bad DNS server %q: accepted an IP address", s)
		}
		servers = append(servers, a.String())
	}
	for _, s := range d.Searches {
		searches = append(searches, s)
	}
	return servers, searches, nil
}

// networkConfigV1 renders cloud-init network config version 1 (Virtlet's).
func networkConfigV1(in *Input) ([]byte, error) {
	nics, err := parseNetwork(in.Network)
	if err != nil {
		return nil, err
	}
	servers, searches, err := parseDNS(in.DNS)
	if err != nil {
		return nil, err
	}
	var config []any
	for _, c := range nics {
		var subnets []map[string]any
		for _, a := range c.addrs {
			s := map[string]any{"type": "static", "address": a.prefix.String()}
			if a.prefix.Addr().Is6() {
				s["type"] = "static6"
			}
			if a.gw.IsValid() {
				s["gateway"] = a.gw.String()
			}
			subnets = append(subnets, s)
		}
		for _, rt := range c.routes {
			i := c.subnetFor(rt)
			if i < 0 {
				return nil, fmt.Errorf("interface %s: route to %s via %s: the interface has no address of that family", c.name, rt.dst, rt.gw)
			}
			routes, _ := subnets[i]["routes"].([]any)
			subnets[i]["routes"] = append(routes, map[string]any{
				"network": rt.dst.Addr().String(),
				"netmask": netmask(rt.dst),
				"gateway": rt.gw.String(),
			})
		}
		if len(subnets) == 0 {
			subnets = []map[string]any{{"type": "dhcp"}}
		}
		sl := make([]any, len(subnets))
		for i, s := range subnets {
			sl[i] = s
		}
		e := map[string]any{
			"type":        "physical",
			"name":        c.name,
			"mac_address": c.mac,
			"subnets":     sl,
		}
		if c.mtu > 0 {
			e["mtu"] = c.mtu
		}
		config = append(config, e)
	}
	if len(servers) > 0 || len(searches) > 0 {
		ns := map[string]any{"type": "nameserver"}
		if len(servers) > 0 {
			ns["address"] = servers
		}
		if len(searches) > 0 {
			ns["search"] = searches
		}
		config = append(config, ns)
	}
	return yaml.Marshal(map[string]any{"version": 1, "config": config})
}

// networkConfigV2 renders cloud-init network config version 2 (netplan).
func networkConfigV2(in *Input) ([]byte, error) {
	nics, err := parseNetwork(in.Network)
	if err != nil {
		return nil, err
	}
	servers, searches, err := parseDNS(in.DNS)
	if err != nil {
		return nil, err
	}
	eths := map[string]any{}
	for _, c := range nics {
		e := map[string]any{
			"match":    map[string]any{"macaddress": c.mac},
			"set-name": c.name,
		}
		if c.mtu > 0 {
			e["mtu"] = c.mtu
		}
		var addrs, routes []any
		for _, a := range c.addrs {
			addrs = append(addrs, a.prefix.String())
			// gateway4/gateway6 rather than a default route: cloud-init
			// 22.x rejects "to: default" and turns "to: ::/0" into the
			// address's prefix; netplan only warns that they are deprecated.
			if a.gw.IsValid() {
				k := "gateway4"
				if a.gw.Is6() {
					k = "gateway6"
				}
				if _, set := e[k]; !set {
					e[k] = a.gw.String()
				}
			}
		}
		for _, rt := range c.routes {
			routes = append(routes, map[string]any{"to": rt.dst.String(), "via": rt.gw.String()})
		}
		if len(addrs) > 0 {
			e["addresses"] = addrs
		} else {
			e["dhcp4"] = true
		}
		if len(routes) > 0 {
			e["routes"] = routes
		}
		if len(servers) > 0 || len(searches) > 0 {
			ns := map[string]any{}
			if len(servers) > 0 {
				ns["addresses"] = servers
			}
			if len(searches) > 0 {
				ns["search"] = searches
			}
			e["nameservers"] = ns
		}
		eths[c.name] = e
	}
	return yaml.Marshal(map[string]any{"version": 2, "ethernets": eths})
}

// networkDataJSON renders OpenStack's network_data.json for ConfigDrive.
func networkDataJSON(in *Input) ([]byte, error) {
	nics, err := parseNetwork(in.Network)
	if err != nil {
		return nil, err
	}
	servers, searches, err := parseDNS(in.DNS)
	if err != nil {
		return nil, err
	}
	links := []any{}
	networks := []any{}
	for _, c := range nics {
		l := map[string]any{
			"id":                   c.name,
			"name":                 c.name,
			"type":                 "phy",
			"ethernet_mac_address": c.mac,
		}
		if c.mtu > 0 {
			l["mtu"] = c.mtu
		}
		links = append(links, l)
		nets, err := configDriveNetworks(c, len(networks), searches)
		if err != nil {
			return nil, err
		}
		for _, n := range nets {
			networks = append(networks, n)
		}
	}
	services := []any{}
	for _, s := range servers {
		services = append(services, map[string]any{"type": "dns", "address": s})
	}
	return marshalJSON("network_data.json", map[string]any{
		"links":    links,
		"networks": networks,
		"services": services,
	})
}

// configDriveNetworks are the networks[] entries of one interface, numbered
// from first: one per address with its routes, or one asking for DHCP.
func configDriveNetworks(c nic, first int, searches []any) ([]map[string]any, error) {
	var nets []map[string]any
	for _, a := range c.addrs {
		id := fmt.Sprintf("net-%d", first+len(nets))
		n := map[string]any{
			"id":         id,
			"network_id": id,
			"link":       c.name,
			"type":       "ipv4",
			"ip_address": a.prefix.Addr().String(),
			"netmask":    netmask(a.prefix),
		}
		if a.prefix.Addr().Is6() {
			n["type"] = "ipv6"
		}
		if a.gw.IsValid() {
			dflt := "0.0.0.0"
			if a.gw.Is6() {
				dflt = "::"
			}
			n["routes"] = []any{map[string]any{"network": dflt, "netmask": dflt, "gateway": a.gw.String()}}
		}
		if len(searches) > 0 {
			n["dns_search"] = searches
		}
		nets = append(nets, n)
	}
	for _, rt := range c.routes {
		i := c.subnetFor(rt)
		if i < 0 {
			return nil, fmt.Errorf("interface %s: route to %s via %s: the interface has no address of that family", c.name, rt.dst, rt.gw)
		}
		routes, _ := nets[i]["routes"].([]any)
		nets[i]["routes"] = append(routes, map[string]any{
			"network": rt.dst.Addr().String(),
			"netmask": netmask(rt.dst),
			"gateway": rt.gw.String(),
		})
	}
	if len(nets) == 0 {
		id := fmt.Sprintf("net-%d", first)
		n := map[string]any{"id": id, "network_id": id, "link": c.name, "type": "ipv4_dhcp"}
		if len(searches) > 0 {
			n["dns_search"] = searches
		}
		nets = append(nets, n)
	}
	return nets, nil
}
