package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzNetworkConfig: no input may panic the parsers the guest runs at boot,
// and a plan they accept is one applyPlan can hand to ip: MACs are lower
// case (as Links reports them), every address and route destination is a canonical prefix
// (cidr gives it back unchanged). The seeds are podvisor's generated
// network configs: a missing one fails rather than fuzzing without it.
func FuzzNetworkConfig(f *testing.F) {
	seeds := []string{
		"network_v1/network-config", "network_v2/network-config",
		"network_multi_v1/network-config", "network_multi_v2/network-config",
		"network_configdrive/openstack/latest/network_data.json",
		"network_multi_configdrive/openstack/latest/network_data.json",
	}
	for _, p := range seeds {
		b, err := os.ReadFile(filepath.Join(golden, filepath.FromSlash(p)))
		if err != nil {
			f.Fatalf("seed from runtime/cloudinit's goldens: %v", err)
		}
		f.Add(b)
	}
	f.Add([]byte("a: [x,,y]\n- 'q\n\"k\": v\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if plan, err := parseNoCloud(string(b)); err == nil {
			checkPlan(t, plan)
		}
		if plan, err := parseNetworkData(b); err == nil {
			checkPlan(t, plan)
		}
		// guest-exec would run the input's programs: only the parsing of
		// requests is fuzzed (shutdown is disabled outside the agent anyway).
		var req request
		if json.Unmarshal(bytes.TrimSpace(b), &req) != nil || !strings.HasPrefix(req.Execute, "guest-exec") {
			_ = newAgent().handle(b)
		}
	})
}

func checkPlan(t *testing.T, plan *netPlan) {
	t.Helper()
	canonical := func(what, p string) {
		if _, err := netip.ParsePrefix(p); err != nil {
			t.Fatalf("accepted plan has %s %q: %v", what, p, err)
		}
		if again, err := cidr(p, ""); err != nil || again != p {
			t.Fatalf("accepted plan's %s %q is not canonical: cidr gives %q, %v", what, p, again, err)
		}
	}
	for _, ifc := range plan.Ifaces {
		if ifc.MAC != strings.ToLower(ifc.MAC) {
			t.Fatalf("accepted plan has an interface with MAC %q: Links() reports lower case", ifc.MAC)
		}
		for _, a := range ifc.Addrs {
			canonical("address", a)
		}
		for _, r := range ifc.Routes {
			canonical("route destination", r.Dst)
		}
	}
}
