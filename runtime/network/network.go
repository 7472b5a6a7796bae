// Package network gives each pod a network namespace set up by CNI and
// joins the VM to it: the pod's eth0 and a tap for the VM are bridged inside
// the namespace, eth0's address goes to the guest by DHCP (served by
// podvisor inside the namespace), and an emulator wrapper
// (cmd/podvisor-vmwrapper) starts QEMU inside the namespace with that tap.
// See docs/networking.md.
package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	cnitypes "github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/network/vmenv"
	"github.com/podvisor/podvisor/runtime/podtypes"
)

// stateVersion is the version of the state format below.
const stateVersion = 1

// state is what Teardown and Resume need, kept in NetworkStatus.Opaque
// and in a file under CacheDir (written before anything is made, so a
// Setup cut short by a crash can still be undone).
type state struct {
	Version   int    `json:"version"`
	SandboxID string `json:"sandboxID"`
	NetNS     string `json:"netns"`
	// ConfList is the CNI network configuration ADD used; DEL uses it too,
	// even if the configuration directory changed since.
	ConfList json.RawMessage `json:"confList"`
	// Result is the CNI result of ADD (current CNI version).
	Result json.RawMessage `json:"result,omitempty"`
	// Moved records what was taken from eth0 for the VM.
	Moved *moved `json:"moved,omitempty"`
	// Extra are the networks beyond eth0 that the pod's annotations
	// named, in order; each is recorded before its CNI ADD. Records
	// written before podvisor had extra networks have none.
	Extra []*extraState `json:"extra,omitempty"`
}

// Network implements pod.Network (with its optional NetworkCollector and
// NetworkResumer) and vmbuild.NICProvider.
type Network struct {
	cfg Config
	cni *libcni.CNIConfig

	mu   sync.Mutex
	dhcp map[string][]*dhcpServer // by sandbox ID, one per NIC
}

// New returns a Network. It does not require a CNI configuration to exist
// yet (Ready reports that); it creates CacheDir.
func New(cfg Config) (*Network, error) {
	cfg.setDefaults()
	if err := os.MkdirAll(filepath.Join(cfg.CacheDir, "sandboxes"), 0o700); err != nil {
		return nil, fmt.Errorf("creating the network cache directory %s: %w", cfg.CacheDir, err)
	}
	return &Network{
		cfg:  cfg,
		cni:  libcni.NewCNIConfigWithCacheDir(cfg.BinDirs, cfg.CacheDir, nil),
		dhcp: map[string][]*dhcpServer{},
	}, nil
}

// Ready reports whether pods can get a network: a valid CNI configuration
// exists and its plugins are installed. It backs the CRI NetworkReady
// condition.
func (n *Network) Ready(ctx context.Context) error {
	list, file, err := loadConfList(n.cfg.ConfDir)
	if err != nil {
		return err
	}
	for _, p := range list.Plugins {
		if _, err := invoke.FindInPath(p.Network.Type, n.cfg.BinDirs); err != nil {
			return fmt.Errorf("CNI network %q (%s): plugin %q not found in %s", list.Name, file, p.Network.Type, strings.Join(n.cfg.BinDirs, ", "))
		}
	}
	return nil
}

// NetNSPath is where the network namespace of sandbox id is mounted.
func (n *Network) NetNSPath(sandboxID string) string {
	return filepath.Join(n.cfg.NetNSDir, netnsName(sandboxID))
}

func (n *Network) statePath(sandboxID string) string {
	return filepath.Join(n.cfg.CacheDir, "sandboxes", sandboxID+".json")
}

func (n *Network) writeState(st *state) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding the network state of sandbox %s: %w", st.SandboxID, err)
	}
	p := n.statePath(st.SandboxID)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("writing the network state of sandbox %s: %w", st.SandboxID, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("writing the network state of sandbox %s: %w", st.SandboxID, err)
	}
	return nil
}

func (n *Network) readState(sandboxID string) (*state, error) {
	data, err := os.ReadFile(n.statePath(sandboxID))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the network state of sandbox %s: %w", sandboxID, err)
	}
	return decodeState(data, n.statePath(sandboxID))
}

func decodeState(data []byte, where string) (*state, error) {
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("decoding the network state in %s: %w", where, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("network state in %s has version %d; this podvisor reads version %d", where, st.Version, stateVersion)
	}
	return &st, nil
}

// stateOf returns the network state of sb: from its record, else from the
// state file; nil when neither exists (Setup never started CNI for it).
func (n *Network) stateOf(sb *podtypes.Sandbox) (*state, error) {
	if sb.Network != nil && len(sb.Network.Opaque) > 0 {
		return decodeState(sb.Network.Opaque, "the record of sandbox "+sb.ID)
	}
	return n.readState(sb.ID)
}

// runtimeConfFor is the CNI runtime configuration of interface ifname.
func runtimeConfFor(sb *podtypes.Sandbox, netnsPath, ifname string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: sb.ID,
		NetNS:       netnsPath,
		IfName:      ifname,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", sb.Config.Namespace},
			{"K8S_POD_NAME", sb.Config.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", sb.ID},
			{"K8S_POD_UID", sb.Config.UID},
		},
	}
}

// runtimeConf is the CNI runtime configuration of eth0's network.
func runtimeConf(sb *podtypes.Sandbox, netnsPath string) *libcni.RuntimeConf {
	rt := runtimeConfFor(sb, netnsPath, podIfName)
	var pms []map[string]any
	for _, pm := range sb.Config.PortMappings {
		if pm.HostPort <= 0 {
			continue // not published on the node
		}
		proto := strings.ToLower(pm.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		m := map[string]any{"hostPort": pm.HostPort, "containerPort": pm.ContainerPort, "protocol": proto}
		if pm.HostIP != "" {
			m["hostIP"] = pm.HostIP
		}
		pms = append(pms, m)
	}
	if len(pms) > 0 {
		rt.CapabilityArgs = map[string]any{"portMappings": pms}
	}
	return rt
}

// Setup creates the pod's network namespace, runs CNI ADD in it for eth0's
// network and for every network the pod's annotations add, bridges each
// CNI interface to a tap for the VM and starts the DHCP servers that give
// the guest the addresses. On error it undoes what it did.
func (n *Network) Setup(ctx context.Context, sb *podtypes.Sandbox) (_ *podtypes.NetworkStatus, err error) {
	plan, err := n.planNetworks(sb)
	if err != nil {
		return nil, err
	}
	path := n.NetNSPath(sb.ID)
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("network namespace %s exists already (another sandbox whose ID starts like %s?)", path, sb.ID)
	}
	st := &state{Version: stateVersion, SandboxID: sb.ID, NetNS: path, ConfList: plan.primary.list.Bytes}
	if err := n.writeState(st); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if terr := n.teardown(context.WithoutCancel(ctx), sb, st); terr != nil {
				n.cfg.Logger.Error("undoing a failed network setup; Teardown will retry", "pod", sb.ID, "err", terr)
			}
		}
	}()
	if err := createNetNS(path); err != nil {
		return nil, err
	}
	if err := n.addPrimary(ctx, sb, st, plan.primary); err != nil {
		return nil, err
	}
	for i, x := range plan.extra {
		if err := n.addExtra(ctx, sb, st, i+1, x, plan.annotation); err != nil {
			return nil, err
		}
	}
	status, leases, err := statusOfAll(sb, st)
	if err != nil {
		return nil, err
	}
	if err := n.startDHCP(sb.ID, path, leases); err != nil {
		return nil, err
	}
	if status.Opaque, err = json.Marshal(st); err != nil {
		return nil, fmt.Errorf("encoding the network state: %w", err)
	}
	n.cfg.Logger.Info("pod network ready", "pod", sb.ID, "netns", path, "network", plan.primary.list.Name,
		"ip", leases[0].IP.String(), "vmMAC", leases[0].MAC.String(), "extraNetworks", len(st.Extra), "ips", status.IPs())
	return status, nil
}

// addPrimary runs CNI ADD for eth0 and joins it to the VM's first tap.
func (n *Network) addPrimary(ctx context.Context, sb *podtypes.Sandbox, st *state, p plannedNet) error {
	res, err := n.cni.AddNetworkList(ctx, p.list, runtimeConf(sb, st.NetNS))
	if err != nil {
		return fmt.Errorf("CNI ADD of network %q (%s): %w", p.list.Name, p.file, err)
	}
	if st.Result, err = encodeResult(p.list.Name, res); err != nil {
		return err
	}
	n.warnOtherInterfaces(sb, p.list.Name, st.Result, podIfName)
	st.Moved = &moved{}
	perr := plumb(st.NetNS, linksFor(0, podIfName), st.Moved)
	if err := n.writeState(st); err != nil {
		return err
	}
	if perr != nil {
		return fmt.Errorf("joining the pod interface to the VM's tap: %w", perr)
	}
	return nil
}

// otherPodInterfaces names the interfaces a CNI result puts in the pod's
// namespace besides ifname, sorted. A plugin that makes several (CNI-Genie
// merging its networks, Multus as the default network, a plugin adding
// SR-IOV devices) gets the VM a NIC for ifname only.
func otherPodInterfaces(raw json.RawMessage, ifname string) []string {
	var res types100.Result
	if json.Unmarshal(raw, &res) != nil {
		return nil
	}
	var out []string
	for _, ifc := range res.Interfaces {
		if ifc.Sandbox != "" && ifc.Name != ifname && ifc.Name != "lo" {
			out = append(out, ifc.Name)
		}
	}
	sort.Strings(out)
	return out
}

// warnOtherInterfaces says which interfaces of a CNI result the VM does
// not get, rather than leaving them unused without a word.
func (n *Network) warnOtherInterfaces(sb *podtypes.Sandbox, network string, raw json.RawMessage, ifname string) {
	if others := otherPodInterfaces(raw, ifname); len(others) > 0 {
		n.cfg.Logger.Warn("CNI network made interfaces besides the pod's in its namespace: the VM gets a NIC for "+ifname+" only; "+
			"name each further network in the k8s.v1.cni.cncf.io/networks or cni annotation (one CNI ADD and one NIC each, see docs/networking.md)",
			"pod", sb.ID, "network", network, "interface", ifname, "unused", others)
	}
}

func encodeResult(network string, res cnitypes.Result) (json.RawMessage, error) {
	cur, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("converting the result of CNI network %q: %w", network, err)
	}
	data, err := json.Marshal(cur)
	if err != nil {
		return nil, fmt.Errorf("encoding the result of CNI network %q: %w", network, err)
	}
	return data, nil
}

func (n *Network) startDHCP(sandboxID, netnsPath string, leases []*lease) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.dhcp[sandboxID]; ok {
		return nil
	}
	var srvs []*dhcpServer
	for i, l := range leases {
		ls := linksFor(i, "")
		srv, err := startDHCP(netnsPath, ls.bridge, l, n.cfg.Logger.With("pod", sandboxID, "bridge", ls.bridge))
		if err != nil {
			for _, s := range srvs {
				s.stop()
			}
			return err
		}
		srvs = append(srvs, srv)
	}
	n.dhcp[sandboxID] = srvs
	return nil
}

func (n *Network) stopDHCP(sandboxID string) {
	n.mu.Lock()
	srvs := n.dhcp[sandboxID]
	delete(n.dhcp, sandboxID)
	n.mu.Unlock()
	for _, srv := range srvs {
		srv.stop()
	}
}

// statusOfAll is the pod's network status and the leases of the VM's
// NICs (eth0's first) from a complete state.
func statusOfAll(sb *podtypes.Sandbox, st *state) (*podtypes.NetworkStatus, []*lease, error) {
	if st.Moved == nil || len(st.Result) == 0 {
		return nil, nil, fmt.Errorf("the network state is incomplete (no CNI result or VM MAC)")
	}
	var res types100.Result
	if err := json.Unmarshal(st.Result, &res); err != nil {
		return nil, nil, fmt.Errorf("decoding the cached CNI result: %w", err)
	}
	status, l, err := statusOf(sb, st, &res)
	if err != nil {
		return nil, nil, err
	}
	leases := []*lease{l}
	for i, x := range st.Extra {
		ifc, xl, err := x.status(i+1, l)
		if err != nil {
			return nil, nil, err
		}
		status.Interfaces = append(status.Interfaces, ifc)
		leases = append(leases, xl)
	}
	return status, leases, nil
}

// statusOf converts the CNI result into the pod's network status and the
// lease the guest gets.
func statusOf(sb *podtypes.Sandbox, st *state, res *types100.Result) (*podtypes.NetworkStatus, *lease, error) {
	mac, err := net.ParseMAC(st.Moved.MAC)
	if err != nil {
		return nil, nil, fmt.Errorf("the MAC %q of %s: %w", st.Moved.MAC, podIfName, err)
	}
	// The pod's interface in the result: the one in the sandbox named eth0.
	idx := -1
	for i, ifc := range res.Interfaces {
		if ifc.Name == podIfName && ifc.Sandbox != "" {
			idx = i
		}
	}
	ifc := podtypes.Interface{Name: podIfName, MAC: mac.String(), MTU: st.Moved.MTU}
	l := &lease{MAC: mac, MTU: st.Moved.MTU, ServerIP: serverIP, Hostname: sb.Config.Hostname}
	if l.Hostname == "" {
		l.Hostname = sb.Config.Name
	}
	for _, ip := range res.IPs {
		if ip.Interface != nil && idx >= 0 && *ip.Interface != idx {
			continue
		}
		c := podtypes.IPConfig{CIDR: ip.Address.String()}
		if ip.Gateway != nil {
			c.Gateway = ip.Gateway.String()
		}
		ifc.IPs = append(ifc.IPs, c)
		if v4 := ip.Address.IP.To4(); v4 != nil && l.IP == nil {
			l.IP, l.Mask, l.Gateway = v4, net.IPMask(ip.Address.Mask), ip.Gateway.To4()
			if len(l.Mask) == 16 {
				l.Mask = l.Mask[12:]
			}
		}
	}
	if l.IP == nil {
		return nil, nil, fmt.Errorf("the CNI result has no IPv4 address for %s; podvisor gives the VM its address by DHCPv4 and needs one", podIfName)
	}
	for _, r := range res.Routes {
		pr := podtypes.Route{Dst: r.Dst.String()}
		if r.GW != nil {
			pr.GW = r.GW.String()
		}
		ifc.Routes = append(ifc.Routes, pr)
		if r.Dst.IP.To4() == nil {
			continue
		}
		gw := r.GW.To4()
		if gw == nil {
			gw = l.Gateway
		}
		if ones, _ := r.Dst.Mask.Size(); ones == 0 {
			if l.Gateway == nil {
				l.Gateway = gw
			}
			continue
		}
		if gw == nil {
			continue
		}
		dst := r.Dst
		l.Routes = append(l.Routes, &dhcpv4.Route{Dest: &dst, Router: gw})
	}
	dns := sb.Config.DNS
	servers, searches := dns.Servers, dns.Searches
	if len(servers) == 0 {
		servers, searches = res.DNS.Nameservers, res.DNS.Search
	}
	for _, s := range servers {
		if ip := net.ParseIP(s).To4(); ip != nil {
			l.DNS = append(l.DNS, ip)
		}
	}
	l.Search = searches
	return &podtypes.NetworkStatus{NetNS: st.NetNS, Interfaces: []podtypes.Interface{ifc}}, l, nil
}

// NICs implements vmbuild.NICProvider: the VM's NICs are not libvirt
// interfaces but the taps in the pod's namespace, which the emulator
// wrapper hands to QEMU; so it returns no interfaces and the wrapper's
// environment: eth0's tap first, then one per extra network.
func (n *Network) NICs(ctx context.Context, sb *podtypes.Sandbox, c *podtypes.Container) ([]libvirtxml.DomainInterface, map[string]string, error) {
	if sb.Network == nil || len(sb.Network.Opaque) == 0 {
		return nil, nil, fmt.Errorf("sandbox %s has no pod network set up by podvisor's CNI network", sb.ID)
	}
	st, err := decodeState(sb.Network.Opaque, "the record of sandbox "+sb.ID)
	if err != nil {
		return nil, nil, err
	}
	recs := []*moved{st.Moved}
	for _, x := range st.Extra {
		recs = append(recs, x.Moved)
	}
	var nics []vmenv.NIC
	for i, rec := range recs {
		if rec == nil || rec.MAC == "" {
			return nil, nil, fmt.Errorf("sandbox %s: the network state has no VM MAC for NIC %d", sb.ID, i)
		}
		mac, err := net.ParseMAC(rec.MAC)
		if err != nil {
			return nil, nil, fmt.Errorf("sandbox %s: VM MAC %q of NIC %d: %w", sb.ID, rec.MAC, i, err)
		}
		nics = append(nics, vmenv.NIC{Tap: linksFor(i, "").tap, MAC: mac})
	}
	env := map[string]string{
		vmenv.EnvNetNS: st.NetNS,
		vmenv.EnvNICs:  vmenv.EncodeNICs(nics),
	}
	return nil, env, nil
}

// Resume restarts the DHCP servers of a ready sandbox after podvisor
// restarted (the namespace, bridges and taps outlive podvisor; the servers
// do not). It fails when the namespace or its links are gone. Calling it
// for a sandbox whose servers run is harmless.
func (n *Network) Resume(ctx context.Context, sb *podtypes.Sandbox) error {
	if sb.Network == nil || len(sb.Network.Opaque) == 0 {
		return fmt.Errorf("sandbox %s has no pod network to resume", sb.ID)
	}
	st, err := decodeState(sb.Network.Opaque, "the record of sandbox "+sb.ID)
	if err != nil {
		return err
	}
	if !netnsExists(st.NetNS) {
		return fmt.Errorf("sandbox %s: network namespace %s is gone", sb.ID, st.NetNS)
	}
	_, leases, err := statusOfAll(sb, st)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", sb.ID, err)
	}
	for i := range leases {
		if err := bridgeReady(st.NetNS, linksFor(i, "")); err != nil {
			return fmt.Errorf("sandbox %s: in network namespace %s: %w", sb.ID, st.NetNS, err)
		}
	}
	return n.startDHCP(sb.ID, st.NetNS, leases)
}

// Teardown stops the DHCP server, gives eth0 back its address and MAC,
// runs CNI DEL and removes the namespace. It works from the sandbox record
// or, when Setup did not finish, from the state file; with neither there
// is nothing to do. Repeated calls succeed.
func (n *Network) Teardown(ctx context.Context, sb *podtypes.Sandbox) error {
	st, err := n.stateOf(sb)
	if err != nil {
		return err
	}
	return n.teardown(ctx, sb, st)
}

func (n *Network) teardown(ctx context.Context, sb *podtypes.Sandbox, st *state) error {
	n.stopDHCP(sb.ID)
	path := n.NetNSPath(sb.ID)
	if st != nil && st.NetNS != "" {
		path = st.NetNS
	}
	exists := netnsExists(path)
	nsArg := path
	if !exists {
		nsArg = "" // gone (e.g. a reboot): plugins release what they hold outside it
	}
	// Extra networks first, last added first; every one is tried, so one
	// failing DEL does not keep the others' addresses.
	var errs []error
	if st != nil {
		for i := len(st.Extra) - 1; i >= 0; i-- {
			x := st.Extra[i]
			ls := linksFor(i+1, x.IfName)
			if err := n.delOne(ctx, sb, path, exists, ls, x.Moved, x.ConfList, x.runtimeConf(sb, nsArg)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	var rec *moved
	var conf json.RawMessage
	if st != nil {
		rec, conf = st.Moved, st.ConfList
	}
	if err := n.delOne(ctx, sb, path, exists, linksFor(0, podIfName), rec, conf, runtimeConf(sb, nsArg)); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := removeNetNS(path); err != nil {
		return err
	}
	if err := os.Remove(n.statePath(sb.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the network state of sandbox %s: %w", sb.ID, err)
	}
	return nil
}

// delOne gives one CNI interface back what plumb took (so DEL finds it as
// ADD left it) and runs CNI DEL with the saved configuration; with no
// configuration (ADD never started) there is nothing to delete.
func (n *Network) delOne(ctx context.Context, sb *podtypes.Sandbox, path string, exists bool, ls linkSet, rec *moved, conf json.RawMessage, rt *libcni.RuntimeConf) error {
	if exists {
		if err := restore(path, ls, rec); err != nil {
			return fmt.Errorf("restoring %s in %s before CNI DEL: %w", ls.pod, path, err)
		}
	}
	if len(conf) == 0 {
		return nil
	}
	list, err := libcni.ConfListFromBytes(conf)
	if err != nil {
		return fmt.Errorf("reading the CNI configuration saved for sandbox %s (%s): %w", sb.ID, ls.pod, err)
	}
	if err := n.cni.DelNetworkList(ctx, list, rt); err != nil {
		return fmt.Errorf("CNI DEL of network %q (%s) for sandbox %s: %w", list.Name, ls.pod, sb.ID, err)
	}
	return nil
}

// CollectOrphans tears down every pod network podvisor made for a sandbox
// not in keep (the IDs of all sandbox records) and says which it tore down.
// Call it at start-up, after the store is loaded and before serving.
func (n *Network) CollectOrphans(ctx context.Context, keep map[string]bool) ([]string, error) {
	var errs []error
	entries, err := os.ReadDir(filepath.Join(n.cfg.CacheDir, "sandboxes"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("listing network states: %w", err)
	}
	var removed []string
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || keep[id] {
			continue
		}
		st, err := n.readState(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := n.teardown(ctx, &podtypes.Sandbox{ID: id}, st); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, fmt.Sprintf("network of sandbox %s (namespace %s)", id, st.NetNS))
	}
	// Namespaces are only ever made after their state file is written, so
	// the states above are all of ours. Other namespaces in NetNSDir, even
	// named like ours, belong to someone else (another podvisor, a test)
	// and are not touched.
	return removed, errors.Join(errs...)
}

// Close stops every DHCP server (podvisor is stopping; the namespaces and
// the VMs stay, and Resume brings the servers back).
func (n *Network) Close() error {
	n.mu.Lock()
	ids := make([]string, 0, len(n.dhcp))
	for id := range n.dhcp {
		ids = append(ids, id)
	}
	n.mu.Unlock()
	for _, id := range ids {
		n.stopDHCP(id)
	}
	return nil
}
