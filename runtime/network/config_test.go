package network

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"

	"github.com/podvisor/podvisor/runtime/network/vmenv"
	"github.com/podvisor/podvisor/runtime/podtypes"
)

const bridgeConflist = `{"cniVersion":"1.0.0","name":"%s","plugins":[{"type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.77.0.0/24"}}]}`

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadConfList(t *testing.T) {
	for _, tc := range []struct {
		name     string
		files    map[string]string
		wantNet  string
		wantFile string
		wantErr  string
	}{
		{name: "first by file name", files: map[string]string{
			"20-b.conflist": strings.Replace(bridgeConflist, "%s", "b", 1),
			"10-a.conflist": strings.Replace(bridgeConflist, "%s", "a", 1),
		}, wantNet: "a", wantFile: "10-a.conflist"},
		{name: "invalid files are skipped", files: map[string]string{
			"00-broken.conflist":    "{",
			"05-noplugins.conflist": `{"cniVersion":"1.0.0","name":"x","plugins":[]}`,
			"10-ok.conflist":        strings.Replace(bridgeConflist, "%s", "ok", 1),
		}, wantNet: "ok", wantFile: "10-ok.conflist"},
		{name: "single plugin .conf", files: map[string]string{
			"10-single.conf": `{"cniVersion":"0.4.0","name":"single","type":"bridge"}`,
			"README":         "not a config",
		}, wantNet: "single", wantFile: "10-single.conf"},
		{name: "a list in a .json", files: map[string]string{
			"10-list.json": strings.Replace(bridgeConflist, "%s", "list", 1),
		}, wantNet: "list", wantFile: "10-list.json"},
		{name: "empty", files: map[string]string{"README": "x"}, wantErr: "no .conflist, .conf or .json file"},
		{name: "all invalid", files: map[string]string{"10-x.conf": `{"name":"x"}`}, wantErr: "10-x.conf: error parsing configuration: missing 'type'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, tc.files)
			list, file, err := loadConfList(dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errNoConfig) {
					t.Fatalf("err = %v, want errNoConfig containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if list.Name != tc.wantNet || filepath.Base(file) != tc.wantFile {
				t.Errorf("got network %q from %s, want %q from %s", list.Name, filepath.Base(file), tc.wantNet, tc.wantFile)
			}
		})
	}
}

func TestReady(t *testing.T) {
	confDir := writeFiles(t, map[string]string{"10-a.conflist": strings.Replace(bridgeConflist, "%s", "a", 1)})
	binDir := t.TempDir()
	n, err := New(Config{ConfDir: confDir, BinDirs: []string{binDir}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), `plugin "bridge" not found in `+binDir) {
		t.Fatalf("Ready without plugins = %v, want an error naming the missing plugin", err)
	}
	if err := os.WriteFile(filepath.Join(binDir, "bridge"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := n.Ready(context.Background()); err != nil {
		t.Fatalf("Ready with the plugin installed: %v", err)
	}
	empty, err := New(Config{ConfDir: t.TempDir(), BinDirs: []string{binDir}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := empty.Ready(context.Background()); !errors.Is(err, errNoConfig) {
		t.Fatalf("Ready without a configuration = %v, want errNoConfig", err)
	}
}

func testSandbox() *podtypes.Sandbox {
	return &podtypes.Sandbox{ID: "0123456789abcdef0123", Config: podtypes.SandboxConfig{
		Name: "vm", Namespace: "default", UID: "uid-1", Hostname: "vm-host",
		DNS: podtypes.DNSConfig{Servers: []string{"10.96.0.10", "fd00::10"}, Searches: []string{"default.svc.cluster.local"}},
		PortMappings: []podtypes.PortMapping{
			{Protocol: "TCP", ContainerPort: 80, HostPort: 8080},
			{Protocol: "UDP", ContainerPort: 53, HostPort: 5353, HostIP: "127.0.0.1"},
			{Protocol: "TCP", ContainerPort: 22}, // not published
		},
	}}
}

func TestRuntimeConf(t *testing.T) {
	rt := runtimeConf(testSandbox(), "/run/netns/podvisor-0123456789ab")
	want := [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", "vm"},
		{"K8S_POD_INFRA_CONTAINER_ID", "0123456789abcdef0123"}, {"K8S_POD_UID", "uid-1"}}
	if diff := cmp.Diff(want, rt.Args); diff != "" {
		t.Errorf("Args (-want +got):\n%s", diff)
	}
	if rt.IfName != "eth0" || rt.ContainerID != "0123456789abcdef0123" || rt.NetNS != "/run/netns/podvisor-0123456789ab" {
		t.Errorf("runtime conf %+v", rt)
	}
	got, _ := json.Marshal(rt.CapabilityArgs)
	wantCaps := `{"portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"},{"containerPort":53,"hostIP":"127.0.0.1","hostPort":5353,"protocol":"udp"}]}`
	if string(got) != wantCaps {
		t.Errorf("CapabilityArgs = %s, want %s", got, wantCaps)
	}
	if rt := runtimeConf(&podtypes.Sandbox{ID: "x"}, ""); rt.CapabilityArgs != nil {
		t.Errorf("no port mappings: CapabilityArgs = %v, want none", rt.CapabilityArgs)
	}
	if got := netnsName("0123456789abcdef0123"); got != "podvisor-0123456789ab" {
		t.Errorf("netnsName = %q", got)
	}
}

const testResult = `{"cniVersion":"1.0.0",
 "interfaces":[{"name":"cni0","mac":"aa:aa:aa:aa:aa:aa"},{"name":"veth1","mac":"bb:bb:bb:bb:bb:bb"},
   {"name":"eth0","mac":"0a:58:0a:4d:00:05","sandbox":"/run/netns/podvisor-0123456789ab"}],
 "ips":[{"interface":2,"address":"10.77.0.5/24","gateway":"10.77.0.1"},{"interface":2,"address":"fd77::5/64","gateway":"fd77::1"}],
 "routes":[{"dst":"0.0.0.0/0"},{"dst":"10.96.0.0/12","gw":"10.77.0.254"},{"dst":"::/0","gw":"fd77::1"}],
 "dns":{"nameservers":["10.0.0.53"],"search":["cni.local"]}}`

func TestStatusOf(t *testing.T) {
	var res types100.Result
	if err := json.Unmarshal([]byte(testResult), &res); err != nil {
		t.Fatal(err)
	}
	st := &state{NetNS: "/run/netns/podvisor-0123456789ab", Moved: &moved{MAC: "0a:58:0a:4d:00:05", MTU: 1450}}
	status, l, err := statusOf(testSandbox(), st, &res)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus := &podtypes.NetworkStatus{NetNS: st.NetNS, Interfaces: []podtypes.Interface{{
		Name: "eth0", MAC: "0a:58:0a:4d:00:05", MTU: 1450,
		IPs:    []podtypes.IPConfig{{CIDR: "10.77.0.5/24", Gateway: "10.77.0.1"}, {CIDR: "fd77::5/64", Gateway: "fd77::1"}},
		Routes: []podtypes.Route{{Dst: "0.0.0.0/0"}, {Dst: "10.96.0.0/12", GW: "10.77.0.254"}, {Dst: "::/0", GW: "fd77::1"}},
	}}}
	if diff := cmp.Diff(wantStatus, status); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if got := status.IPs(); len(got) == 0 || got[0] != "10.77.0.5" {
		t.Errorf("pod IPs = %v, want 10.77.0.5 first", got)
	}
	gotLease := map[string]any{
		"mac": l.MAC.String(), "ip": l.IP.String(), "mask": net.IP(l.Mask).String(), "gw": l.Gateway.String(),
		"dns": len(l.DNS), "dns0": l.DNS[0].String(), "search": l.Search, "mtu": l.MTU, "host": l.Hostname,
		"routes": len(l.Routes), "route0": l.Routes[0].String(),
	}
	wantLease := map[string]any{
		"mac": "0a:58:0a:4d:00:05", "ip": "10.77.0.5", "mask": "255.255.255.0", "gw": "10.77.0.1",
		"dns": 1, "dns0": "10.96.0.10", "search": []string{"default.svc.cluster.local"}, "mtu": 1450, "host": "vm-host",
		"routes": 1, "route0": "route to 10.96.0.0/12 via 10.77.0.254",
	}
	if diff := cmp.Diff(wantLease, gotLease); diff != "" {
		t.Errorf("lease (-want +got):\n%s", diff)
	}

	// Without pod DNS config the CNI result's DNS is used.
	sb := testSandbox()
	sb.Config.DNS = podtypes.DNSConfig{}
	_, l, err = statusOf(sb, st, &res)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.DNS) != 1 || l.DNS[0].String() != "10.0.0.53" || cmp.Diff([]string{"cni.local"}, l.Search) != "" {
		t.Errorf("DNS from the CNI result: %v %v", l.DNS, l.Search)
	}

	// IPv6 only: refused with a reason.
	res.IPs = res.IPs[1:]
	if _, _, err := statusOf(testSandbox(), st, &res); err == nil || !strings.Contains(err.Error(), "no IPv4 address") {
		t.Errorf("IPv6-only result: err = %v", err)
	}
}

func TestNICs(t *testing.T) {
	n, err := New(Config{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	sb := testSandbox()
	if _, _, err := n.NICs(context.Background(), sb, &podtypes.Container{}); err == nil || !strings.Contains(err.Error(), "has no pod network") {
		t.Fatalf("NICs without network: %v", err)
	}
	st := state{Version: stateVersion, SandboxID: sb.ID, NetNS: "/run/netns/podvisor-0123456789ab", Moved: &moved{MAC: "0a:58:0a:4d:00:05"}}
	sb.Network = &podtypes.NetworkStatus{}
	sb.Network.Opaque, _ = json.Marshal(st)
	ifs, env, err := n.NICs(context.Background(), sb, &podtypes.Container{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs) != 0 {
		t.Errorf("libvirt interfaces = %v, want none (the wrapper adds the NIC)", ifs)
	}
	want := map[string]string{vmenv.EnvNetNS: "/run/netns/podvisor-0123456789ab", vmenv.EnvNICs: "pv-tap0=0a:58:0a:4d:00:05"}
	if diff := cmp.Diff(want, env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	nics, err := vmenv.DecodeNICs(env[vmenv.EnvNICs])
	if err != nil || len(nics) != 1 || nics[0].MAC.String() != "0a:58:0a:4d:00:05" {
		t.Errorf("the wrapper cannot read the env: %v %v", nics, err)
	}

	st.Version = 99
	sb.Network.Opaque, _ = json.Marshal(st)
	if _, _, err := n.NICs(context.Background(), sb, &podtypes.Container{}); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("NICs with a future state version: %v", err)
	}
}

// Teardown of a sandbox podvisor never set up has nothing to do, and needs
// no privileges for that.
func TestTeardownNothing(t *testing.T) {
	n, err := New(Config{ConfDir: t.TempDir(), NetNSDir: t.TempDir(), CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := n.Teardown(context.Background(), testSandbox()); err != nil {
			t.Fatalf("Teardown #%d: %v", i+1, err)
		}
	}
}
