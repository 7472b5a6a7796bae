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
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
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
}

// Network implements pod.Network (with its optional NetworkCollector and
// NetworkResumer) and vmbuild.NICProvider.
type Network struct {
	cfg Config
	cni *libcni.CNIConfig

	mu   sync.Mutex
	dhcp map[string]*dhcpServer // by sandbox ID
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
		dhcp: map[string]*dhcpServer{},
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

func runtimeConf(sb *podtypes.Sandbox, netnsPath string) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: sb.ID,
		NetNS:       netnsPath,
		IfName:      podIfName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", sb.Config.Namespace},
			{"K8S_POD_NAME", sb.Config.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", sb.ID},
			{"K8S_POD_UID", sb.Config.UID},
		},
	}
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

// Setup creates the pod's network namespace, runs CNI ADD in it, bridges
// eth0 to the VM's tap and starts the DHCP server that gives the guest the
// pod's address. On error it undoes what it did.
func (n *Network) Setup(ctx context.Context, sb *podtypes.Sandbox) (_ *podtypes.NetworkStatus, err error) {
	list, confFile, err := loadConfList(n.cfg.ConfDir)
	if err != nil {
		return nil, err
	}
	path := n.NetNSPath(sb.ID)
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("network namespace %s exists already (another sandbox whose ID starts like %s?)", path, sb.ID)
	}
	st := &state{Version: stateVersion, SandboxID: sb.ID, NetNS: path, ConfList: list.Bytes}
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
	res, err := n.cni.AddNetworkList(ctx, list, runtimeConf(sb, path))
	if err != nil {
		return nil, fmt.Errorf("CNI ADD of network %q (%s): %w", list.Name, confFile, err)
	}
	cur, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("converting the result of CNI network %q: %w", list.Name, err)
	}
	if st.Result, err = json.Marshal(cur); err != nil {
		return nil, fmt.Errorf("encoding the CNI result: %w", err)
	}
	st.Moved = &moved{}
	perr := plumb(path, st.Moved)
	if err := n.writeState(st); err != nil {
		return nil, err
	}
	if perr != nil {
		return nil, fmt.Errorf("joining the pod interface to the VM's tap: %w", perr)
	}
	status, l, err := statusOf(sb, st, cur)
	if err != nil {
		return nil, err
	}
	if err := n.startDHCP(sb.ID, path, l); err != nil {
		return nil, err
	}
	if status.Opaque, err = json.Marshal(st); err != nil {
		return nil, fmt.Errorf("encoding the network state: %w", err)
	}
	n.cfg.Logger.Info("pod network ready", "pod", sb.ID, "netns", path, "network", list.Name, "ip", l.IP.String(), "vmMAC", l.MAC.String())
	return status, nil
}

func (n *Network) startDHCP(sandboxID, netnsPath string, l *lease) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.dhcp[sandboxID]; ok {
		return nil
	}
	srv, err := startDHCP(netnsPath, bridgeName, l, n.cfg.Logger.With("pod", sandboxID))
	if err != nil {
		return err
	}
	n.dhcp[sandboxID] = srv
	return nil
}

func (n *Network) stopDHCP(sandboxID string) {
	n.mu.Lock()
	srv := n.dhcp[sandboxID]
	delete(n.dhcp, sandboxID)
	n.mu.Unlock()
	if srv != nil {
		srv.stop()
	}
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

// NICs implements vmbuild.NICProvider: the VM's NIC is not a libvirt
// interface but the tap in the pod's namespace, which the emulator wrapper
// hands to QEMU; so it returns no interfaces and the wrapper's environment.
func (n *Network) NICs(ctx context.Context, sb *podtypes.Sandbox, c *podtypes.Container) ([]libvirtxml.DomainInterface, map[string]string, error) {
	if sb.Network == nil || len(sb.Network.Opaque) == 0 {
		return nil, nil, fmt.Errorf("sandbox %s has no pod network set up by podvisor's CNI network", sb.ID)
	}
	st, err := decodeState(sb.Network.Opaque, "the record of sandbox "+sb.ID)
	if err != nil {
		return nil, nil, err
	}
	if st.Moved == nil || st.Moved.MAC == "" {
		return nil, nil, fmt.Errorf("sandbox %s: the network state has no VM MAC", sb.ID)
	}
	mac, err := net.ParseMAC(st.Moved.MAC)
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox %s: VM MAC %q: %w", sb.ID, st.Moved.MAC, err)
	}
	env := map[string]string{
		vmenv.EnvNetNS: st.NetNS,
		vmenv.EnvNICs:  vmenv.EncodeNICs([]vmenv.NIC{{Tap: tapName, MAC: mac}}),
	}
	return nil, env, nil
}

// Resume restarts the DHCP server of a ready sandbox after podvisor
// restarted (the namespace, bridge and tap outlive podvisor; the server
// does not). It fails when the namespace or its links are gone. Calling it
// for a sandbox whose server runs is harmless.
func (n *Network) Resume(ctx context.Context, sb *podtypes.Sandbox) error {
	if sb.Network == nil || len(sb.Network.Opaque) == 0 {
		return fmt.Errorf("sandbox %s has no pod network to resume", sb.ID)
	}
	st, err := decodeState(sb.Network.Opaque, "the record of sandbox "+sb.ID)
	if err != nil {
		return err
	}
	if st.Moved == nil || len(st.Result) == 0 {
		return fmt.Errorf("sandbox %s: the network state is incomplete (no CNI result or VM MAC)", sb.ID)
	}
	if !netnsExists(st.NetNS) {
		return fmt.Errorf("sandbox %s: network namespace %s is gone", sb.ID, st.NetNS)
	}
	if err := bridgeReady(st.NetNS); err != nil {
		return fmt.Errorf("sandbox %s: in network namespace %s: %w", sb.ID, st.NetNS, err)
	}
	var res types100.Result
	if err := json.Unmarshal(st.Result, &res); err != nil {
		return fmt.Errorf("sandbox %s: decoding the cached CNI result: %w", sb.ID, err)
	}
	_, l, err := statusOf(sb, st, &res)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", sb.ID, err)
	}
	return n.startDHCP(sb.ID, st.NetNS, l)
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
	if exists {
		var rec *moved
		if st != nil {
			rec = st.Moved
		}
		if err := restore(path, rec); err != nil {
			return fmt.Errorf("restoring %s in %s before CNI DEL: %w", podIfName, path, err)
		}
	}
	if st != nil {
		list, err := libcni.ConfListFromBytes(st.ConfList)
		if err != nil {
			return fmt.Errorf("reading the CNI configuration saved for sandbox %s: %w", sb.ID, err)
		}
		nsArg := path
		if !exists {
			nsArg = "" // gone (e.g. a reboot): plugins release what they hold outside it
		}
		if err := n.cni.DelNetworkList(ctx, list, runtimeConf(sb, nsArg)); err != nil {
			return fmt.Errorf("CNI DEL of network %q for sandbox %s: %w", list.Name, sb.ID, err)
		}
	}
	if err := removeNetNS(path); err != nil {
		return err
	}
	if err := os.Remove(n.statePath(sb.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the network state of sandbox %s: %w", sb.ID, err)
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
