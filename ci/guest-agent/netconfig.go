package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// netPlan is a cloud-init network config reduced to what the guest applies.
type netPlan struct {
	Ifaces []ifacePlan
	DNS    []string
	Search []string
}

type ifacePlan struct {
	MAC  string // lower case; how the NIC is found
	Name string // wanted name; empty keeps the kernel's
	MTU  int
	DHCP bool // configured by DHCP (the caller does it)
	// Addrs are CIDRs; Gateways become default routes.
	Addrs    []string
	Gateways []string
	Routes   []routePlan
}

type routePlan struct{ Dst, Via string }

// errNoConfig means the drive has no network config: the guest uses DHCP.
var errNoConfig = errors.New("no network config on the drive")

// readPlan finds and parses the network config of the drive mounted at dir.
func readPlan(dir string) (*netPlan, string, error) {
	p := filepath.Join(dir, "network-config")
	if b, err := os.ReadFile(p); err == nil {
		plan, err := parseNoCloud(string(b))
		return plan, p, err
	}
	p = filepath.Join(dir, "openstack", "latest", "network_data.json")
	if b, err := os.ReadFile(p); err == nil {
		plan, err := parseNetworkData(b)
		return plan, p, err
	}
	return nil, "", errNoConfig
}

// parseNoCloud reads a NoCloud network-config, version 1 or 2 (either at the
// top or under a "network:" key).
func parseNoCloud(src string) (*netPlan, error) {
	v, err := parseYAML(src)
	if err != nil {
		return nil, fmt.Errorf("network-config: %w", err)
	}
	top, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("network-config: want a mapping at the top, got %T", v)
	}
	if n, ok := top["network"].(map[string]any); ok {
		top = n
	}
	switch str(top["version"]) {
	case "1":
		return parseV1(top)
	case "2":
		return parseV2(top)
	}
	return nil, fmt.Errorf("network-config: version %q: accepted 1 or 2", str(top["version"]))
}

func parseV1(top map[string]any) (*netPlan, error) {
	plan := &netPlan{}
	for i, e := range list(top["config"]) {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("network-config v1: config[%d]: want a mapping", i)
		}
		switch t := str(m["type"]); t {
		case "physical":
			ifc := ifacePlan{MAC: strings.ToLower(str(m["mac_address"])), Name: str(m["name"])}
			if ifc.MAC == "" {
				return nil, fmt.Errorf("network-config v1: config[%d] (%s): mac_address is required", i, ifc.Name)
			}
			mtu, err := optInt(m["mtu"])
			if err != nil {
				return nil, fmt.Errorf("network-config v1: config[%d].mtu: %w", i, err)
			}
			ifc.MTU = mtu
			for j, s := range list(m["subnets"]) {
				sn, ok := s.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("network-config v1: config[%d].subnets[%d]: want a mapping", i, j)
				}
				where := fmt.Sprintf("network-config v1: config[%d].subnets[%d]", i, j)
				switch st := str(sn["type"]); st {
				case "dhcp", "dhcp4":
					ifc.DHCP = true
				case "static", "static6":
					addr, err := cidr(str(sn["address"]), str(sn["netmask"]))
					if err != nil {
						return nil, fmt.Errorf("%s.address: %w", where, err)
					}
					ifc.Addrs = append(ifc.Addrs, addr)
					if gw := str(sn["gateway"]); gw != "" {
						ifc.Gateways = append(ifc.Gateways, gw)
					}
					for k, r := range list(sn["routes"]) {
						rm, _ := r.(map[string]any)
						dst, err := cidr(str(rm["network"]), str(rm["netmask"]))
						if err != nil {
							return nil, fmt.Errorf("%s.routes[%d]: %w", where, k, err)
						}
						ifc.Routes = append(ifc.Routes, routePlan{Dst: dst, Via: str(rm["gateway"])})
					}
					plan.DNS = appendNew(plan.DNS, strList(sn["dns_nameservers"])...)
					plan.Search = appendNew(plan.Search, strList(sn["dns_search"])...)
				case "dhcp6", "ipv6_slaac", "ipv6_dhcpv6-stateless", "ipv6_dhcpv6-stateful", "manual":
					// Not applied by this guest: IPv6 autoconfiguration is the kernel's.
				default:
					return nil, fmt.Errorf("%s.type: %q: accepted dhcp, dhcp4, static, static6", where, st)
				}
			}
			plan.Ifaces = append(plan.Ifaces, ifc)
		case "nameserver":
			plan.DNS = appendNew(plan.DNS, strList(m["address"])...)
			plan.Search = appendNew(plan.Search, strList(m["search"])...)
		case "route":
			// Global routes need an interface; they are rare and ours never emits them.
			return nil, fmt.Errorf("network-config v1: config[%d]: type route is not supported by this guest", i)
		default:
			return nil, fmt.Errorf("network-config v1: config[%d].type: %q: accepted physical, nameserver", i, t)
		}
	}
	return plan, nil
}

func parseV2(top map[string]any) (*netPlan, error) {
	plan := &netPlan{}
	eths, _ := top["ethernets"].(map[string]any)
	names := make([]string, 0, len(eths))
	for n := range eths {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, id := range names {
		m, ok := eths[id].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("network-config v2: ethernets.%s: want a mapping", id)
		}
		where := "network-config v2: ethernets." + id
		match, _ := m["match"].(map[string]any)
		ifc := ifacePlan{MAC: strings.ToLower(str(match["macaddress"])), Name: str(m["set-name"])}
		if ifc.MAC == "" {
			// Without a MAC match the id is the kernel's name.
			ifc.Name = id
		}
		if b := str(m["dhcp4"]); b == "true" || b == "yes" {
			ifc.DHCP = true
		}
		mtu, err := optInt(m["mtu"])
		if err != nil {
			return nil, fmt.Errorf("%s.mtu: %w", where, err)
		}
		ifc.MTU = mtu
		for i, a := range strList(m["addresses"]) {
			c, err := cidr(a, "")
			if err != nil {
				return nil, fmt.Errorf("%s.addresses[%d]: %w", where, i, err)
			}
			ifc.Addrs = append(ifc.Addrs, c)
		}
		for _, k := range []string{"gateway4", "gateway6"} {
			if gw := str(m[k]); gw != "" {
				ifc.Gateways = append(ifc.Gateways, gw)
			}
		}
		for i, r := range list(m["routes"]) {
			rm, _ := r.(map[string]any)
			to := str(rm["to"])
			if to == "default" || to == "0.0.0.0/0" || to == "::/0" {
				ifc.Gateways = append(ifc.Gateways, str(rm["via"]))
				continue
			}
			dst, err := cidr(to, "")
			if err != nil {
				return nil, fmt.Errorf("%s.routes[%d].to: %w", where, i, err)
			}
			ifc.Routes = append(ifc.Routes, routePlan{Dst: dst, Via: str(rm["via"])})
		}
		if ns, ok := m["nameservers"].(map[string]any); ok {
			plan.DNS = appendNew(plan.DNS, strList(ns["addresses"])...)
			plan.Search = appendNew(plan.Search, strList(ns["search"])...)
		}
		plan.Ifaces = append(plan.Ifaces, ifc)
	}
	if len(plan.Ifaces) == 0 {
		return nil, errors.New("network-config v2: no ethernets")
	}
	return plan, nil
}

// parseNetworkData reads an OpenStack network_data.json.
func parseNetworkData(b []byte) (*netPlan, error) {
	var nd struct {
		Links []struct {
			ID   string `json:"id"`
			MAC  string `json:"ethernet_mac_address"`
			MTU  int    `json:"mtu"`
			Name string `json:"name"`
		} `json:"links"`
		Networks []struct {
			Link    string `json:"link"`
			Type    string `json:"type"`
			IP      string `json:"ip_address"`
			Netmask string `json:"netmask"`
			Routes  []struct {
				Network, Netmask, Gateway string
			} `json:"routes"`
			DNS    []string `json:"dns_nameservers"`
			Search []string `json:"dns_search"`
		} `json:"networks"`
		Services []struct {
			Type    string `json:"type"`
			Address string `json:"address"`
		} `json:"services"`
	}
	if err := json.Unmarshal(b, &nd); err != nil {
		return nil, fmt.Errorf("network_data.json: %w", err)
	}
	plan := &netPlan{}
	index := map[string]int{}
	for i, l := range nd.Links {
		if l.MAC == "" {
			return nil, fmt.Errorf("network_data.json: links[%d] (%s): ethernet_mac_address is required", i, l.ID)
		}
		index[l.ID] = len(plan.Ifaces)
		plan.Ifaces = append(plan.Ifaces, ifacePlan{MAC: strings.ToLower(l.MAC), Name: l.Name, MTU: l.MTU})
	}
	for i, n := range nd.Networks {
		k, ok := index[n.Link]
		if !ok {
			return nil, fmt.Errorf("network_data.json: networks[%d].link: %q names no link", i, n.Link)
		}
		ifc := &plan.Ifaces[k]
		switch n.Type {
		case "ipv4_dhcp", "dhcp4":
			ifc.DHCP = true
		case "ipv4", "ipv6":
			addr, err := cidr(n.IP, n.Netmask)
			if err != nil {
				return nil, fmt.Errorf("network_data.json: networks[%d].ip_address: %w", i, err)
			}
			ifc.Addrs = append(ifc.Addrs, addr)
			for j, r := range n.Routes {
				dst, err := cidr(r.Network, r.Netmask)
				if err != nil {
					return nil, fmt.Errorf("network_data.json: networks[%d].routes[%d]: %w", i, j, err)
				}
				if p := netip.MustParsePrefix(dst); p.Bits() == 0 {
					ifc.Gateways = append(ifc.Gateways, r.Gateway)
				} else {
					ifc.Routes = append(ifc.Routes, routePlan{Dst: dst, Via: r.Gateway})
				}
			}
		case "ipv6_dhcp", "ipv6_slaac", "ipv6_dhcpv6-stateless", "ipv6_dhcpv6-stateful":
		default:
			return nil, fmt.Errorf("network_data.json: networks[%d].type: %q: accepted ipv4, ipv6, ipv4_dhcp", i, n.Type)
		}
		plan.DNS = appendNew(plan.DNS, n.DNS...)
		plan.Search = appendNew(plan.Search, n.Search...)
	}
	for _, s := range nd.Services {
		if s.Type == "dns" {
			plan.DNS = appendNew(plan.DNS, s.Address)
		}
	}
	return plan, nil
}

// cidr joins an address and a netmask (dotted, IPv6 form or prefix length)
// into a canonical CIDR; an address that has /N already keeps it.
func cidr(addr, mask string) (string, error) {
	if addr == "" {
		return "", errors.New("address is missing")
	}
	if strings.Contains(addr, "/") {
		p, err := netip.ParsePrefix(addr)
		if err != nil {
			return "", fmt.Errorf("%q is not an address/prefix: %w", addr, err)
		}
		return p.String(), nil
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return "", fmt.Errorf("%q is not an IP address: %w", addr, err)
	}
	bits := ip.BitLen()
	switch {
	case mask == "":
	case strings.Contains(mask, ".") || strings.Contains(mask, ":"):
		m := net.ParseIP(mask)
		if m == nil {
			return "", fmt.Errorf("netmask %q is not a mask", mask)
		}
		if ip.Is4() {
			m = m.To4()
		}
		ones, total := net.IPMask(m).Size()
		if total == 0 || total != bits {
			return "", fmt.Errorf("netmask %q is not a contiguous %d-bit mask", mask, bits)
		}
		bits = ones
	default:
		n, err := strconv.Atoi(mask)
		if err != nil || n < 0 || n > bits {
			return "", fmt.Errorf("netmask %q: want a mask or a prefix length up to %d", mask, bits)
		}
		bits = n
	}
	return netip.PrefixFrom(ip, bits).String(), nil
}

// netOps is what applying a plan needs from the guest.
type netOps interface {
	// Links maps MAC (lower case) to the kernel's interface name.
	Links() (map[string]string, error)
	// IP runs busybox ip with args.
	IP(args ...string) error
	WriteResolv(content string) error
}

// applyPlan configures every static interface of plan and returns the
// names of those it configured. Interfaces marked DHCP, missing from the
// guest, or failing are left (flushed) for the caller's DHCP, with the
// problem written to log.
func applyPlan(plan *netPlan, ops netOps, log io.Writer) []string {
	links, err := ops.Links()
	if err != nil {
		fmt.Fprintf(log, "netconfig: %v\n", err)
		return nil
	}
	var done []string
	for _, ifc := range plan.Ifaces {
		name := ifc.Name
		if ifc.MAC != "" {
			cur, ok := links[ifc.MAC]
			if !ok {
				fmt.Fprintf(log, "netconfig: no NIC with MAC %s (for %s)\n", ifc.MAC, ifc.Name)
				continue
			}
			taken := false
			for _, n := range links {
				taken = taken || (n == ifc.Name && n != cur)
			}
			if ifc.Name != "" && ifc.Name != cur && !taken {
				if err := ops.IP("link", "set", "dev", cur, "name", ifc.Name); err != nil {
					fmt.Fprintf(log, "netconfig: renaming %s to %s: %v\n", cur, ifc.Name, err)
					name = cur
				}
			} else {
				name = cur
			}
		}
		if ifc.DHCP || len(ifc.Addrs) == 0 {
			continue
		}
		if err := configure(name, ifc, ops); err != nil {
			fmt.Fprintf(log, "netconfig: %s: %v; leaving it to DHCP\n", name, err)
			_ = ops.IP("addr", "flush", "dev", name)
			continue
		}
		done = append(done, name)
	}
	if len(done) > 0 && (len(plan.DNS) > 0 || len(plan.Search) > 0) {
		var b strings.Builder
		if len(plan.Search) > 0 {
			fmt.Fprintf(&b, "search %s\n", strings.Join(plan.Search, " "))
		}
		for _, s := range plan.DNS {
			fmt.Fprintf(&b, "nameserver %s\n", s)
		}
		if err := ops.WriteResolv(b.String()); err != nil {
			fmt.Fprintf(log, "netconfig: writing resolv.conf: %v\n", err)
		}
	}
	return done
}

func configure(name string, ifc ifacePlan, ops netOps) error {
	if ifc.MTU > 0 {
		if err := ops.IP("link", "set", "dev", name, "mtu", strconv.Itoa(ifc.MTU)); err != nil {
			return err
		}
	}
	if err := ops.IP("link", "set", "dev", name, "up"); err != nil {
		return err
	}
	for _, a := range ifc.Addrs {
		if err := ops.IP("addr", "add", a, "dev", name); err != nil {
			return err
		}
	}
	for _, gw := range ifc.Gateways {
		if err := ops.IP(family(gw), "route", "replace", "default", "via", gw, "dev", name, "onlink"); err != nil {
			return err
		}
	}
	for _, r := range ifc.Routes {
		args := []string{family(r.Dst), "route", "replace", r.Dst}
		if r.Via != "" {
			args = append(args, "via", r.Via)
		}
		args = append(args, "dev", name)
		if r.Via != "" {
			args = append(args, "onlink")
		}
		if err := ops.IP(args...); err != nil {
			return err
		}
	}
	return nil
}

func family(addr string) string {
	if strings.Contains(addr, ":") {
		return "-6"
	}
	return "-4"
}

// guestOps applies a plan with busybox ip on the running guest.
type guestOps struct{}

func (guestOps) Links() (map[string]string, error) {
	ents, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return nil, fmt.Errorf("listing NICs: %w", err)
	}
	m := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", e.Name(), "address"))
		if err == nil {
			m[strings.ToLower(string(trimNL(b)))] = e.Name()
		}
	}
	return m, nil
}

func (guestOps) IP(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (guestOps) WriteResolv(content string) error {
	return os.WriteFile("/etc/resolv.conf", []byte(content), 0o644)
}

// runNetconfig is the netconfig subcommand: it prints the names of the
// interfaces it configured statically, one a line. Exit status 0: some
// configured; 3: no network config on the drive; 1: config unusable.
func runNetconfig(dir string, stdout, stderr io.Writer) int {
	plan, path, err := readPlan(dir)
	if errors.Is(err, errNoConfig) {
		return 3
	}
	if err != nil {
		fmt.Fprintf(stderr, "netconfig: %v\n", err)
		return 1
	}
	done := applyPlan(plan, guestOps{}, stderr)
	for _, n := range done {
		fmt.Fprintln(stdout, n)
	}
	if len(done) == 0 {
		fmt.Fprintf(stderr, "netconfig: %s configures no interface statically\n", path)
		return 1
	}
	return 0
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func strList(v any) []string {
	var r []string
	for _, e := range list(v) {
		if s := str(e); s != "" {
			r = append(r, s)
		}
	}
	if s, ok := v.(string); ok && s != "" {
		r = append(r, s)
	}
	return r
}

func optInt(v any) (int, error) {
	s := str(v)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a non-negative integer", s)
	}
	return n, nil
}

func appendNew(l []string, vs ...string) []string {
	for _, v := range vs {
		found := false
		for _, e := range l {
			found = found || e == v
		}
		if !found {
			l = append(l, v)
		}
	}
	return l
}
