package network

// Extra networks (Multus's and CNI-Genie's annotations) on real network
// namespaces: with fakes/fakecni, a real plugin process whose calls and
// allocations the tests read, for the multi-attach and its rollback; with
// Debian's bridge + host-local for two real networks. Root only, as
// root_test.go; addresses in 10.77.0.0/16 on links these tests make.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/podvisor/podvisor/fakes/fakecni"
	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/network/vmenv"
	"github.com/podvisor/podvisor/runtime/podtypes"
)

func TestMain(m *testing.M) {
	fakecni.RunIfPlugin()
	os.Exit(m.Run())
}

// fakeEnv is a conf dir of fakecni networks: podnet (the first, eth0's),
// net-b and net-c, on subnets 10.77.21x.0/24.
type fakeEnv struct {
	n     *Network
	cfg   Config
	state string // the plugin's allocations and call log
}

func newFakeEnv(t *testing.T, failing string) *fakeEnv {
	t.Helper()
	needRoot(t)
	bin, state := t.TempDir(), t.TempDir()
	if err := fakecni.Install(bin); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for i, name := range []string{"podnet", "net-b", "net-c"} {
		files[fmt.Sprintf("%d0-%s.conflist", i+1, name)] = fmt.Sprintf(
			`{"cniVersion":"1.0.0","name":%q,"plugins":[{"type":"fakecni","subnet":"10.77.%d.0/24","stateDir":%q,"failAdd":%v}]}`,
			name, 210+i, state, name == failing)
	}
	e := &fakeEnv{state: state}
	e.cfg = Config{ConfDir: writeFiles(t, files), BinDirs: []string{bin}, NetNSDir: t.TempDir(), CacheDir: t.TempDir()}
	n, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.n = n
	t.Cleanup(func() {
		n.Close()
		entries, _ := os.ReadDir(e.cfg.NetNSDir)
		for _, de := range entries {
			removeNetNS(filepath.Join(e.cfg.NetNSDir, de.Name()))
		}
		unmountDir(e.cfg.NetNSDir)
	})
	return e
}

// checkNothingLeft asserts no allocation, namespace or state is left.
func (e *fakeEnv) checkNothingLeft(t *testing.T, sb *podtypes.Sandbox) {
	t.Helper()
	if a := fakecni.Allocations(e.state); len(a) > 0 {
		t.Errorf("the plugin still holds %v", a)
	}
	if _, err := os.Lstat(e.n.NetNSPath(sb.ID)); !os.IsNotExist(err) {
		t.Errorf("namespace %s still there (%v)", e.n.NetNSPath(sb.ID), err)
	}
	for _, dir := range []string{filepath.Join(e.cfg.CacheDir, "sandboxes"), filepath.Join(e.cfg.CacheDir, "results")} {
		entries, _ := os.ReadDir(dir)
		for _, de := range entries {
			t.Errorf("left in %s: %s", dir, de.Name())
		}
	}
}

func TestExtraNetworksAttachAndDetach(t *testing.T) {
	e := newFakeEnv(t, "")
	ctx := context.Background()
	sb := newSandbox("e1e1e1e1e1e1e1e1e1e1")
	sb.Config.Annotations = map[string]string{AnnotationMultus: "net-b, default/net-c@data0"}
	status, err := e.n.Setup(ctx, sb)
	if err != nil {
		t.Fatal(err)
	}
	sb.Network = status
	id := sb.ID
	if d := cmp.Diff([]string{"ADD podnet " + id + " eth0 10.77.210.2", "ADD net-b " + id + " net1 10.77.211.2", "ADD net-c " + id + " data0 10.77.212.2"}, fakecni.Calls(e.state)); d != "" {
		t.Errorf("plugin calls -want +got:\n%s", d)
	}
	if d := cmp.Diff([]string{"10.77.210.2", "10.77.211.2", "10.77.212.2"}, status.IPs()); d != "" {
		t.Errorf("IPs (primary first) -want +got:\n%s", d)
	}
	var names []string
	for _, ifc := range status.Interfaces {
		names = append(names, ifc.Name)
	}
	if d := cmp.Diff([]string{"eth0", "net1", "data0"}, names); d != "" {
		t.Errorf("interfaces -want +got:\n%s", d)
	}
	// Only eth0's network routes by default; the extra ones have neither a
	// gateway nor the plugin's default route.
	if x := status.Interfaces[1]; len(x.IPs) != 1 || x.IPs[0].Gateway != "" || len(x.Routes) != 0 || x.MTU != 1400 {
		t.Errorf("extra interface %+v: want one address without gateway, no routes, MTU 1400", x)
	}
	checkPlumbed(t, status.NetNS, []string{"eth0", "net1", "data0"})

	// The wrapper gets the three taps with the plugins' MACs, in order.
	_, qenv, err := e.n.NICs(ctx, sb, &podtypes.Container{})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("pv-tap0=%s;pv-tap1=%s;pv-tap2=%s", status.Interfaces[0].MAC, status.Interfaces[1].MAC, status.Interfaces[2].MAC)
	if qenv[vmenv.EnvNICs] != want {
		t.Errorf("%s = %q, want %q", vmenv.EnvNICs, qenv[vmenv.EnvNICs], want)
	}
	if _, err := vmenv.DecodeNICs(qenv[vmenv.EnvNICs]); err != nil {
		t.Errorf("the wrapper would refuse it: %v", err)
	}

	// A DHCP client with net1's MAC on net1's bridge gets net1's address
	// from its own server, with no router.
	if _, err := os.Stat("/bin/busybox"); err == nil {
		got, _ := dhcpClientOn(t, status.NetNS, "pv-br1", status.Interfaces[1].MAC)
		for k, v := range map[string]string{"ip": "10.77.211.2", "serverid": "169.254.75.2", "router": "", "staticroutes": "169.254.75.2/32 0.0.0.0", "dns": "10.96.0.10"} {
			if got[k] != v {
				t.Errorf("DHCP on net1: %s = %q, want %q", k, got[k], v)
			}
		}
	} else {
		t.Error("busybox is needed for the DHCP client (ci/deps-network.txt)")
	}

	// podvisor restarts: a new Network tears down from the record alone,
	// every network, the last added first.
	e.n.Close()
	restarted, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close()
	if err := restarted.Resume(ctx, sb); err != nil {
		t.Fatal(err)
	}
	if err := restarted.Teardown(ctx, sb); err != nil {
		t.Fatal(err)
	}
	calls := fakecni.Calls(e.state)[3:]
	if d := cmp.Diff([]string{"DEL net-c " + id + " data0", "DEL net-b " + id + " net1", "DEL podnet " + id + " eth0"}, calls); d != "" {
		t.Errorf("plugin calls at teardown -want +got:\n%s", d)
	}
	e.checkNothingLeft(t, sb)
	if err := restarted.Teardown(ctx, sb); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
}

// checkPlumbed asserts each CNI interface is on its own bridge with the
// VM's tap, and each bridge has its DHCP server's address only.
func checkPlumbed(t *testing.T, path string, ifnames []string) {
	t.Helper()
	err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		for i, name := range ifnames {
			ls := linksFor(i, name)
			br, err := netlink.LinkByName(ls.bridge)
			if err != nil {
				return err
			}
			for _, port := range []string{ls.pod, ls.tap} {
				l, err := netlink.LinkByName(port)
				if err != nil {
					return err
				}
				if l.Attrs().MasterIndex != br.Attrs().Index {
					t.Errorf("%s is not on %s", port, ls.bridge)
				}
			}
			addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4)
			want := fmt.Sprintf("169.254.75.%d/32", i+1)
			if len(addrs) != 1 || addrs[0].IPNet.String() != want {
				t.Errorf("%s addresses %v, want only %s", ls.bridge, addrs, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// When the third network's ADD fails, Setup runs DEL for it and for the two
// added before it, and leaves no allocation, namespace or state.
func TestExtraNetworkFailureRollsBack(t *testing.T) {
	e := newFakeEnv(t, "net-c")
	sb := newSandbox("e2e2e2e2e2e2e2e2e2e2")
	sb.Config.Annotations = map[string]string{AnnotationMultus: `[{"name":"net-b"},{"name":"net-c","interface":"data0"}]`}
	_, err := e.n.Setup(context.Background(), sb)
	if err == nil || !strings.Contains(err.Error(), `CNI ADD of network "net-c"`) || !strings.Contains(err.Error(), "annotation k8s.v1.cni.cncf.io/networks") ||
		!strings.Contains(err.Error(), "injected ADD failure") {
		t.Fatalf("Setup = %v, want net-c's ADD failure naming the annotation", err)
	}
	id := sb.ID
	want := []string{"ADD podnet " + id + " eth0 10.77.210.2", "ADD net-b " + id + " net1 10.77.211.2", "ADD net-c " + id + " data0 failed",
		"DEL net-c " + id + " data0", "DEL net-b " + id + " net1", "DEL podnet " + id + " eth0"}
	if d := cmp.Diff(want, fakecni.Calls(e.state)); d != "" {
		t.Errorf("plugin calls -want +got:\n%s", d)
	}
	e.checkNothingLeft(t, sb)
	if err := e.n.Teardown(context.Background(), sb); err != nil {
		t.Errorf("Teardown after the failed Setup: %v", err)
	}
}

// A Setup cut short (podvisor killed before the sandbox record had the
// network) is undone from the state file alone, extra networks included.
func TestExtraNetworksTeardownFromStateFile(t *testing.T) {
	e := newFakeEnv(t, "")
	sb := newSandbox("e3e3e3e3e3e3e3e3e3e3")
	sb.Config.Annotations = map[string]string{AnnotationGenie: "net-b,podnet"}
	status, err := e.n.Setup(context.Background(), sb)
	if err != nil {
		t.Fatal(err)
	}
	// CNI-Genie: the first name gives eth0, the next eth1.
	if status.Interfaces[0].IPs[0].CIDR != "10.77.211.2/24" || status.Interfaces[1].Name != "eth1" || status.Interfaces[1].IPs[0].CIDR != "10.77.210.2/24" {
		t.Errorf("Genie status %+v: want eth0 on net-b, eth1 on podnet", status.Interfaces)
	}
	e.n.Close()
	fresh, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Teardown(context.Background(), newSandbox(sb.ID)); err != nil {
		t.Fatal(err)
	}
	if calls := fakecni.Calls(e.state); len(calls) != 4 || calls[2] != "DEL podnet "+sb.ID+" eth1" || calls[3] != "DEL net-b "+sb.ID+" eth0" {
		t.Errorf("calls %q: want the two ADDs, then DEL of eth1 and eth0", calls)
	}
	e.checkNothingLeft(t, sb)
}

// A bad annotation or an unknown network fails before anything is made.
func TestExtraNetworkBadAnnotationMakesNothing(t *testing.T) {
	e := newFakeEnv(t, "")
	for _, ann := range []map[string]string{
		{AnnotationMultus: "net-b,nope"},
		{AnnotationMultus: "net-b@x,net-c@x"},
		{AnnotationGenie: "nope,net-b"},
	} {
		sb := newSandbox("e4e4e4e4e4e4e4e4e4e4")
		sb.Config.Annotations = ann
		_, err := e.n.Setup(context.Background(), sb)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%v: Setup = %v, want InvalidArgument", ann, err)
		}
		if calls := fakecni.Calls(e.state); len(calls) > 0 {
			t.Errorf("%v: the plugin was called: %q", ann, calls)
		}
		e.checkNothingLeft(t, sb)
	}
}

// Two real bridge + host-local networks: the guest's second NIC gets the
// second network's address by DHCP; teardown releases both.
func TestExtraNetworkRealBridge(t *testing.T) {
	needRoot(t, "busybox", "iptables-save")
	e := newEnv(t, envOpt{})
	i := subnetSeq.Add(1)
	subnet2, br2 := fmt.Sprintf("10.77.%d", 100+i), fmt.Sprintf("pvt%d-%d", os.Getpid()%10000, i)
	ipam2 := t.TempDir()
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"second","plugins":[{"type":"bridge","bridge":%q,"isGateway":true,"ipMasq":false,
	  "ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"%s.0/24"}]],"routes":[{"dst":"0.0.0.0/0"},{"dst":"10.99.0.0/16"}]}}]}`, br2, ipam2, subnet2)
	if err := os.WriteFile(filepath.Join(e.cfg.ConfDir, "90-second.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(br2); err == nil {
			netlink.LinkDel(l)
		}
	})
	ctx := context.Background()
	sb := newSandbox("e5e5e5e5e5e5e5e5e5e5")
	sb.Config.Annotations = map[string]string{AnnotationMultus: "second"}
	status, err := e.n.Setup(ctx, sb)
	if err != nil {
		t.Fatal(err)
	}
	sb.Network = status
	ips := status.IPs()
	if len(ips) != 2 || !strings.HasPrefix(ips[0], e.subnet+".") || !strings.HasPrefix(ips[1], subnet2+".") {
		t.Fatalf("IPs %v, want one in %s.0/24, then one in %s.0/24", ips, e.subnet, subnet2)
	}
	x := status.Interfaces[1]
	if d := cmp.Diff([]podtypes.Route{{Dst: "10.99.0.0/16", GW: subnet2 + ".1"}}, x.Routes); d != "" {
		t.Errorf("net1 routes (the default one dropped, the gateway filled in) -want +got:\n%s", d)
	}
	got, clientNS := dhcpClientOn(t, status.NetNS, "pv-br1", x.MAC)
	for k, v := range map[string]string{"ip": ips[1], "router": "", "serverid": "169.254.75.2",
		"staticroutes": "169.254.75.2/32 0.0.0.0 10.99.0.0/16 " + subnet2 + ".1"} {
		if got[k] != v {
			t.Errorf("DHCP on net1: %s = %q, want %q", k, got[k], v)
		}
	}
	// The pod's namespace reaches the guest's second address too.
	dialFromPodNS(t, status.NetNS, clientNS, ips[1])
	eth0, _ := dhcpClient(t, status.NetNS, status.Interfaces[0].MAC)
	if eth0["ip"] != ips[0] || eth0["router"] != e.subnet+".1" {
		t.Errorf("DHCP on eth0: ip %q router %q, want %s via %s.1", eth0["ip"], eth0["router"], ips[0], e.subnet)
	}
	if err := e.n.Teardown(ctx, sb); err != nil {
		t.Fatal(err)
	}
	e.checkGone(t, sb.ID, status.NetNS, ips[0])
	if _, err := os.Stat(filepath.Join(ipam2, "second", ips[1])); !os.IsNotExist(err) {
		t.Errorf("host-local still holds %s of the second network (%v)", ips[1], err)
	}
}
