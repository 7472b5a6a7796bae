package domain

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/annotations"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// goldenCase is one domain built from annotations, resources and input tweaks.
type goldenCase struct {
	name string
	ann  map[string]string
	res  annotations.Resources
	env  []annotations.EnvVar
	// vols is the number of volume disks; ci the cloud-init image type
	// ("" = no cloud-init drive).
	vols  int
	ci    string
	dtype string
	tweak func(*Input)
}

const testContainerID = "3f1c9e7ab2d04c51a8e6f0b9d2c7e415a3b6c9d0e1f2a3b4c5d6e7f8091a2b3c"

// baseInput is what the pod layer would pass for a pod "vm" in "default".
func (c goldenCase) input(t testing.TB) Input {
	vm, err := annotations.Parse(c.ann, c.res, c.env)
	if err != nil {
		t.Fatalf("case %s: annotations.Parse: %v", c.name, err)
	}
	name := NameFor(testContainerID)
	in := Input{
		Name:          name,
		PodUID:        "b7d4c2a0-5e1f-4c3b-9a8d-7e6f5a4b3c2d",
		PodName:       "vm",
		PodNamespace:  "default",
		ContainerName: "vm",
		DomainType:    TypeKVM,
		VM:            vm,
		RootDisk:      Disk{Path: "/var/lib/podvisor/volumes/" + name + "/root.qcow2", Format: FormatQCOW2},
		ConsoleSocket: "/run/podvisor/console/" + name + ".sock",
		ConsoleLog:    "/var/lib/podvisor/console/" + name + ".log",
		DisplaySocket: "/var/lib/podvisor/volumes/" + name + "/vnc.sock",
	}
	if c.dtype != "" {
		in.DomainType = c.dtype
	}
	for i := 0; i < c.vols; i++ {
		in.VolumeDisks = append(in.VolumeDisks, Disk{
			Path:   fmt.Sprintf("/var/lib/podvisor/volumes/%s/vol-%d.raw", name, i),
			Format: FormatRaw,
		})
	}
	if c.ci != "" {
		in.CloudInitISO = "/var/lib/podvisor/cloudinit/" + name + "-" + c.ci + ".iso"
	}
	if c.tweak != nil {
		c.tweak(&in)
	}
	return in
}

// Dimensions of the annotations that change the domain together.
var (
	dimDriver = []string{"scsi", "virtio"}
	dimCI     = []string{"", "nocloud", "configdrive"}
	dimVols   = []int{0, 1, 3}
	dimCPU    = []string{"default", "host-model", "custom"}
	dimRoot   = []string{"", "10Gi"}
	dimType   = []string{TypeKVM, TypeQEMU}
)

const customCPU = "mode: custom\nmatch: exact\nmodel:\n  fallback: forbid\n  value: Westmere\nfeatures:\n- name: vmx\n  policy: optional\n- name: avx\n  policy: disable\n"

// combo is one point of the interaction space, as indexes into the dimensions.
type combo [6]int

func dimSizes() [6]int {
	return [6]int{len(dimDriver), len(dimCI), len(dimVols), len(dimCPU), len(dimRoot), len(dimType)}
}

// pairwiseCombos picks, greedily and deterministically, points of the
// interaction space until every pair of values of every two dimensions
// appears in at least one of them.
func pairwiseCombos() []combo {
	sizes := dimSizes()
	type pair struct{ d1, v1, d2, v2 int }
	uncovered := map[pair]bool{}
	for d1 := 0; d1 < 6; d1++ {
		for d2 := d1 + 1; d2 < 6; d2++ {
			for v1 := 0; v1 < sizes[d1]; v1++ {
				for v2 := 0; v2 < sizes[d2]; v2++ {
					uncovered[pair{d1, v1, d2, v2}] = true
				}
			}
		}
	}
	var all []combo
	var rec func(c combo, d int)
	rec = func(c combo, d int) {
		if d == 6 {
			all = append(all, c)
			return
		}
		for v := 0; v < sizes[d]; v++ {
			c[d] = v
			rec(c, d+1)
		}
	}
	rec(combo{}, 0)
	gain := func(c combo) int {
		n := 0
		for d1 := 0; d1 < 6; d1++ {
			for d2 := d1 + 1; d2 < 6; d2++ {
				if uncovered[pair{d1, c[d1], d2, c[d2]}] {
					n++
				}
			}
		}
		return n
	}
	var picked []combo
	for len(uncovered) > 0 {
		best, bestGain := combo{}, -1
		for _, c := range all {
			if g := gain(c); g > bestGain {
				best, bestGain = c, g
			}
		}
		picked = append(picked, best)
		for d1 := 0; d1 < 6; d1++ {
			for d2 := d1 + 1; d2 < 6; d2++ {
				delete(uncovered, pair{d1, best[d1], d2, best[d2]})
			}
		}
	}
	return picked
}

func comboCase(c combo) goldenCase {
	ann := map[string]string{annotations.KeyDiskDriver: dimDriver[c[0]]}
	ci := dimCI[c[1]]
	if ci != "" {
		ann[annotations.KeyCloudInitImageType] = ci
	}
	switch dimCPU[c[3]] {
	case "host-model":
		ann[annotations.KeyCPUModel] = "host-model"
	case "custom":
		ann[annotations.KeyLibvirtCPUSetting] = customCPU
	}
	root := dimRoot[c[4]]
	if root != "" {
		ann[annotations.KeyRootVolumeSize] = root
	}
	ciName := ci
	if ciName == "" {
		ciName = "none"
	}
	rootName := root
	if rootName == "" {
		rootName = "image"
	}
	return goldenCase{
		name: fmt.Sprintf("pair_disk-%s_ci-%s_vols-%d_cpu-%s_root-%s_%s",
			dimDriver[c[0]], ciName, dimVols[c[2]], dimCPU[c[3]], rootName, dimType[c[5]]),
		ann:   ann,
		vols:  dimVols[c[2]],
		ci:    ci,
		dtype: dimType[c[5]],
	}
}

func goldenCases() []goldenCase {
	one := func(k, v string) map[string]string { return map[string]string{k: v} }
	cases := []goldenCase{
		{name: "default", ci: "nocloud"},
		{name: "default_qemu", ci: "nocloud", dtype: TypeQEMU},
		// TCG's translation cache bounded; a KVM domain has none to bound.
		{name: "tcg-tb-cache-128", ci: "nocloud", dtype: TypeQEMU, tweak: func(in *Input) { in.TCGTranslationCacheMiB = 128 }},
		{name: "kvm-ignores-tb-cache", ci: "nocloud", tweak: func(in *Input) { in.TCGTranslationCacheMiB = 128 }},
		// Each domain-affecting annotation with each allowed value.
		{name: "vcpu-1", ann: one(annotations.KeyVCPUCount, "1"), ci: "nocloud"},
		{name: "vcpu-4", ann: one(annotations.KeyVCPUCount, "4"), ci: "nocloud"},
		{name: "vcpu-255", ann: one(annotations.KeyVCPUCount, "255"), ci: "nocloud"},
		{name: "disk-scsi", ann: one(annotations.KeyDiskDriver, "scsi"), ci: "nocloud", vols: 1},
		{name: "disk-virtio", ann: one(annotations.KeyDiskDriver, "virtio"), ci: "nocloud", vols: 1},
		{name: "cpumodel-empty", ann: one(annotations.KeyCPUModel, ""), ci: "nocloud"},
		{name: "cpumodel-host-model", ann: one(annotations.KeyCPUModel, "host-model"), ci: "nocloud"},
		{name: "cpusetting-host-passthrough", ann: one(annotations.KeyLibvirtCPUSetting, "mode: host-passthrough\n"), ci: "nocloud"},
		{name: "cpusetting-custom", ann: one(annotations.KeyLibvirtCPUSetting, customCPU), ci: "nocloud"},
		{name: "cpusetting-json-maximum", ann: one(annotations.KeyLibvirtCPUSetting, `{"mode": "maximum"}`), ci: "nocloud"},
		{name: "cpusetting-topology", ann: map[string]string{
			annotations.KeyVCPUCount:         "4",
			annotations.KeyLibvirtCPUSetting: "mode: host-model\ntopology:\n  sockets: 1\n  cores: 2\n  threads: 2\n",
		}, ci: "nocloud"},
		{name: "cpusetting-overrides-cpumodel", ann: map[string]string{
			annotations.KeyCPUModel:          "host-model",
			annotations.KeyLibvirtCPUSetting: "mode: host-passthrough\nfeatures:\n- name: vmx\n",
		}, ci: "nocloud"},
		{name: "rootvol-10Gi", ann: one(annotations.KeyRootVolumeSize, "10Gi"), ci: "nocloud"},
		{name: "rootvol-20G", ann: one(annotations.KeyRootVolumeSize, "20G"), ci: "nocloud"},
		{name: "ci-nocloud", ann: one(annotations.KeyCloudInitImageType, "nocloud"), ci: "nocloud"},
		{name: "ci-configdrive", ann: one(annotations.KeyCloudInitImageType, "configdrive"), ci: "configdrive"},
		{name: "ci-none", vols: 0},
		{name: "systemuuid", ann: one(annotations.KeySystemUUID, "6ED9E1C2-8F3B-4A57-9C0D-2B1E3F4A5B6C"), ci: "nocloud"},
		{name: "systemuuid_disk-virtio", ann: map[string]string{
			annotations.KeySystemUUID: "6ed9e1c2-8f3b-4a57-9c0d-2b1e3f4a5b6c",
			annotations.KeyDiskDriver: "virtio",
		}, ci: "configdrive", vols: 2},
		// Resource variants.
		{name: "mem-512Mi", res: annotations.Resources{MemoryLimitBytes: 512 << 20}, ci: "nocloud"},
		{name: "mem-4Gi", res: annotations.Resources{MemoryLimitBytes: 4 << 30}, ci: "nocloud"},
		{name: "mem-1G-rounded-up", res: annotations.Resources{MemoryLimitBytes: 1000000000}, ci: "nocloud"},
		{name: "cpu-shares", res: annotations.Resources{CPUShares: 512}, ci: "nocloud"},
		{name: "cpu-shares-capped", res: annotations.Resources{CPUShares: 262144}, ci: "nocloud"},
		{name: "cpu-quota-period", res: annotations.Resources{CPUShares: 1024, CPUPeriod: 100000, CPUQuota: 150000}, ci: "nocloud"},
		{name: "cpu-quota-default-period", res: annotations.Resources{CPUQuota: 50000}, ci: "nocloud"},
		{name: "cpu-quota-unlimited", res: annotations.Resources{CPUShares: 2, CPUPeriod: 100000, CPUQuota: -1}, ci: "nocloud"},
		{name: "resources-all_vcpu-2", ann: one(annotations.KeyVCPUCount, "2"),
			res: annotations.Resources{MemoryLimitBytes: 2 << 30, CPUShares: 2048, CPUPeriod: 50000, CPUQuota: 100000}, ci: "nocloud"},
		// Input variants: the seams the other packages fill.
		// The VM's cgroup: the wrapper's PODVISOR_CGROUP, no <cputune>
		// (the cgroup holds the limits), 2 of up to 4 vCPUs (hot-plug).
		{name: "input-cgroup_vcpu-2-of-4", res: annotations.Resources{CPUShares: 1024, CPUPeriod: 100000, CPUQuota: 150000}, ci: "nocloud", tweak: func(in *Input) {
			in.Cgroup = "/kubepods/burstable/pod0c9e/pv-0123456789abcdef"
			in.MaxVCPUs = 4
		}},
		// Under TCG every vCPU is present from boot, with a wrapper or
		// without (GuestOnlinedVCPUs): <vcpu>2</vcpu>, no current.
		{name: "input-cgroup_vcpu-1-of-2_qemu", ci: "nocloud", dtype: TypeQEMU, tweak: func(in *Input) {
			in.Cgroup, in.MaxVCPUs, in.Emulator = "/podvisor/pv-0123456789abcdef", 2, "/usr/local/bin/podvisor-vmwrapper"
		}},
		{name: "input-max-vcpus_qemu", ci: "nocloud", dtype: TypeQEMU, tweak: func(in *Input) { in.MaxVCPUs = 2 }},
		// A <cpu> topology fixes the vCPUs: no hot-plug.
		{name: "input-max-vcpus_cpusetting-topology", ann: map[string]string{
			annotations.KeyVCPUCount:         "2",
			annotations.KeyLibvirtCPUSetting: "topology: {sockets: 1, cores: 2, threads: 1}\n",
		}, ci: "nocloud", tweak: func(in *Input) { in.MaxVCPUs = 4 }},
		{name: "input-nic-qemu-env", ci: "nocloud", tweak: func(in *Input) {
			in.Emulator = "/usr/lib/podvisor/emulator"
			in.QEMUEnv = map[string]string{"PODVISOR_NETNS": "/var/run/netns/cni-1234", "PODVISOR_TAP": "tap0"}
			in.QEMUArgs = []string{"-device", "virtio-net-pci,netdev=pod0,mac=52:54:00:12:34:56,addr=0x1f"}
		}},
		{name: "input-nic-interface", ci: "nocloud", tweak: func(in *Input) {
			in.NICs = []libvirtxml.DomainInterface{{
				MAC:    &libvirtxml.DomainInterfaceMAC{Address: "52:54:00:12:34:56"},
				Source: &libvirtxml.DomainInterfaceSource{Ethernet: &libvirtxml.DomainInterfaceSourceEthernet{}},
				Target: &libvirtxml.DomainInterfaceTarget{Dev: "tap0", Managed: "no"},
				Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
			}}
		}},
		{name: "input-block-volumes", ann: one(annotations.KeyDiskDriver, "virtio"), ci: "nocloud", tweak: func(in *Input) {
			in.VolumeDisks = []Disk{
				{Path: "/dev/mapper/pvc-1", Format: FormatRaw, Block: true, Serial: "pvc-1"},
				{Path: "/var/lib/kubelet/pods/x/volumes/data.qcow2", Format: FormatQCOW2, ReadOnly: true, Serial: "data"},
			}
		}},
		{name: "input-block-root", ci: "nocloud", tweak: func(in *Input) {
			in.RootDisk = Disk{Path: "/dev/mapper/pvc-root", Format: FormatRaw, Block: true}
		}},
		// A persistent root volume: the guest sees the bytes after the
		// marker (runtime/volume's RootHeaderSize).
		{name: "input-block-root-slice", ann: one(annotations.KeyDiskDriver, "virtio"), ci: "nocloud", tweak: func(in *Input) {
			in.RootDisk = Disk{Path: "/var/lib/kubelet/pods/u/volumeDevices/kubernetes.io~local-volume/pv-root", Format: FormatRaw, Block: true,
				Offset: 1 << 20, Size: 63 << 20}
			in.VolumeDisks = []Disk{{Path: "/dev/loop7", Format: FormatRaw, Block: true, Serial: "podvisor-1a2b3c4d"}}
		}},
		{name: "input-console-pty-nolog", ci: "nocloud", tweak: func(in *Input) {
			in.ConsoleSocket, in.ConsoleLog = "", ""
		}},
		{name: "input-agent-socket_machine-q35", ci: "nocloud", tweak: func(in *Input) {
			in.GuestAgentSocket = "/run/podvisor/agent/" + in.Name + ".sock"
			in.Machine = "q35"
		}},
		{name: "input-attempt-1", ci: "nocloud", tweak: func(in *Input) { in.Attempt = 1 }},
		{name: "input-no-display", ci: "nocloud", tweak: func(in *Input) { in.DisplaySocket = "" }},
		// Volumes shared over virtio-9p: read-write, read-only, several
		// next to disks and a NIC.
		{name: "input-9p-rw", ci: "nocloud", tweak: func(in *Input) {
			in.Filesystems = []Filesystem{{HostPath: "/var/lib/kubelet/pods/b7d4c2a0/volumes/kubernetes.io~empty-dir/cache", Tag: "cache"}}
		}},
		{name: "input-9p-ro", ci: "nocloud", tweak: func(in *Input) {
			in.Filesystems = []Filesystem{{HostPath: "/srv/shared/config", Tag: "config", ReadOnly: true}}
		}},
		// A share on a filesystem without user xattrs (a Memory emptyDir
		// before Linux 6.6): mapped-file through a -set before the
		// caller's own qemu:args.
		{name: "input-9p-metadata-files", ci: "nocloud", tweak: func(in *Input) {
			in.Filesystems = []Filesystem{
				{HostPath: "/var/lib/kubelet/pods/b7d4c2a0/volumes/kubernetes.io~empty-dir/cache", Tag: "cache"},
				{HostPath: "/var/lib/kubelet/pods/b7d4c2a0/volumes/kubernetes.io~empty-dir/mem", Tag: "mem", MetadataInFiles: true},
			}
			in.QEMUArgs = []string{"-msg", "timestamp=on"}
		}},
		{name: "input-9p-several", ann: one(annotations.KeyDiskDriver, "virtio"), ci: "configdrive", vols: 1, tweak: func(in *Input) {
			in.Filesystems = []Filesystem{
				{HostPath: "/var/lib/kubelet/pods/b7d4c2a0/volumes/kubernetes.io~empty-dir/cache", Tag: "cache"},
				{HostPath: "/srv/shared/config", Tag: "config", ReadOnly: true},
				{HostPath: "/var/lib/kubelet/pods/b7d4c2a0/volumes/kubernetes.io~csi/pvc-1/mount", Tag: "mount-3b9f1c2e"},
			}
			in.NICs = []libvirtxml.DomainInterface{{
				MAC:    &libvirtxml.DomainInterfaceMAC{Address: "52:54:00:12:34:56"},
				Source: &libvirtxml.DomainInterfaceSource{Ethernet: &libvirtxml.DomainInterfaceSourceEthernet{}},
				Target: &libvirtxml.DomainInterfaceTarget{Dev: "tap0", Managed: "no"},
				Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
			}}
		}},
		{name: "input-scsi-vols-19", ci: "nocloud", vols: 18},
		{name: "input-virtio-vols-19", ann: one(annotations.KeyDiskDriver, "virtio"), ci: "nocloud", vols: 18},
	}
	// Annotations that only cloud-init reads must leave the domain alone:
	// one case with all of them, compared with "default".
	cases = append(cases, goldenCase{name: "cloudinit-only-annotations", ci: "nocloud", ann: map[string]string{
		annotations.KeyCloudInitMetaData:               "local-hostname: other",
		annotations.KeyCloudInitUserData:               "packages: [nginx]",
		annotations.KeyCloudInitUserDataOverwrite:      "true",
		annotations.KeyCloudInitUserDataScript:         "#!/bin/sh\necho hi\n",
		annotations.KeyCloudInitUserDataSource:         "configmap/ud",
		annotations.KeyCloudInitUserDataSourceKey:      "user-data",
		annotations.KeyCloudInitUserDataSourceEncoding: "base64",
		annotations.KeySSHKeys:                         "ssh-ed25519 AAAA user@host",
		annotations.KeySSHKeySource:                    "secret/keys/authorized_keys",
		annotations.KeyFilesFromDataSource:             "configmap/files",
		annotations.KeyChown9pfsMounts:                 "true",
		annotations.KeyForceDHCPNetworkConfig:          "true",
		annotations.KeyTargetRuntime:                   "virtlet.cloud",
	}})
	for _, c := range pairwiseCombos() {
		cases = append(cases, comboCase(c))
	}
	return cases
}

func TestGolden(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range goldenCases() {
		if seen[c.name] {
			t.Fatalf("duplicate golden case %s", c.name)
		}
		seen[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			d, err := Build(c.input(t))
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			got, err := Marshal(d)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got += "\n"
			path := filepath.Join("testdata", c.name+".xml")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("reading golden file (run go test ./runtime/domain/... -update to create it): %v", err)
			}
			if diff := cmp.Diff(strings.Split(string(want), "\n"), strings.Split(got, "\n")); diff != "" {
				t.Errorf("%s differs from the built domain (-golden +built); run with -update if intended:\n%s", path, diff)
			}
		})
	}
	// A golden file no case writes any more is stale.
	files, _ := filepath.Glob(filepath.Join("testdata", "*.xml"))
	var stale []string
	for _, f := range files {
		if !seen[strings.TrimSuffix(filepath.Base(f), ".xml")] {
			stale = append(stale, f)
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 && !*update {
		t.Errorf("golden files without a case (delete them): %v", stale)
	}
}

// The pairwise generator must cover every pair of values of every two
// interacting dimensions, or the golden set misses an interaction.
func TestPairwiseCoverage(t *testing.T) {
	combos := pairwiseCombos()
	sizes := dimSizes()
	for d1 := 0; d1 < 6; d1++ {
		for d2 := d1 + 1; d2 < 6; d2++ {
			for v1 := 0; v1 < sizes[d1]; v1++ {
				for v2 := 0; v2 < sizes[d2]; v2++ {
					found := false
					for _, c := range combos {
						if c[d1] == v1 && c[d2] == v2 {
							found = true
							break
						}
					}
					if !found {
						t.Errorf("no case has dimension %d = %d together with dimension %d = %d", d1, v1, d2, v2)
					}
				}
			}
		}
	}
	if len(combos) >= 216 {
		t.Errorf("%d combinations: the generator degenerated to the full product", len(combos))
	}
}
