package network

import (
	"encoding/json"
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
