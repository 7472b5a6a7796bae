package network

import (
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podvisor/podvisor/runtime/podtypes"
)

// An extra network's result: the interface is the one named like the
// attachment inside the sandbox; its address keeps no gateway, its default
// routes are dropped, its other routes get the gateway when they name none.
func TestExtraStatus(t *testing.T) {
	res := `{"cniVersion":"1.0.0",
 "interfaces":[{"name":"br-b","mac":"aa:aa:aa:aa:aa:aa"},{"name":"data0","mac":"0a:58:c0:a8:01:05","sandbox":"/run/netns/x"}],
 "ips":[{"interface":1,"address":"192.168.1.5/24","gateway":"192.168.1.1"},{"interface":0,"address":"192.168.1.1/24"}],
 "routes":[{"dst":"0.0.0.0/0"},{"dst":"172.16.0.0/16"},{"dst":"10.99.0.0/16","gw":"192.168.1.254"}]}`
	x := &extraState{Name: "net-b", IfName: "data0", Result: json.RawMessage(res), Moved: &moved{MAC: "0a:58:c0:a8:01:05", MTU: 9000}}
	primary := &lease{DNS: []net.IP{net.IPv4(10, 96, 0, 10).To4()}, Search: []string{"default.svc.cluster.local"}}
	ifc, l, err := x.status(2, primary)
	if err != nil {
		t.Fatal(err)
	}
	want := podtypes.Interface{Name: "data0", MAC: "0a:58:c0:a8:01:05", MTU: 9000,
		IPs:    []podtypes.IPConfig{{CIDR: "192.168.1.5/24"}},
		Routes: []podtypes.Route{{Dst: "172.16.0.0/16", GW: "192.168.1.1"}, {Dst: "10.99.0.0/16", GW: "192.168.1.254"}}}
	if d := cmp.Diff(want, ifc); d != "" {
		t.Errorf("interface -want +got:\n%s", d)
	}
	var routes []string
	for _, r := range l.Routes {
		routes = append(routes, r.String())
	}
	got := map[string]any{"ip": l.IP.String(), "mask": net.IP(l.Mask).String(), "gw": l.Gateway == nil, "server": l.ServerIP.String(),
		"dns": l.DNS[0].String(), "search": l.Search, "host": l.Hostname, "routes": routes, "mtu": l.MTU}
	wantLease := map[string]any{"ip": "192.168.1.5", "mask": "255.255.255.0", "gw": true, "server": "169.254.75.3",
		"dns": "10.96.0.10", "search": []string{"default.svc.cluster.local"}, "host": "", "mtu": 9000,
		"routes": []string{"route to 172.16.0.0/16 via 192.168.1.1", "route to 10.99.0.0/16 via 192.168.1.254"}}
	if d := cmp.Diff(wantLease, got); d != "" {
		t.Errorf("lease -want +got:\n%s", d)
	}

	x.Result = json.RawMessage(`{"cniVersion":"1.0.0","ips":[{"address":"fd00::5/64"}]}`)
	if _, _, err := x.status(1, primary); err == nil || !strings.Contains(err.Error(), `network "net-b" has no IPv4 address for data0`) {
		t.Errorf("IPv6 only: %v", err)
	}
	x.Result = nil
	if _, _, err := x.status(1, primary); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Errorf("no result: %v", err)
	}
}

// A record written before extra networks existed (no "extra" field) means
// eth0 alone; a record with extra networks gives the wrapper one tap each.
func TestNICsOfOldAndNewRecords(t *testing.T) {
	n, err := New(Config{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	sb := testSandbox()
	old := `{"version":1,"sandboxID":"x","netns":"/run/netns/podvisor-0123456789ab","confList":{},"moved":{"mac":"0a:58:0a:4d:00:05","mtu":1500}}`
	sb.Network = &podtypes.NetworkStatus{Opaque: []byte(old)}
	_, env, err := n.NICs(t.Context(), sb, &podtypes.Container{})
	if err != nil || env["PODVISOR_NICS"] != "pv-tap0=0a:58:0a:4d:00:05" {
		t.Errorf("old record: %v, %v", env, err)
	}
	st, _ := decodeState([]byte(old), "test")
	st.Extra = []*extraState{{Name: "b", IfName: "net1", Moved: &moved{MAC: "0a:58:c0:a8:01:05"}}, {Name: "c", IfName: "net2", Moved: &moved{MAC: "0a:58:c0:a8:02:05"}}}
	sb.Network.Opaque, _ = json.Marshal(st)
	_, env, err = n.NICs(t.Context(), sb, &podtypes.Container{})
	if err != nil || env["PODVISOR_NICS"] != "pv-tap0=0a:58:0a:4d:00:05;pv-tap1=0a:58:c0:a8:01:05;pv-tap2=0a:58:c0:a8:02:05" {
		t.Errorf("record with two extra networks: %v, %v", env, err)
	}
	st.Extra[1].Moved = nil // ADD never finished: no VM can be built on it
	sb.Network.Opaque, _ = json.Marshal(st)
	if _, _, err = n.NICs(t.Context(), sb, &podtypes.Container{}); err == nil || !strings.Contains(err.Error(), "no VM MAC for NIC 2") {
		t.Errorf("incomplete extra network: %v", err)
	}
}

// A CNI result with more interfaces in the pod's namespace than the one
// asked for (CNI-Genie merging networks, Multus as the default network, an
// SR-IOV device) names the others, which the VM does not get; host-side
// interfaces (no sandbox) and loopback are not named.
func TestOtherPodInterfaces(t *testing.T) {
	for _, tc := range []struct {
		name, res, ifname string
		want              []string
	}{
		{name: "bridge plugin", ifname: "eth0", res: `{"cniVersion":"1.0.0","interfaces":[{"name":"cni0"},{"name":"veth1"},{"name":"eth0","sandbox":"/run/netns/x"}]}`},
		{name: "CNI-Genie: calico and flannel", ifname: "eth0", want: []string{"eth1"},
			res: `{"cniVersion":"0.3.1","interfaces":[{"name":"eth0","sandbox":"/run/netns/x"},{"name":"eth1","sandbox":"/run/netns/x"}]}`},
		{name: "Multus as the default network", ifname: "eth0", want: []string{"net1", "net2"},
			res: `{"cniVersion":"1.0.0","interfaces":[{"name":"lo","sandbox":"/run/netns/x"},{"name":"net2","sandbox":"/run/netns/x"},{"name":"eth0","sandbox":"/run/netns/x"},{"name":"net1","sandbox":"/run/netns/x"}]}`},
		{name: "an extra network", ifname: "data0", want: []string{"eth0"},
			res: `{"cniVersion":"1.0.0","interfaces":[{"name":"data0","sandbox":"/run/netns/x"},{"name":"eth0","sandbox":"/run/netns/x"}]}`},
		{name: "not a result", ifname: "eth0", res: `[`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, otherPodInterfaces(json.RawMessage(tc.res), tc.ifname)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// Setup's warning names the network and the unused interfaces.
func TestWarnOtherInterfaces(t *testing.T) {
	var logs strings.Builder
	n := &Network{cfg: Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))}}
	res := `{"cniVersion":"0.3.1","interfaces":[{"name":"eth0","sandbox":"/run/netns/x"},{"name":"eth1","sandbox":"/run/netns/x"}]}`
	n.warnOtherInterfaces(&podtypes.Sandbox{ID: "sb1"}, "genie", json.RawMessage(res), "eth0")
	for _, w := range []string{"level=WARN", "the VM gets a NIC for eth0 only", "network=genie", "unused=[eth1]"} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, logs.String())
		}
	}
	logs.Reset()
	n.warnOtherInterfaces(&podtypes.Sandbox{ID: "sb1"}, "bridge", json.RawMessage(`{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}]}`), "eth0")
	if logs.Len() != 0 {
		t.Errorf("a one-interface result logged:\n%s", logs.String())
	}
}
