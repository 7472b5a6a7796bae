package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// golden is what runtime/cloudinit writes: the guest must read exactly that.
const golden = "../../runtime/cloudinit/testdata/golden"

var pod = ifacePlan{
	MAC: "0a:58:0a:f4:01:05", Name: "eth0", MTU: 1450,
	Addrs: []string{"10.244.1.5/24"}, Gateways: []string{"10.244.1.1"},
	Routes: []routePlan{{Dst: "10.96.0.0/12", Via: "10.244.1.1"}},
}

var podDNS = []string{"10.96.0.10"}
var podSearch = []string{"ns.svc.cluster.local", "svc.cluster.local", "cluster.local"}

func multi(configDrive bool) *netPlan {
	eth0 := ifacePlan{MAC: "0a:58:0a:f4:01:05", Name: "eth0", MTU: 1500,
		Addrs:    []string{"10.244.1.5/24", "fd00:10:244:1::5/64"},
		Gateways: []string{"10.244.1.1", "fd00:10:244:1::1"},
		Routes:   []routePlan{{Dst: "fd00:10:96::/112", Via: "fd00:10:244:1::1"}}}
	net1 := ifacePlan{MAC: "0a:58:c0:a8:64:0a", Name: "net1", Addrs: []string{"192.168.100.10/24"},
		Routes: []routePlan{{Dst: "172.16.0.0/16", Via: "192.168.100.254"}}}
	net2 := ifacePlan{MAC: "0a:58:c0:a8:65:0b", Name: "net2", DHCP: true}
	p := &netPlan{Ifaces: []ifacePlan{eth0, net1, net2}, DNS: podDNS, Search: podSearch}
	if configDrive {
		// network_data.json gives no per-network DNS servers: services come last.
		p.DNS = podDNS
	}
	return p
}

func TestReadPlanGoldens(t *testing.T) {
	tests := []struct {
		dir  string
		want *netPlan
	}{
		{"network_v1", &netPlan{Ifaces: []ifacePlan{pod}, DNS: podDNS, Search: podSearch}},
		{"network_v2", &netPlan{Ifaces: []ifacePlan{pod}, DNS: podDNS, Search: podSearch}},
		{"network_configdrive", &netPlan{Ifaces: []ifacePlan{pod}, DNS: podDNS, Search: podSearch}},
		{"network_multi_v1", multi(false)},
		{"network_multi_v2", multi(false)},
		{"network_multi_configdrive", multi(true)},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			got, _, err := readPlan(filepath.Join(golden, tt.dir))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("plan (-want +got):\n%s", d)
			}
		})
	}
	for _, dir := range []string{"network_dhcp_forced", "network_dhcp_forced_configdrive", "plain"} {
		if _, _, err := readPlan(filepath.Join(golden, dir)); !errors.Is(err, errNoConfig) {
			t.Errorf("%s: want errNoConfig (DHCP), got %v", dir, err)
		}
	}
}

func TestParseNoCloudHandWritten(t *testing.T) {
	// Forms cloud-init documents but our generator does not emit.
	src := `# a comment
network:
  version: 1
  config:
    - type: physical
      name: ens3
      mac_address: "52:54:00:AB:CD:EF"   # upper case
      subnets:
        - type: static
          address: 10.0.2.15
          netmask: 255.255.255.0
          gateway: 10.0.2.2
          dns_nameservers: [10.0.2.3]
          dns_search: [example.com]
        - type: static6
          address: 'fd00::15'
          netmask: 64
`
	got, err := parseNoCloud(src)
	if err != nil {
		t.Fatal(err)
	}
	want := &netPlan{
		Ifaces: []ifacePlan{{MAC: "52:54:00:ab:cd:ef", Name: "ens3", Addrs: []string{"10.0.2.15/24", "fd00::15/64"}, Gateways: []string{"10.0.2.2"}}},
		DNS:    []string{"10.0.2.3"}, Search: []string{"example.com"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"version: 3\n", `version "3": accepted 1 or 2`},
		{"version: 1\nconfig:\n- type: physical\n  name: eth0\n", "mac_address is required"},
		{"version: 1\nconfig:\n- type: physical\n  mac_address: aa:bb:cc:dd:ee:ff\n  subnets:\n  - type: static\n    address: 10.0.0.300/24\n", `config[0].subnets[0].address: "10.0.0.300/24" is not an address/prefix`},
		{"version: 1\nconfig:\n- type: physical\n  mac_address: aa:bb:cc:dd:ee:ff\n  subnets:\n  - type: static\n    address: 10.0.0.3\n    netmask: 255.0.255.0\n", `netmask "255.0.255.0" is not a contiguous 32-bit mask`},
		{"version: 1\nconfig:\n- type: bond\n", `config[0].type: "bond": accepted physical, nameserver`},
		{"version: 2\nethernets:\n  eth0:\n    addresses:\n    - nope\n", `ethernets.eth0.addresses[0]: "nope" is not an IP address`},
		{"version: 2\n", "no ethernets"},
		{"version: 1\n  config: x\n", "line 2: unexpected indentation"},
		{"version: 1\nversion: 2\n", `line 2: key "version" repeated`},
		{"- a\nb: c\n", "unexpected indentation"},
	}
	for _, tt := range tests {
		_, err := parseNoCloud(tt.src)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want an error containing %q", tt.src, err, tt.want)
		}
	}
	if _, err := parseNetworkData([]byte(`{"links":[{"id":"eth0","ethernet_mac_address":"aa:bb:cc:dd:ee:ff"}],"networks":[{"link":"eth9","type":"ipv4"}]}`)); err == nil || !strings.Contains(err.Error(), `networks[0].link: "eth9" names no link`) {
		t.Errorf("network_data.json with a bad link: %v", err)
	}
}

func TestYAML(t *testing.T) {
	src := "a:\n- x\n- 'it''s'\n- \"q\\n\"\nb:\n  c: {}\n  d: []\n  e:\nf:\n- - 1\n  - 2\n- g: h\n  i: j\n"
	got, err := parseYAML(src)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"a": []any{"x", "it's", "q\n"},
		"b": map[string]any{"c": map[string]any{}, "d": []any{}, "e": nil},
		"f": []any{[]any{"1", "2"}, map[string]any{"g": "h", "i": "j"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

type fakeOps struct {
	links  map[string]string
	fail   string // an ip command containing this fails
	cmds   []string
	resolv string
}

func (f *fakeOps) Links() (map[string]string, error) { return f.links, nil }
func (f *fakeOps) IP(args ...string) error {
	c := strings.Join(args, " ")
	f.cmds = append(f.cmds, c)
	if f.fail != "" && strings.Contains(c, f.fail) {
		return errors.New("ip " + c + ": RTNETLINK answers: boom")
	}
	return nil
}
func (f *fakeOps) WriteResolv(s string) error { f.resolv = s; return nil }

func TestApplyPlan(t *testing.T) {
	plan := multi(false)
	tests := []struct {
		name     string
		ops      *fakeOps
		wantDone []string
		wantCmds []string
		wantLog  string
		wantDNS  bool
	}{{
		name: "renamed, static v4+v6, dhcp left alone",
		ops:  &fakeOps{links: map[string]string{"0a:58:0a:f4:01:05": "eth1", "0a:58:c0:a8:64:0a": "net1", "0a:58:c0:a8:65:0b": "eth2", "52:54:00:00:00:01": "eth0"}},
		// eth0 is another NIC's name: the pod NIC keeps eth1.
		wantDone: []string{"eth1", "net1"},
		wantCmds: []string{
			"link set dev eth1 mtu 1500", "link set dev eth1 up",
			"addr add 10.244.1.5/24 dev eth1", "addr add fd00:10:244:1::5/64 dev eth1",
			"-4 route replace default via 10.244.1.1 dev eth1 onlink",
			"-6 route replace default via fd00:10:244:1::1 dev eth1 onlink",
			"-6 route replace fd00:10:96::/112 via fd00:10:244:1::1 dev eth1 onlink",
			"link set dev net1 up", "addr add 192.168.100.10/24 dev net1",
			"-4 route replace 172.16.0.0/16 via 192.168.100.254 dev net1 onlink",
			"link set dev eth2 name net2",
		},
		wantDNS: true,
	}, {
		name:     "a failing interface is flushed for DHCP, a missing one is named",
		ops:      &fakeOps{links: map[string]string{"0a:58:0a:f4:01:05": "eth0", "0a:58:c0:a8:65:0b": "net2"}, fail: "fd00:10:244:1::5"},
		wantCmds: []string{"link set dev eth0 mtu 1500", "link set dev eth0 up", "addr add 10.244.1.5/24 dev eth0", "addr add fd00:10:244:1::5/64 dev eth0", "addr flush dev eth0"},
		wantLog:  "netconfig: eth0: ip addr add fd00:10:244:1::5/64 dev eth0: RTNETLINK answers: boom; leaving it to DHCP\nnetconfig: no NIC with MAC 0a:58:c0:a8:64:0a (for net1)\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			done := applyPlan(plan, tt.ops, &log)
			if d := cmp.Diff(tt.wantDone, done); d != "" {
				t.Errorf("configured (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.wantCmds, tt.ops.cmds); d != "" {
				t.Errorf("ip commands (-want +got):\n%s", d)
			}
			if tt.wantLog != "" && !strings.Contains(log.String(), tt.wantLog) {
				t.Errorf("log %q lacks %q", log.String(), tt.wantLog)
			}
			wantResolv := ""
			if tt.wantDNS {
				wantResolv = "search ns.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\n"
			}
			if tt.ops.resolv != wantResolv {
				t.Errorf("resolv.conf %q, want %q", tt.ops.resolv, wantResolv)
			}
		})
	}
}

func TestRunNetconfigNoConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runNetconfig(t.TempDir(), &out, &errOut); code != 3 {
		t.Errorf("no config: exit %d, want 3 (%s)", code, errOut.String())
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "network-config"), []byte("version: 9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code := runNetconfig(dir, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "version") {
		t.Errorf("bad config: exit %d, %q", code, errOut.String())
	}
}
