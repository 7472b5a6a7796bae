package vmbuild

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"libvirt.org/go/libvirtxml"
	"sigs.k8s.io/yaml"

	"github.com/podvisor/podvisor/runtime/cloudinit"
	"github.com/podvisor/podvisor/runtime/domain"
	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/podtypes"
	"github.com/podvisor/podvisor/runtime/volume"
)

type diskView struct {
	Source, Target, Serial string
	Offset, Size           uint
}

func disksOf(t *testing.T, x string) []diskView {
	t.Helper()
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	var out []diskView
	for _, disk := range d.Devices.Disks {
		v := diskView{Target: disk.Target.Dev, Serial: disk.Serial}
		switch s := disk.Source; {
		case s.Block != nil:
			v.Source = "block:" + s.Block.Dev
		case s.File != nil:
			v.Source = "file:" + s.File.File
		}
		if s := disk.Source.Slices; s != nil && len(s.Slices) == 1 {
			v.Offset, v.Size = s.Slices[0].Offset, s.Slices[0].Size
		}
		out = append(out, v)
	}
	return out
}

// A device at "/" is the root disk (a slice after podvisor's marker, the
// image written into it, no overlay made); the other devices follow with
// serials, and user-data's bootcmd links their device paths in the guest.
func TestAssemblePersistentRootAndBlockVolumes(t *testing.T) {
	needTool(t, "qemu-img")
	sb, c, img := fixture(t, map[string]string{"VirtletDiskDriver": "virtio",
		"VirtletCloudInitUserData": "mounts:\n- [/dev/testpvc, /mnt]\n"})
	dev := filepath.Join(t.TempDir(), "pv-root")
	if err := os.WriteFile(dev, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Config.Devices = []podtypes.Device{
		{ContainerPath: "/dev/testpvc", HostPath: "/dev/loop41"},
		{ContainerPath: "/", HostPath: dev},
	}
	overlays := 0
	var drive *cloudinit.Contents
	a, _ := New(Config{DomainType: domain.TypeQEMU, WriteISO: captureISO(&drive),
		Overlay: func(context.Context, string, string, int64) (int64, error) { overlays++; return 0, nil }})
	x, err := a.Assemble(context.Background(), sb, c, img)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := volume.PlanDevices([]volume.Device{{ContainerPath: "/dev/testpvc", HostPath: "/dev/loop41"}})
	want := []diskView{
		{Source: "block:" + dev, Target: "vda", Offset: volume.RootHeaderSize, Size: 7 << 20},
		{Source: "block:/dev/loop41", Target: "vdb", Serial: p.Disks[0].Serial},
		{Source: "file:" + filepath.Join(c.Dir, CloudInitFile), Target: "vdc"},
	}
	if d := cmp.Diff(want, disksOf(t, x)); d != "" {
		t.Errorf("disks (-want +got):\n%s", d)
	}
	if overlays != 0 {
		t.Errorf("%d overlays made for a VM with a persistent root", overlays)
	}
	b, _ := os.ReadFile(dev)
	if !bytes.HasPrefix(b, []byte("PODVISOR-PERSISTENT-ROOT\n")) {
		t.Errorf("the volume has no marker: %q", b[:64])
	}
	ud, _ := drive.File("user-data")
	var doc struct {
		BootCmd []string   `json:"bootcmd"`
		Mounts  [][]string `json:"mounts"`
	}
	if err := yaml.Unmarshal(ud, &doc); err != nil {
		t.Fatalf("user-data: %v\n%s", err, ud)
	}
	if len(doc.BootCmd) != 1 || !strings.Contains(doc.BootCmd[0], "podvisor_link '"+p.Disks[0].Serial+"' '/dev/testpvc'") {
		t.Errorf("bootcmd does not link /dev/testpvc:\n%s", ud)
	}
	if d := cmp.Diff([][]string{{"/dev/testpvc", "/mnt"}}, doc.Mounts); d != "" {
		t.Errorf("the user's mounts (-want +got):\n%s", d)
	}
	// As in Virtlet: a persistent root gets its address by DHCP, since
	// cloud-init would keep the first pod's static network-config.
	if nc, ok := drive.File(cloudinit.PathNoCloudNetwork); ok {
		t.Errorf("a persistent root's drive has a network-config:\n%s", nc)
	}

	// The next container on the same volume boots it as it is.
	if err := os.WriteFile(img, bytes.Repeat([]byte{0x42}, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Assemble(context.Background(), sb, c, img); err != nil {
		t.Fatal(err)
	}
	if b2, _ := os.ReadFile(dev); !bytes.Equal(b, b2) {
		t.Error("the second container rewrote the persistent root volume")
	}
}

// A volume too small for the image fails CreateContainer with
// InvalidArgument naming the device and the persistent volume, and leaves
// no VM directory and an unwritten volume.
func TestAssemblePersistentRootTooSmall(t *testing.T) {
	needTool(t, "qemu-img")
	sb, c, img := fixture(t, nil)
	dir := filepath.Join(t.TempDir(), "volumeDevices", "kubernetes.io~local-volume")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(dir, "pv-small")
	if err := os.WriteFile(dev, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Config.Devices = []podtypes.Device{{ContainerPath: "/", HostPath: dev}}
	made := 0
	a, _ := New(Config{DomainType: domain.TypeQEMU, Overlay: fakeOverlay,
		WriteISO: func(context.Context, *cloudinit.Contents, string) error { made++; return nil }})
	_, err := a.Assemble(context.Background(), sb, c, img)
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("err %v, want InvalidArgument", err)
	}
	for _, w := range []string{"pod ns/vm1", `volume device at "/"`, "persistent volume pv-small", "give the claim at least 3145728 bytes"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	if _, serr := os.Stat(c.Dir); !os.IsNotExist(serr) || made != 0 {
		t.Errorf("left behind: dir %v, drives %d", serr, made)
	}
	if b, _ := os.ReadFile(dev); !bytes.Equal(b, make([]byte, 2<<20)) {
		t.Error("the volume was written")
	}
}

func TestAssembleRefusesBadDevices(t *testing.T) {
	sb, c, img := fixture(t, nil)
	c.Config.Devices = []podtypes.Device{{ContainerPath: "dev/x", HostPath: "/dev/loop1"}}
	a, _ := New(Config{DomainType: domain.TypeQEMU, Overlay: fakeOverlay, WriteISO: captureISO(new(*cloudinit.Contents))})
	_, err := a.Assemble(context.Background(), sb, c, img)
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), `volume device at "dev/x"`) {
		t.Fatalf("err %v, want InvalidArgument naming the device", err)
	}
	if _, serr := os.Stat(c.Dir); !os.IsNotExist(serr) {
		t.Errorf("VM directory left: %v", serr)
	}
}

// A persistent root's drive has no network-config, as in Virtlet: the
// next pod on the volume has the same instance-id, so cloud-init would
// keep the first pod's static addresses; DHCP gives each pod its own. The
// log says so, with a warning when extra networks' NICs depend on the
// image's DHCP.
func TestRootPVDHCP(t *testing.T) {
	needTool(t, "qemu-img")
	for _, tc := range []struct {
		name           string
		root, extraNIC bool
		ann            map[string]string
		wantNet        bool
		wantLog        string
	}{
		{name: "ephemeral", wantNet: true},
		{name: "pv", root: true, wantLog: "level=INFO msg=\"persistent root filesystem: no cloud-init network-config"},
		{name: "pv-net1", root: true, extraNIC: true, wantLog: "level=WARN msg=\"persistent root filesystem: no cloud-init network-config, the guest's DHCP configures its NICs; the extra networks'"},
		{name: "forced", root: true, ann: map[string]string{"VirtletForceDHCPNetworkConfig": "true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb, c, img := fixture(t, tc.ann)
			if tc.extraNIC {
				sb.Network.Interfaces = append(sb.Network.Interfaces, podtypes.Interface{Name: "net1", MAC: "02:00:00:00:00:02", MTU: 1500,
					IPs: []podtypes.IPConfig{{CIDR: "10.2.0.5/24"}}})
			}
			if tc.root {
				dev := filepath.Join(t.TempDir(), "pv-root")
				if err := os.WriteFile(dev, make([]byte, 8<<20), 0o600); err != nil {
					t.Fatal(err)
				}
				c.Config.Devices = []podtypes.Device{{ContainerPath: "/", HostPath: dev}}
			}
			var logs bytes.Buffer
			var drive *cloudinit.Contents
			a, _ := New(Config{DomainType: domain.TypeQEMU, WriteISO: captureISO(&drive), Overlay: fakeOverlay,
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			if _, err := a.Assemble(context.Background(), sb, c, img); err != nil {
				t.Fatal(err)
			}
			if _, got := drive.File(cloudinit.PathNoCloudNetwork); got != tc.wantNet {
				t.Errorf("network-config on the drive: %v, want %v", got, tc.wantNet)
			}
			got := strings.Contains(logs.String(), "persistent root filesystem")
			if tc.wantLog == "" && got || tc.wantLog != "" && !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log lacks %q or says it unasked:\n%s", tc.wantLog, logs.String())
			}
		})
	}
}
