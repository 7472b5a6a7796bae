// Package fakecni is a CNI plugin for tests of runtime/network: a real
// plugin process (the test binary run under the name "fakecni", see
// RunIfPlugin) that makes an interface (a veth with its peer beside it) in the pod's namespace with an
// address from its subnet, keeps one file per allocation (a leak check's
// view) and logs every call, and fails ADD when its configuration says so
// (after making its interface, as a half-failed real plugin would). No
// traffic flows: it is for the multi-network lifecycle and its rollback,
// not for packets.
package fakecni

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// PluginName is the plugin's "type" and its binary's name.
const PluginName = "fakecni"

// Conf is the plugin's network configuration.
type Conf struct {
	types.PluginConf
	// Subnet is an IPv4 /24 or larger; the gateway is its .1.
	Subnet string `json:"subnet"`
	// StateDir holds the allocations (one file per container and
	// interface) and the call log.
	StateDir string `json:"stateDir"`
	// FailAdd makes ADD fail after making its interface and allocation.
	FailAdd bool `json:"failAdd,omitempty"`
}

// RunIfPlugin runs the plugin and exits when the process was started as
// it (argv[0] named PluginName); otherwise it returns. Call it first in a
// test's TestMain, and link or copy os.Executable() as
// <bin dir>/fakecni.
func RunIfPlugin() {
	if filepath.Base(os.Args[0]) != PluginName {
		return
	}
	skel.PluginMainFuncs(skel.CNIFuncs{Add: add, Del: del, Check: func(*skel.CmdArgs) error { return nil }},
		version.All, "podvisor's fake CNI plugin for tests")
	os.Exit(0)
}

// Install links the running test binary into dir as the plugin.
func Install(dir string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return os.Symlink(exe, filepath.Join(dir, PluginName))
}

func load(args *skel.CmdArgs) (*Conf, netip.Prefix, error) {
	var c Conf
	if err := json.Unmarshal(args.StdinData, &c); err != nil {
		return nil, netip.Prefix{}, fmt.Errorf("fakecni: decoding the configuration: %w", err)
	}
	p, err := netip.ParsePrefix(c.Subnet)
	if err != nil || !p.Addr().Is4() || c.StateDir == "" {
		return nil, netip.Prefix{}, fmt.Errorf("fakecni: want an IPv4 subnet (got %q) and a stateDir", c.Subnet)
	}
	return &c, p.Masked(), nil
}

func logCall(c *Conf, format string, a ...any) {
	f, err := os.OpenFile(filepath.Join(c.StateDir, "calls.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, format+"\n", a...)
}

func allocPath(c *Conf, args *skel.CmdArgs) string {
	return filepath.Join(c.StateDir, "alloc-"+args.ContainerID+"-"+args.IfName)
}

// allocate takes the lowest free address after the gateway.
func allocate(c *Conf, p netip.Prefix, args *skel.CmdArgs) (netip.Addr, error) {
	used := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(c.StateDir, "alloc-*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		used[string(b)] = true
	}
	for a := p.Addr().Next().Next(); p.Contains(a); a = a.Next() {
		if !used[a.String()] {
			return a, os.WriteFile(allocPath(c, args), []byte(a.String()), 0o600)
		}
	}
	return netip.Addr{}, fmt.Errorf("fakecni: no free address in %s", p)
}

func add(args *skel.CmdArgs) error {
	c, p, err := load(args)
	if err != nil {
		return err
	}
	a, err := allocate(c, p, args)
	if err != nil {
		return err
	}
	mac := net.HardwareAddr{0x02, 0xfa, a.As4()[0], a.As4()[1], a.As4()[2], a.As4()[3]}
	err = ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
		// A veth whose peer stays in the pod's namespace (the kernel
		// may lack the dummy driver); DEL of the interface takes both.
		peer := "fk-" + args.IfName
		if len(peer) > 15 {
			peer = peer[:15]
		}
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: args.IfName, HardwareAddr: mac, MTU: 1400}, PeerName: peer}
		if err := netlink.LinkAdd(v); err != nil {
			return fmt.Errorf("creating %s: %w", args.IfName, err)
		}
		d, err := netlink.LinkByName(args.IfName)
		if err != nil {
			return err
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(p.Bits(), 32)}}
		if err := netlink.AddrAdd(d, addr); err != nil {
			return fmt.Errorf("adding %s to %s: %w", addr.IPNet, args.IfName, err)
		}
		return netlink.LinkSetUp(d)
	})
	if err != nil {
		return fmt.Errorf("fakecni: %w", err)
	}
	if c.FailAdd {
		logCall(c, "ADD %s %s %s failed", c.Name, args.ContainerID, args.IfName)
		return errors.New("fakecni: injected ADD failure")
	}
	logCall(c, "ADD %s %s %s %s", c.Name, args.ContainerID, args.IfName, a)
	gw := p.Addr().Next()
	zero := 0
	res := &types100.Result{
		CNIVersion: c.CNIVersion,
		Interfaces: []*types100.Interface{{Name: args.IfName, Mac: mac.String(), Sandbox: args.Netns}},
		IPs: []*types100.IPConfig{{Interface: &zero, Address: net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(p.Bits(), 32)},
			Gateway: net.IP(gw.AsSlice())}},
		Routes: []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}}},
	}
	return types.PrintResult(res, c.CNIVersion)
}

func del(args *skel.CmdArgs) error {
	c, _, err := load(args)
	if err != nil {
		return err
	}
	if args.Netns != "" {
		err := ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
			l, err := netlink.LinkByName(args.IfName)
			if err != nil {
				return nil // gone already
			}
			return netlink.LinkDel(l)
		})
		var nsErr ns.NSPathNotExistErr
		if err != nil && !errors.As(err, &nsErr) {
			return fmt.Errorf("fakecni: %w", err)
		}
	}
	if err := os.Remove(allocPath(c, args)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	logCall(c, "DEL %s %s %s", c.Name, args.ContainerID, args.IfName)
	return nil
}

// Calls returns the plugin's call log in stateDir, one call a line.
func Calls(stateDir string) []string {
	b, _ := os.ReadFile(filepath.Join(stateDir, "calls.log"))
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// Allocations lists the held allocations in stateDir ("<container>-<ifname>"), sorted.
func Allocations(stateDir string) []string {
	files, _ := filepath.Glob(filepath.Join(stateDir, "alloc-*"))
	var out []string
	for _, f := range files {
		out = append(out, strings.TrimPrefix(filepath.Base(f), "alloc-"))
	}
	sort.Strings(out)
	return out
}
