package volume

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podvisor/podvisor/runtime/domain"
)

const pvRoot = "/var/lib/kubelet/pods/u1/volumeDevices/kubernetes.io~local-volume/pv-root"

func TestPlanDevices(t *testing.T) {
	for _, tc := range []struct {
		name      string
		devs      []Device
		wantRoot  *Device
		wantDisks []string // containerPath=serial
		wantErr   []string
	}{
		{name: "none"},
		{name: "a root and two disks", devs: []Device{
			{ContainerPath: "/dev/testpvc", HostPath: "/dev/loop3"},
			{ContainerPath: "/", HostPath: pvRoot},
			{ContainerPath: "/dev/disk/data", HostPath: "/dev/loop4"},
		}, wantRoot: &Device{ContainerPath: "/", HostPath: pvRoot},
			wantDisks: []string{"/dev/testpvc=" + diskSerial("/dev/testpvc"), "/dev/disk/data=" + diskSerial("/dev/disk/data")}},
		{name: "bad paths, all named", devs: []Device{
			{ContainerPath: "dev/x", HostPath: "/dev/loop3"},
			{ContainerPath: "/dev/../x", HostPath: "/dev/loop3"},
			{ContainerPath: "/dev/a\nb", HostPath: "/dev/loop3"},
			{ContainerPath: "/dev/y", HostPath: "loop3"},
			{ContainerPath: "/dev/z", HostPath: "/dev/loop5"},
			{ContainerPath: "/dev/z", HostPath: "/dev/loop6"},
			{ContainerPath: "/", HostPath: "/dev/loop7", ReadOnly: true},
		}, wantErr: []string{
			`volume device at "/" (host path "/dev/loop7"): a read-only volume cannot be the persistent root filesystem`,
			`volume device at "dev/x" (host path "/dev/loop3"): the device path is not an absolute, clean path`,
			`volume device at "/dev/../x"`,
			`volume device at "/dev/a\nb"`,
			`volume device at "/dev/y" (host path "loop3"): the host path is not an absolute path`,
			`volume device at "/dev/z" (host path "/dev/loop6"): another device has the same device path`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PlanDevices(tc.devs)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q:\n%v", w, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantRoot, p.Root); diff != "" {
				t.Errorf("root (-want +got):\n%s", diff)
			}
			var got []string
			for _, d := range p.Disks {
				got = append(got, d.ContainerPath+"="+d.Serial)
			}
			if diff := cmp.Diff(tc.wantDisks, got); diff != "" {
				t.Errorf("disks (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDiskSerialFitsTheDomain(t *testing.T) {
	s := diskSerial("/dev/testpvc")
	if s != diskSerial("/dev/testpvc") || s == diskSerial("/dev/testpvc2") || len(s) > 20 {
		t.Errorf("serial %q: stable per path, distinct between paths, at most 20 characters", s)
	}
	p, err := PlanDevices([]Device{{ContainerPath: "/dev/testpvc", HostPath: "/dev/loop3"}, {ContainerPath: "/dev/ro", HostPath: "/dev/loop4", ReadOnly: true}})
	if err != nil {
		t.Fatal(err)
	}
	want := []domain.Disk{{Path: "/dev/loop3", Format: domain.FormatRaw, Block: true, Serial: s},
		{Path: "/dev/loop4", Format: domain.FormatRaw, Block: true, Serial: diskSerial("/dev/ro"), ReadOnly: true}}
	if diff := cmp.Diff(want, p.VolumeDisks()); diff != "" {
		t.Errorf("disks (-want +got):\n%s", diff)
	}
}

func TestDeviceVolumeName(t *testing.T) {
	if got := (Device{HostPath: pvRoot}).Volume(); got != "persistent volume pv-root" {
		t.Errorf("got %q", got)
	}
	if got := (Device{HostPath: "/dev/loop3"}).Volume(); got != "device /dev/loop3" {
		t.Errorf("got %q", got)
	}
}

// TestGuestLinksScript checks the bootcmd entry parses with sh and quotes
// the paths
// (the guest tests run it: TestBlockVolumesInGuest).
func TestGuestLinksScript(t *testing.T) {
	p, err := PlanDevices([]Device{{ContainerPath: "/dev/it's", HostPath: "/dev/loop3"}})
	if err != nil {
		t.Fatal(err)
	}
	cmds := p.GuestLinks()
	if len(cmds) != 1 {
		t.Fatalf("GuestLinks: %q", cmds)
	}
	if !strings.Contains(cmds[0], `podvisor_link '`+diskSerial("/dev/it's")+`' '/dev/it'\''s' || rc=1`) {
		t.Errorf("the call is not quoted:\n%s", cmds[0])
	}
	if out, err := exec.Command("sh", "-n", "-c", cmds[0]).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v: %s", err, out)
	}
	if (&DevicePlan{}).GuestLinks() != nil {
		t.Error("links without disks")
	}
}

func TestVirtletFlexVolumeRefused(t *testing.T) {
	_, err := PlanMounts([]Mount{
		{ContainerPath: "/var/lib/docker", HostPath: "/var/lib/kubelet/pods/u1/volumes/virtlet~flexvolume_driver/vol1"},
		{ContainerPath: "/data", HostPath: "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/data"},
	}, func(string) (os.FileInfo, error) { return os.Stat(os.TempDir()) })
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{`volume mount at "/var/lib/docker"`, "virtlet/flexvolume_driver", "volumeMode: Block", "volumeDevices"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	if strings.Contains(err.Error(), `"/data"`) {
		t.Errorf("the emptyDir is named too: %v", err)
	}
	// Another vendor's flexVolume is a directory like any other.
	p, err := PlanMounts([]Mount{{ContainerPath: "/data", HostPath: "/var/lib/kubelet/pods/u1/volumes/acme~nfs/data"}},
		func(string) (os.FileInfo, error) { return os.Stat(os.TempDir()) })
	if err != nil || len(p.Shares) != 1 {
		t.Errorf("acme~nfs: %v, %+v", err, p)
	}
}

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestGuestLinksGolden keeps the bootcmd entry of two block volumes in
// testdata/guest-links.golden (regenerate with -update).
func TestGuestLinksGolden(t *testing.T) {
	p, err := PlanDevices([]Device{
		{ContainerPath: "/dev/testpvc", HostPath: "/dev/loop3"},
		{ContainerPath: "/dev/disk/data", HostPath: "/dev/loop4"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(p.GuestLinks(), "")
	golden := filepath.Join("testdata", "guest-links.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("GuestLinks (-golden +got):\n%s", d)
	}
}
