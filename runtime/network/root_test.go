package network

// Tests on real network namespaces with the real CNI plugins bridge and
// host-local (Debian's containernetworking-plugins). They need root; they
// skip only when PODVISOR_ALLOW_SKIP=1. Every address is in 10.77.0.0/16 on
// links these tests make; no traffic leaves namespaces they create.

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podvisor/podvisor/runtime/network/vmenv"
	"github.com/podvisor/podvisor/runtime/podtypes"
)

const pluginDir = "/usr/lib/cni"

func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, p := range []string{"bridge", "host-local"} {
		if _, err := os.Stat(filepath.Join(pluginDir, p)); err != nil {
			missing = append(missing, "CNI plugin "+filepath.Join(pluginDir, p)+" (Debian containernetworking-plugins)")
		}
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "needs " + strings.Join(missing, ", ") + " (see ci/deps-network.txt)"
	if os.Getenv("PODVISOR_ALLOW_SKIP") == "1" {
		t.Skip(msg)
	}
	t.Fatal(msg)
}

var subnetSeq, vethSeq atomic.Int32

// env is a test CNI setup: a conf dir with a bridge + host-local network on
// a private subnet, and a Network using it.
type env struct {
	n        *Network
	cfg      Config
	subnet   string // e.g. 10.77.3
	hostBr   string
	ipamDir  string
	confName string
}

type envOpt struct {
	ipMasq      bool
	extraPlugin string // a plugin config appended to the list
	binDir      string // searched before pluginDir
}

func newEnv(t *testing.T, o envOpt) *env {
	t.Helper()
	i := subnetSeq.Add(1)
	e := &env{
		subnet:   fmt.Sprintf("10.77.%d", 100+i),
		hostBr:   fmt.Sprintf("pvt%d-%d", os.Getpid()%10000, i),
		ipamDir:  t.TempDir(),
		confName: fmt.Sprintf("podvisor-test-%d", i),
	}
	plugins := fmt.Sprintf(`{"type":"bridge","bridge":%q,"isGateway":true,"ipMasq":%v,
	  "ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"%s.0/24"}]],"routes":[{"dst":"0.0.0.0/0"}]}}`,
		e.hostBr, o.ipMasq, e.ipamDir, e.subnet)
	if o.extraPlugin != "" {
		plugins += "," + o.extraPlugin
	}
	confDir := writeFiles(t, map[string]string{"10-test.conflist": fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[%s]}`, e.confName, plugins)})
	bins := []string{pluginDir}
	if o.binDir != "" {
		bins = []string{o.binDir, pluginDir}
	}
	e.cfg = Config{ConfDir: confDir, BinDirs: bins, NetNSDir: t.TempDir(), CacheDir: t.TempDir()}
	n, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.n = n
	t.Cleanup(func() {
		n.Close()
		// Whatever a failed test left: namespaces (mounts) and the host bridge.
		entries, _ := os.ReadDir(e.cfg.NetNSDir)
		for _, de := range entries {
			removeNetNS(filepath.Join(e.cfg.NetNSDir, de.Name()))
		}
		unmountDir(e.cfg.NetNSDir)
		if l, err := netlink.LinkByName(e.hostBr); err == nil {
			netlink.LinkDel(l)
		}
	})
	return e
}

func newSandbox(id string) *podtypes.Sandbox {
	sb := testSandbox()
	sb.ID = id
	sb.Config.PortMappings = nil
	return sb
}

func TestSetupDHCPTeardown(t *testing.T) {
	needRoot(t, "busybox", "iptables-save")
	e := newEnv(t, envOpt{})
	ctx := context.Background()
	sb := newSandbox("a1b2c3d4e5f6a7b8c9d0")
	status, err := e.n.Setup(ctx, sb)
	if err != nil {
		t.Fatal(err)
	}
	sb.Network = status
	sb.State = podtypes.SandboxReady

	path := filepath.Join(e.cfg.NetNSDir, "podvisor-a1b2c3d4e5f6")
	if status.NetNS != path || !netnsExists(path) {
		t.Fatalf("status.NetNS = %q, want the mounted namespace %s", status.NetNS, path)
	}
	ips := status.IPs()
	if len(ips) != 1 || !strings.HasPrefix(ips[0], e.subnet+".") {
		t.Fatalf("pod IPs %v, want one in %s.0/24", ips, e.subnet)
	}
	ifc := status.Interfaces[0]
	if ifc.IPs[0].Gateway != e.subnet+".1" || ifc.MTU != 1500 {
		t.Errorf("interface %+v: want gateway %s.1, MTU 1500", ifc, e.subnet)
	}

	// Inside: eth0 has no IPv4 address and a MAC other than the VM's;
	// eth0 and the tap are ports of the bridge, which has only the DHCP
	// server's address.
	err = ns.WithNetNSPath(path, func(ns.NetNS) error {
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if addrs, _ := netlink.AddrList(eth, netlink.FAMILY_V4); len(addrs) != 0 {
			t.Errorf("eth0 still has %v", addrs)
		}
		if eth.Attrs().HardwareAddr.String() == ifc.MAC {
			t.Errorf("eth0 kept the VM's MAC %s", ifc.MAC)
		}
		br, err := netlink.LinkByName(bridgeName)
		if err != nil {
			return err
		}
		tap, err := netlink.LinkByName(tapName)
		if err != nil {
			return err
		}
		if eth.Attrs().MasterIndex != br.Attrs().Index || tap.Attrs().MasterIndex != br.Attrs().Index {
			t.Errorf("eth0 master %d, tap master %d, want the bridge %d", eth.Attrs().MasterIndex, tap.Attrs().MasterIndex, br.Attrs().Index)
		}
		if tt, ok := tap.(*netlink.Tuntap); !ok || tt.Mode != netlink.TUNTAP_MODE_TAP {
			t.Errorf("%s is %T %+v, want a tap", tapName, tap, tap)
		}
		addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "169.254.75.1/32" {
			t.Errorf("bridge addresses %v, want only 169.254.75.1/32", addrs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// NICs gives the wrapper the namespace and the tap with the VM's MAC.
	_, qenv, err := e.n.NICs(ctx, sb, &podtypes.Container{})
	if err != nil {
		t.Fatal(err)
	}
	if qenv[vmenv.EnvNetNS] != path || qenv[vmenv.EnvNICs] != tapName+"="+ifc.MAC {
		t.Errorf("NICs env %v", qenv)
	}

	// A DHCP client with the VM's MAC, on a port of the bridge, gets the
	// pod's address, gateway, DNS, search, MTU and hostname.
	got, clientNS := dhcpClient(t, path, ifc.MAC)
	want := map[string]string{
		"staticroutes": "169.254.75.1/32 0.0.0.0 0.0.0.0/0 " + e.subnet + ".1",
		"ip":           ips[0], "subnet": "255.255.255.0", "router": e.subnet + ".1", "dns": "10.96.0.10",
		"domain": "default.svc.cluster.local", "search": "default.svc.cluster.local", "mtu": "1500",
		"hostname": "vm-host", "serverid": "169.254.75.1", "broadcast": e.subnet + ".255",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("DHCP %s = %q, want %q", k, got[k], v)
		}
	}

	// The pod's namespace reaches the guest at the pod IP (port-forward).
	dialFromPodNS(t, path, clientNS, ips[0])

	// A client with another MAC gets nothing.
	if out, _, err := runDHCPClient(t, path, "0a:00:00:00:00:01", 2); err == nil {
		t.Errorf("a client with another MAC got a lease:\n%s", out)
	}

	// Teardown leaves nothing: namespace, IPAM reservation, cache, host veth.
	if err := e.n.Teardown(ctx, sb); err != nil {
		t.Fatal(err)
	}
	e.checkGone(t, sb.ID, path, ips[0])
	if err := e.n.Teardown(ctx, sb); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
}

// checkGone asserts Teardown of sandbox id left nothing behind.
func (e *env) checkGone(t *testing.T, id, path, ip string) {
	t.Helper()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("namespace file %s still there (%v)", path, err)
	}
	if ip != "" {
		if _, err := os.Stat(filepath.Join(e.ipamDir, e.confName, ip)); !os.IsNotExist(err) {
			t.Errorf("host-local still holds %s (%v)", ip, err)
		}
	}
	for _, dir := range []string{filepath.Join(e.cfg.CacheDir, "sandboxes"), filepath.Join(e.cfg.CacheDir, "results")} {
		entries, _ := os.ReadDir(dir)
		for _, de := range entries {
			t.Errorf("left in %s: %s", dir, de.Name())
		}
	}
	if br, err := netlink.LinkByName(e.hostBr); err == nil {
		links, _ := netlink.LinkList()
		for _, l := range links {
			if l.Attrs().MasterIndex == br.Attrs().Index {
				t.Errorf("host veth %s still on %s", l.Attrs().Name, e.hostBr)
			}
		}
	}
	out, err := exec.Command("iptables-save").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v\n%s", err, out)
	}
	if strings.Contains(string(out), id) {
		t.Errorf("iptables rules for sandbox %s left:\n%s", id, out)
	}
}

// runDHCPClient runs busybox udhcpc in a new namespace whose interface (with
// MAC mac) is a veth peer of a port on the pod's bridge, in place of the
// VM's tap. It returns the environment udhcpc gave its script on "bound".
func runDHCPClient(t *testing.T, podNS, mac string, tries int) (string, string, error) {
	t.Helper()
	return runDHCPClientOn(t, podNS, bridgeName, mac, tries)
}

// runDHCPClientOn is runDHCPClient on another bridge of the pod's namespace.
func runDHCPClientOn(t *testing.T, podNS, bridge, mac string, tries int) (string, string, error) {
	t.Helper()
	dir := t.TempDir()
	clientNS := filepath.Join(dir, "client-ns")
	if err := createNetNS(clientNS); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeNetNS(clientNS); unmountDir(dir) })
	cns, err := ns.GetNS(clientNS)
	if err != nil {
		t.Fatal(err)
	}
	defer cns.Close()
	hw, _ := net.ParseMAC(mac)
	k := vethSeq.Add(1)
	portName, guestName := fmt.Sprintf("vmtest%d", k), fmt.Sprintf("vm%d", k)
	err = ns.WithNetNSPath(podNS, func(ns.NetNS) error {
		br, err := netlink.LinkByName(bridge)
		if err != nil {
			return err
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: portName, MasterIndex: br.Attrs().Index},
			PeerName: guestName, PeerHardwareAddr: hw, PeerNamespace: netlink.NsFd(cns.Fd())}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("creating the test veth: %w", err)
		}
		return netlink.LinkSetUp(veth)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.WithNetNSPath(podNS, func(ns.NetNS) error {
			if l, err := netlink.LinkByName(portName); err == nil {
				netlink.LinkDel(l)
			}
			return nil
		})
	})
	script := filepath.Join(dir, "script")
	bound := filepath.Join(dir, "bound")
	if err := os.WriteFile(script, []byte(clientScript(bound)), 0o755); err != nil {
		t.Fatal(err)
	}
	var out []byte
	err = ns.WithNetNSPath(clientNS, func(ns.NetNS) error {
		l, err := netlink.LinkByName(guestName)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
		// Exec from this thread: the child starts in the client namespace.
		cmd := exec.Command("busybox", "udhcpc", "-i", guestName, "-f", "-n", "-q", "-s", script,
			"-t", fmt.Sprint(tries), "-T", "2", "-A", "1",
			"-O", "search", "-O", "mtu", "-O", "broadcast", "-O", "hostname", "-O", "domain")
		out, err = cmd.CombinedOutput()
		return err
	})
	if err != nil {
		return "", "", fmt.Errorf("udhcpc: %w\n%s", err, out)
	}
	env, err := os.ReadFile(bound)
	if err != nil {
		return "", "", fmt.Errorf("udhcpc bound no lease: %w\n%s", err, out)
	}
	return string(env), clientNS, nil
}

// clientScript is udhcpc's script: it records the lease and configures it
// like a guest would (address, then the classless routes).
func clientScript(bound string) string {
	return `#!/bin/sh
[ "$1" = bound ] || exit 0
env > ` + bound + `
ip addr add "$ip/$mask" dev "$interface" || exit 1
set -- $staticroutes
while [ $# -ge 2 ]; do
	if [ "$2" = 0.0.0.0 ]; then ip route add "$1" dev "$interface"; else ip route add "$1" via "$2" dev "$interface" onlink; fi || exit 1
	shift 2
done
`
}

// dhcpClient runs a DHCP client for mac and returns the lease's variables
// and the client's namespace, configured with the lease.
func dhcpClient(t *testing.T, podNS, mac string) (map[string]string, string) {
	t.Helper()
	return dhcpClientOn(t, podNS, bridgeName, mac)
}

// dhcpClientOn is dhcpClient on another bridge of the pod's namespace.
func dhcpClientOn(t *testing.T, podNS, bridge, mac string) (map[string]string, string) {
	t.Helper()
	out, clientNS, err := runDHCPClientOn(t, podNS, bridge, mac, 10)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m, clientNS
}

// A Setup that fails after CNI ADD (a later plugin in the list fails) undoes
// everything: IPAM reservation, namespace, state; Teardown afterwards is a
// no-op that succeeds.
func TestSetupFailureUndoes(t *testing.T) {
	needRoot(t, "iptables-save")
	bin := t.TempDir()
	// A plugin that fails ADD and succeeds DEL, as a real one whose
	// daemon is down would.
	fail := "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then\n" +
		"  echo '{\"cniVersion\":\"1.0.0\",\"code\":999,\"msg\":\"injected failure\"}'\n  exit 1\nfi\n" +
		"if [ \"$CNI_COMMAND\" = VERSION ]; then echo '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"1.0.0\"]}'; fi\nexit 0\n"
	if err := os.WriteFile(filepath.Join(bin, "failer"), []byte(fail), 0o755); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpt{extraPlugin: `{"type":"failer"}`, binDir: bin})
	sb := newSandbox("f00dfeedf00dfeedf00d")
	_, err := e.n.Setup(context.Background(), sb)
	if err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("Setup = %v, want the plugin's failure", err)
	}
	path := filepath.Join(e.cfg.NetNSDir, "podvisor-f00dfeedf00d")
	// host-local handed out .2 (the first address after the gateway).
	e.checkGone(t, sb.ID, path, e.subnet+".2")
	if entries, _ := os.ReadDir(filepath.Join(e.ipamDir, e.confName)); len(entries) > 0 {
		for _, de := range entries {
			if de.Name() != "lock" && !strings.HasPrefix(de.Name(), "last_reserved_ip") {
				t.Errorf("host-local still holds %s", de.Name())
			}
		}
	}
	if err := e.n.Teardown(context.Background(), sb); err != nil {
		t.Fatalf("Teardown after a failed Setup: %v", err)
	}
}

// After a restart of podvisor (a new Network, same directories) the DHCP
// server comes back with Resume; Teardown works from the record alone.
func TestResumeAfterRestart(t *testing.T) {
	needRoot(t, "busybox", "iptables-save")
	e := newEnv(t, envOpt{})
	ctx := context.Background()
	sb := newSandbox("b0b0b0b0b0b0b0b0b0b0")
	status, err := e.n.Setup(ctx, sb)
	if err != nil {
		t.Fatal(err)
	}
	sb.Network = status
	e.n.Close() // podvisor stops: the DHCP server goes, the namespace stays

	restarted, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close()
	if err := restarted.Resume(ctx, sb); err != nil {
		t.Fatal(err)
	}
	if err := restarted.Resume(ctx, sb); err != nil {
		t.Fatalf("second Resume: %v", err)
	}
	got, _ := dhcpClient(t, status.NetNS, status.Interfaces[0].MAC)
	if got["ip"] != status.IPs()[0] {
		t.Errorf("after Resume DHCP gave %q, want %s", got["ip"], status.IPs()[0])
	}
	if err := restarted.Teardown(ctx, sb); err != nil {
		t.Fatal(err)
	}
	e.checkGone(t, sb.ID, status.NetNS, status.IPs()[0])
	if err := restarted.Resume(ctx, sb); err == nil || !strings.Contains(err.Error(), "is gone") {
		t.Errorf("Resume of a torn down sandbox = %v, want an error saying the namespace is gone", err)
	}
}

// The caveat found by hand: CNI DEL after the address had moved off eth0
// left the bridge plugin's masquerade rules behind. Teardown restores eth0
// first, so DEL finds and removes them. The rules only match the test pod's
// own source address.
func TestTeardownRemovesMasquerade(t *testing.T) {
	needRoot(t, "iptables-save")
	e := newEnv(t, envOpt{ipMasq: true})
	ctx := context.Background()
	sb := newSandbox("c0ffeec0ffeec0ffee00")
	status, err := e.n.Setup(ctx, sb)
	if err != nil {
		t.Fatal(err)
	}
	sb.Network = status
	out, err := exec.Command("iptables-save", "-t", "nat").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), sb.ID) {
		t.Fatalf("no masquerade rule for %s after Setup; the test proves nothing:\n%s", sb.ID, out)
	}
	if err := e.n.Teardown(ctx, sb); err != nil {
		t.Fatal(err)
	}
	e.checkGone(t, sb.ID, status.NetNS, status.IPs()[0])
}

// CollectOrphans tears down networks of sandboxes podvisor has no record
// of and keeps the others; a namespace it has no state for is someone
// else's, even when named like ours, and is kept.
func TestCollectOrphans(t *testing.T) {
	needRoot(t, "iptables-save")
	e := newEnv(t, envOpt{})
	ctx := context.Background()
	keep, orphan := newSandbox("1111111111111111aaaa"), newSandbox("2222222222222222bbbb")
	ks, err := e.n.Setup(ctx, keep)
	if err != nil {
		t.Fatal(err)
	}
	keep.Network = ks
	os2, err := e.n.Setup(ctx, orphan)
	if err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(e.cfg.NetNSDir, "podvisor-333333333333")
	if err := createNetNS(stray); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(e.cfg.NetNSDir, "someone-else")
	if err := createNetNS(other); err != nil {
		t.Fatal(err)
	}
	removed, err := e.n.CollectOrphans(ctx, map[string]bool{keep.ID: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || !strings.Contains(removed[0], orphan.ID) {
		t.Errorf("CollectOrphans said it removed %q, want the network of %s alone", removed, orphan.ID)
	}
	for _, p := range []string{ks.NetNS, other, stray} {
		if !netnsExists(p) {
			t.Errorf("%s was removed", p)
		}
	}
	if err := removeNetNS(stray); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.ipamDir, e.confName, os2.IPs()[0])); !os.IsNotExist(err) {
		t.Errorf("the orphan's address %s is still reserved", os2.IPs()[0])
	}
	if err := e.n.Teardown(ctx, keep); err != nil {
		t.Fatal(err)
	}
	e.checkGone(t, keep.ID, ks.NetNS, ks.IPs()[0])
}

// After a node reboot the namespace is gone (/run is a tmpfs) but the
// record and the IPAM reservation are not: Teardown still releases the
// address.
func TestTeardownWithoutNamespace(t *testing.T) {
	needRoot(t, "iptables-save")
	e := newEnv(t, envOpt{})
	ctx := context.Background()
	sb := newSandbox("deadbeefdeadbeef0000")
	status, err := e.n.Setup(ctx, sb)
	if err != nil {
		t.Fatal(err)
	}
	sb.Network = status
	e.n.Close()
	if err := removeNetNS(status.NetNS); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.ipamDir, e.confName, status.IPs()[0])); err != nil {
		t.Fatalf("the address should still be reserved before Teardown: %v", err)
	}
	fresh, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Teardown(ctx, sb); err != nil {
		t.Fatal(err)
	}
	// The kernel destroys an unmounted namespace, and with it the host
	// end of its veth, asynchronously.
	e.waitNoVeth(t)
	e.checkGone(t, sb.ID, status.NetNS, status.IPs()[0])
}

func (e *env) waitNoVeth(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		br, err := netlink.LinkByName(e.hostBr)
		if err != nil {
			return
		}
		links, _ := netlink.LinkList()
		left := 0
		for _, l := range links {
			if l.Attrs().MasterIndex == br.Attrs().Index {
				left++
			}
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d veths still on %s after 30s", left, e.hostBr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dialFromPodNS connects from the pod's namespace to a TCP listener on ip in
// the guest's (client's) namespace and reads its greeting.
func dialFromPodNS(t *testing.T, podNS, guestNS, ip string) {
	t.Helper()
	var ln net.Listener
	err := ns.WithNetNSPath(guestNS, func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(ip, "8080"))
		return err
	})
	if err != nil {
		t.Fatalf("listening in the guest's namespace: %v", err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hello from the guest\n"))
			c.Close()
		}
	}()
	var got []byte
	err = ns.WithNetNSPath(podNS, func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "8080"), 20*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		got, err = io.ReadAll(c)
		return err
	})
	if err != nil || string(got) != "hello from the guest\n" {
		t.Fatalf("dialing %s:8080 from the pod namespace: %q, %v", ip, got, err)
	}
}

// unmountDir undoes sharedMountDir on a test's directory.
func unmountDir(dir string) {
	for unix.Unmount(dir, unix.MNT_DETACH) == nil {
	}
}

// createNetNS makes its directory a shared mount point, as `ip netns add`
// does, so that a later `ip netns add` does not bind the directory over
// itself (which stacked a copy of every namespace mount and made the files
// impossible to remove); a namespace mounted twice on its file is still
// removed.
func TestNetNSMounts(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	t.Cleanup(func() { unmountDir(dir) })
	p := filepath.Join(dir, "podvisor-twice")
	if err := createNetNS(p); err != nil {
		t.Fatal(err)
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	shared := false
	for _, line := range strings.Split(string(info), "\n") {
		f := strings.Fields(line)
		if len(f) > 6 && f[4] == dir && strings.Contains(line, " shared:") {
			shared = true
		}
	}
	if !shared {
		t.Errorf("%s is not a shared mount point:\n%s", dir, info)
	}
	if err := unix.Mount(p, p, "none", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if err := removeNetNS(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", p, err)
	}
}
