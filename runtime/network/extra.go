package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/podtypes"
)

// extraState is one network beyond eth0 in a sandbox's network state. Its
// NIC index (bridge pv-br<i>, tap pv-tap<i>) is its position in
// state.Extra plus one.
type extraState struct {
	Name   string `json:"name"`
	IfName string `json:"ifName"`
	// ConfList is the configuration ADD used, kept for DEL.
	ConfList json.RawMessage `json:"confList"`
	// Result is the CNI result of ADD (current CNI version).
	Result json.RawMessage `json:"result,omitempty"`
	Moved  *moved          `json:"moved,omitempty"`
	// IPs and MAC are what the pod asked for (CNI capabilities).
	IPs []string `json:"ips,omitempty"`
	MAC string   `json:"mac,omitempty"`
}

// runtimeConf is the CNI runtime configuration of the extra network: the
// pod's arguments, its interface name and Multus's ips/mac requests as the
// capabilities plugins declare for them. Ports are published on eth0's
// network only.
func (x *extraState) runtimeConf(sb *podtypes.Sandbox, netnsPath string) *libcni.RuntimeConf {
	rt := runtimeConfFor(sb, netnsPath, x.IfName)
	caps := map[string]any{}
	if len(x.IPs) > 0 {
		caps["ips"] = x.IPs
	}
	if x.MAC != "" {
		caps["mac"] = x.MAC
	}
	if len(caps) > 0 {
		rt.CapabilityArgs = caps
	}
	return rt
}

// plannedNet is a network configuration chosen for one CNI interface.
type plannedNet struct {
	att  attachment
	list *libcni.NetworkConfigList
	file string
}

// netPlan is every network of a pod, resolved before anything is made, so
// a bad annotation or an unknown name leaves nothing to undo.
type netPlan struct {
	annotation string
	primary    plannedNet
	extra      []plannedNet
}

// planNetworks reads the pod's network annotations and finds each
// network's configuration in ConfDir.
func (n *Network) planNetworks(sb *podtypes.Sandbox) (*netPlan, error) {
	pn, err := parseNetworkAnnotations(sb.Config.Annotations)
	if err != nil {
		return nil, err
	}
	plan := &netPlan{annotation: pn.Annotation}
	if pn.Primary == "" {
		list, file, err := loadConfList(n.cfg.ConfDir)
		if err != nil {
			return nil, err
		}
		plan.primary = plannedNet{att: attachment{Name: list.Name, IfName: podIfName}, list: list, file: file}
	} else {
		list, file, err := n.findNamed(pn.Annotation, pn.Primary)
		if err != nil {
			return nil, err
		}
		plan.primary = plannedNet{att: attachment{Name: pn.Primary, IfName: podIfName}, list: list, file: file}
	}
	for _, a := range pn.Extra {
		list, file, err := n.findNamed(pn.Annotation, a.Name)
		if err != nil {
			return nil, err
		}
		plan.extra = append(plan.extra, plannedNet{att: a, list: list, file: file})
	}
	return plan, nil
}

// findNamed finds the configuration of network name, which annotation
// named; not found is the pod's error (InvalidArgument), naming both.
func (n *Network) findNamed(annotation, name string) (*libcni.NetworkConfigList, string, error) {
	list, file, err := findConfList(n.cfg.ConfDir, name)
	if errors.Is(err, errNoNetwork) {
		return nil, "", errdefs.InvalidArgumentf("annotation %s: network %q: %v; accepted: the names of the CNI network configurations in %s", annotation, name, err, n.cfg.ConfDir)
	}
	return list, file, err
}

// addExtra runs CNI ADD for extra network index (1..) and joins its
// interface to the VM's tap of that index. The network is recorded before
// ADD, so teardown runs DEL for it even when ADD fails part way.
func (n *Network) addExtra(ctx context.Context, sb *podtypes.Sandbox, st *state, index int, p plannedNet, annotation string) error {
	x := &extraState{Name: p.att.Name, IfName: p.att.IfName, ConfList: p.list.Bytes, IPs: p.att.IPs, MAC: p.att.MAC}
	st.Extra = append(st.Extra, x)
	if err := n.writeState(st); err != nil {
		return err
	}
	res, err := n.cni.AddNetworkList(ctx, p.list, x.runtimeConf(sb, st.NetNS))
	if err != nil {
		return fmt.Errorf("CNI ADD of network %q (%s, named by annotation %s) for interface %s: %w", p.list.Name, p.file, annotation, x.IfName, err)
	}
	if x.Result, err = encodeResult(p.list.Name, res); err != nil {
		return err
	}
	n.warnOtherInterfaces(sb, p.list.Name, x.Result, x.IfName)
	x.Moved = &moved{}
	perr := plumb(st.NetNS, linksFor(index, x.IfName), x.Moved)
	if err := n.writeState(st); err != nil {
		return err
	}
	if perr != nil {
		return fmt.Errorf("joining interface %s of network %q to the VM's tap: %w", x.IfName, x.Name, perr)
	}
	return nil
}

// status converts the extra network's CNI result into its interface in
// the pod's status and the lease of its NIC. Only eth0's network gives
// the guest a default route: the extra interface's addresses carry no
// gateway and its default routes are dropped (as Multus does unless a pod
// asks otherwise); its other routes go through the address's gateway when
// they name none. DNS is the pod's, as on eth0 (a DHCP client that
// rewrites resolv.conf per lease writes the same file).
func (x *extraState) status(index int, primary *lease) (podtypes.Interface, *lease, error) {
	var ifc podtypes.Interface
	if x.Moved == nil || len(x.Result) == 0 {
		return ifc, nil, fmt.Errorf("the network state of %s (network %q) is incomplete (no CNI result or VM MAC)", x.IfName, x.Name)
	}
	var res types100.Result
	if err := json.Unmarshal(x.Result, &res); err != nil {
		return ifc, nil, fmt.Errorf("decoding the cached CNI result of network %q: %w", x.Name, err)
	}
	mac, err := net.ParseMAC(x.Moved.MAC)
	if err != nil {
		return ifc, nil, fmt.Errorf("the MAC %q of %s: %w", x.Moved.MAC, x.IfName, err)
	}
	idx := sandboxIfIndex(&res, x.IfName)
	ifc = podtypes.Interface{Name: x.IfName, MAC: mac.String(), MTU: x.Moved.MTU}
	l := &lease{MAC: mac, MTU: x.Moved.MTU, ServerIP: linksFor(index, x.IfName).server, DNS: primary.DNS, Search: primary.Search}
	var gw4, gw6 net.IP
	for _, ip := range res.IPs {
		if ip.Interface != nil && idx >= 0 && *ip.Interface != idx {
			continue
		}
		ifc.IPs = append(ifc.IPs, podtypes.IPConfig{CIDR: ip.Address.String()})
		if v4 := ip.Address.IP.To4(); v4 != nil {
			if l.IP == nil {
				l.IP, l.Mask = v4, v4Mask(ip.Address.Mask)
			}
			if gw4 == nil && ip.Gateway != nil {
				gw4 = ip.Gateway.To4()
			}
		} else if gw6 == nil && ip.Gateway != nil {
			gw6 = ip.Gateway
		}
	}
	if l.IP == nil {
		return ifc, nil, fmt.Errorf("the CNI result of network %q has no IPv4 address for %s; podvisor gives the VM its addresses by DHCPv4 and needs one", x.Name, x.IfName)
	}
	for _, r := range res.Routes {
		if ones, _ := r.Dst.Mask.Size(); ones == 0 {
			continue
		}
		gw := r.GW
		if gw == nil {
			if gw = gw6; r.Dst.IP.To4() != nil {
				gw = gw4
			}
		}
		if gw == nil {
			continue // nothing to route through
		}
		ifc.Routes = append(ifc.Routes, podtypes.Route{Dst: r.Dst.String(), GW: gw.String()})
		if r.Dst.IP.To4() != nil {
			dst := r.Dst
			l.Routes = append(l.Routes, &dhcpv4.Route{Dest: &dst, Router: gw.To4()})
		}
	}
	return ifc, l, nil
}

// sandboxIfIndex is the index in res.Interfaces of the interface named
// name inside the sandbox, -1 when the result lists none.
func sandboxIfIndex(res *types100.Result, name string) int {
	idx := -1
	for i, ifc := range res.Interfaces {
		if ifc.Name == name && ifc.Sandbox != "" {
			idx = i
		}
	}
	return idx
}

// v4Mask is a 4-byte mask.
func v4Mask(m net.IPMask) net.IPMask {
	if len(m) == 16 {
		return m[12:]
	}
	return m
}
