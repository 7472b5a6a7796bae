package cloudinit

import (
	"bufio"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// cloudInitPython returns the interpreter cloud-init runs with (its module
// is installed for that one only) and the cloud-init program.
func cloudInitPython(t *testing.T) (python, cloudInit string) {
	t.Helper()
	ci := requireTool(t, "cloud-init", "cloud-init")
	f, err := os.Open(ci)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	if !strings.HasPrefix(line, "#!") {
		t.Fatalf("%s has no #! line", ci)
	}
	return strings.Fields(strings.TrimPrefix(line, "#!"))[0], ci
}

type guestView struct {
	InstanceID    string         `json:"instance-id"`
	LocalHostname string         `json:"local-hostname"`
	PublicKeys    []string       `json:"public-keys"`
	UserData      string         `json:"userdata"`
	Schema        string         `json:"schema"`
	Network       map[string]any `json:"network"`
}

// TestGuestCloudInitReadsDrive builds ISOs and reads them the way a guest
// does: extracted with xorriso, parsed by cloud-init's own NoCloud and
// ConfigDrive code, user-data checked against cloud-init's schema, network
// config rendered by cloud-init into systemd-networkd files.
func TestGuestCloudInitReadsDrive(t *testing.T) {
	python, cloudInit := cloudInitPython(t)
	requireTool(t, "genisoimage", "genisoimage")
	requireTool(t, "xorriso", "xorriso")
	script, err := filepath.Abs("testdata/guestread.py")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		id, host string
		keys     []string
	}{
		{"everything_nocloud", "vm.ns", "vm", []string{key3, key2}},
		{"everything_nocloud_v2", "vm.ns", "vm", []string{key3, key2}},
		{"everything_configdrive", "vm.ns", "vm", []string{key3, key2}},
		{"network_multi_v1", "vm.ns", "vm", nil},
		{"network_multi_v2", "vm.ns", "vm", nil},
		{"network_multi_configdrive", "vm.ns", "vm", nil},
		{"metadata_configdrive", "fixed-id", "custom", nil},
		{"sshkeys_configdrive", "vm.ns", "vm", []string{key1, key2}},
		{"hostname", "vm.ns", "vm-host", nil},
		{"userdata_script", "vm.ns", "vm", nil},
		{"volumes_9p_merge", "vm.ns", "vm", nil},
		{"block_links_bootcmd_merge", "vm.ns", "vm", nil},
		{"network_dhcp_forced_configdrive", "vm.ns", "vm", nil},
	}
	cases := map[string]Input{}
	for _, tc := range goldenCases {
		cases[tc.name] = tc.in
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in, ok := cases[tc.name]
			if !ok {
				t.Fatalf("no golden case %s", tc.name)
			}
			c, err := Generate(context.Background(), in, testDS())
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			iso := filepath.Join(dir, "drive.iso")
			if err := WriteISO(context.Background(), c, iso); err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(dir, "mnt")
			run(t, "xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", root)
			kind := string(NoCloud)
			if in.Type == ConfigDrive {
				kind = string(ConfigDrive)
			}
			var g guestView
			if err := json.Unmarshal([]byte(run(t, python, script, kind, root)), &g); err != nil {
				t.Fatalf("guestread output: %v", err)
			}
			if g.InstanceID != tc.id || g.LocalHostname != tc.host {
				t.Errorf("guest sees instance-id %q local-hostname %q, want %q %q", g.InstanceID, g.LocalHostname, tc.id, tc.host)
			}
			if diff := cmp.Diff(tc.keys, g.PublicKeys, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("guest ssh keys (-want +got):\n%s", diff)
			}
			ud, _ := c.File(map[string]string{"nocloud": PathNoCloudUserData, "configdrive": PathConfigDriveUserData}[kind])
			if g.UserData != string(ud) {
				t.Errorf("guest user-data %q, want %q", g.UserData, ud)
			}
			if strings.HasPrefix(string(ud), "#cloud-config") && g.Schema != "valid" {
				t.Errorf("user-data not validated against cloud-init's schema")
			}
			wantNet := in.Network != nil && !in.ForceDHCP
			if (g.Network != nil) != wantNet {
				t.Fatalf("guest network config present = %v, want %v", g.Network != nil, wantNet)
			}
			if wantNet {
				checkNetworkd(t, cloudInit, dir, g.Network, &in)
			}
		})
	}
}

// checkNetworkd renders cfg with cloud-init into systemd-networkd units and
// checks every interface, address, gateway, route and DNS setting is there.
func checkNetworkd(t *testing.T, cloudInit, dir string, cfg map[string]any, in *Input) {
	t.Helper()
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "net.json") // JSON is YAML
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "rendered")
	run(t, cloudInit, "devel", "net-convert", "-p", p, "-k", "yaml", "-D", "ubuntu", "-O", "networkd", "-d", out)
	checkNetworkdUnits(t, out, in)
}

// checkNetworkdUnits checks the systemd-networkd units cloud-init rendered
// under out for in's network: every interface, address, gateway, route and
// DNS setting is there.
func checkNetworkdUnits(t *testing.T, out string, in *Input) {
	t.Helper()
	units, _ := filepath.Glob(filepath.Join(out, "etc/systemd/network", "*.network"))
	if len(units) != len(in.Network.Interfaces) {
		t.Errorf("cloud-init rendered %d networkd units %v, want one per interface (%d)", len(units), units, len(in.Network.Interfaces))
	}
	for _, ifc := range in.Network.Interfaces {
		unit, err := os.ReadFile(filepath.Join(out, "etc/systemd/network", "10-cloud-init-"+ifc.Name+".network"))
		if err != nil {
			t.Errorf("no networkd unit for %s: %v", ifc.Name, err)
			continue
		}
		u := string(unit)
		want := []string{"MACAddress=" + strings.ToLower(ifc.MAC), "Name=" + ifc.Name}
		if ifc.MTU > 0 {
			want = append(want, "MTUBytes="+strconv.Itoa(ifc.MTU))
		}
		if len(ifc.Addresses) == 0 {
			want = append(want, "DHCP=ipv4")
		}
		for _, a := range ifc.Addresses {
			want = append(want, "Address="+a.CIDR)
			if a.Gateway != "" {
				want = append(want, "Gateway="+a.Gateway)
			}
		}
		for _, r := range ifc.Routes {
			if netip.MustParsePrefix(r.Dst).Bits() > 0 {
				want = append(want, "Destination="+r.Dst)
			}
		}
		if in.DNS != nil {
			want = append(want, "DNS="+strings.Join(in.DNS.Servers, " "))
			// cloud-init drops dns_search of a ConfigDrive DHCP network
			// (the DHCP server's domains apply there).
			if len(ifc.Addresses) > 0 || in.Type != ConfigDrive {
				want = append(want, "Domains="+strings.Join(in.DNS.Searches, " "))
			}
		}
		for _, w := range want {
			if !strings.Contains(u, w+"\n") {
				t.Errorf("networkd unit for %s lacks %q:\n%s", ifc.Name, w, u)
			}
		}
	}
}

// TestGuestCloudInitMountsVolumes runs cloud-init's own `mounts` module
// (Debian's cloud-init 22.4, testdata/ccmounts.py) on the user-data of
// volumes_9p_merge: the user's entry and each 9p share must reach the
// guest's fstab as given (a 9p tag is no block device: cloud-init keeps
// the name unchanged), each mount point must be created and `mount -a`
// run.
func TestGuestCloudInitMountsVolumes(t *testing.T) {
	python, _ := cloudInitPython(t)
	script, err := filepath.Abs("testdata/ccmounts.py")
	if err != nil {
		t.Fatal(err)
	}
	var in Input
	for _, tc := range goldenCases {
		if tc.name == "volumes_9p_merge" {
			in = tc.in
		}
	}
	c, err := Generate(context.Background(), in, testDS())
	if err != nil {
		t.Fatal(err)
	}
	ud, _ := c.File(PathNoCloudUserData)
	path := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(path, ud, 0o644); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Fstab    []string   `json:"fstab"`
		Dirs     []string   `json:"dirs"`
		Commands [][]string `json:"commands"`
	}
	if err := json.Unmarshal([]byte(run(t, python, script, path)), &got); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/dev/vdb\t/mnt/extra\text4\tdefaults,comment=cloudconfig\t0\t2",
		"data\t/var/data\t9p\ttrans=virtio,version=9p2000.L,msize=262144,nofail,comment=cloudconfig\t0\t0",
		"cfg\t/etc/cfg\t9p\ttrans=virtio,version=9p2000.L,msize=262144,ro,nofail,comment=cloudconfig\t0\t0",
	}
	if diff := cmp.Diff(want, got.Fstab); diff != "" {
		t.Errorf("the guest's fstab (-want +got):\n%s", diff)
	}
	for _, d := range []string{"/mnt/extra", "/var/data", "/etc/cfg"} {
		if !slices.Contains(got.Dirs, d) {
			t.Errorf("cloud-init does not create the mount point %s: %v", d, got.Dirs)
		}
	}
	mounted := false
	for _, c := range got.Commands {
		mounted = mounted || strings.Join(c, " ") == "mount -a"
	}
	if !mounted {
		t.Errorf("cloud-init does not run mount -a: %v", got.Commands)
	}
}

// guestCheck is what guestread.py --all reports for one drive.
type guestCheck struct {
	guestView
	Error      string   `json:"error"`
	Kind       string   `json:"kind"`
	Types      []string `json:"userdata-types"`
	NetConvert bool     `json:"net-convert"`
}

// checkDrives runs guestread.py --all on root and returns its views and the
// directory the network configs were rendered into.
func checkDrives(t *testing.T, root string) (map[string]guestCheck, string) {
	t.Helper()
	python, _ := cloudInitPython(t)
	script, err := filepath.Abs("testdata/guestread.py")
	if err != nil {
		t.Fatal(err)
	}
	rendered := t.TempDir()
	var views map[string]guestCheck
	if err := json.Unmarshal([]byte(run(t, python, script, "--all", root, rendered)), &views); err != nil {
		t.Fatalf("guestread --all output: %v", err)
	}
	return views, rendered
}

// TestGuestCloudInitChecksEveryGolden reads the drive of every golden case
// with cloud-init's own code: meta-data through its NoCloud or ConfigDrive
// reader, user-data through its user-data processor (a cloud-config must
// pass the strict schema and name only keys the schema knows; a script
// must be taken for one), and every network config through net-convert into
// systemd-networkd units holding every interface, address, route and DNS
// setting of the input.
func TestGuestCloudInitChecksEveryGolden(t *testing.T) {
	root := t.TempDir()
	for _, tc := range goldenCases {
		c, err := Generate(context.Background(), tc.in, testDS())
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for p, data := range contentsAsFiles(c) {
			fp := filepath.Join(root, tc.name, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(fp), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(fp, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	views, rendered := checkDrives(t, root)
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			g, ok := views[tc.name]
			if !ok || g.Error != "" {
				t.Fatalf("cloud-init refuses the drive (read: %v): %s", ok, g.Error)
			}
			if g.InstanceID == "" || g.LocalHostname == "" {
				t.Errorf("cloud-init sees instance-id %q local-hostname %q", g.InstanceID, g.LocalHostname)
			}
			var want []string
			switch ud := g.UserData; {
			case strings.HasPrefix(ud, "#cloud-config\n"):
				want = []string{"text/cloud-config"}
				if g.Schema != "valid" {
					t.Errorf("cloud-config not checked against cloud-init's schema")
				}
			case strings.HasPrefix(ud, "#!"):
				want = []string{"text/x-shellscript"}
			default:
				t.Errorf("user-data is neither a cloud-config nor a script: %q", ud)
			}
			if diff := cmp.Diff(want, g.Types); diff != "" {
				t.Errorf("cloud-init's user-data processor finds (-want +got):\n%s", diff)
			}
			wantNet := tc.in.Network != nil && !tc.in.ForceDHCP
			if g.NetConvert != wantNet || (g.Network != nil) != wantNet {
				t.Fatalf("network config read %v, converted %v; want %v", g.Network != nil, g.NetConvert, wantNet)
			}
			if wantNet {
				checkNetworkdUnits(t, filepath.Join(rendered, tc.name), &tc.in)
			}
		})
	}
}

// TestGuestCloudInitCheckRejects: the check above can say no. Each drive
// under testdata/broken has one mistake that cloud-init's reader, its
// schema, our unknown-key check or net-convert must refuse.
func TestGuestCloudInitCheckRejects(t *testing.T) {
	want := map[string]string{
		// cloud-init 22.4 would ignore it: only our check sees it.
		"misspelled_module":    "not in cloud-init's schema (cloud-init ignores them): runcmdd",
		"wrong_type":           "runcmd: 5 is not of type 'array'",
		"not_a_mapping":        "cloud-config is not a mapping",
		"network_bad_type":     "No handler found for  command 'physicall'",
		"configdrive_bad_json": "network_data.json: Expecting property name enclosed in double quotes",
	}
	views, _ := checkDrives(t, "testdata/broken")
	if len(views) != len(want) {
		t.Errorf("%d broken drives in testdata/broken, %d expected", len(views), len(want))
	}
	for name, msg := range want {
		if g := views[name]; !strings.Contains(g.Error, msg) {
			t.Errorf("broken drive %s: error %q, want it to contain %q", name, g.Error, msg)
		}
	}
}
