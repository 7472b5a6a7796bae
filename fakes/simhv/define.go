package simhv

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/bits"
	"strings"

	"github.com/google/uuid"
	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/errdefs"
)

// AgentChannel is the virtio channel target name of the QEMU guest agent.
const AgentChannel = "org.qemu.guest_agent.0"

// config is what the simulation uses from a definition.
type config struct {
	memoryBytes uint64 // <memory>: the most; the guest starts with currentMemory
	curMemory   uint64
	vcpus       int // online at start (<vcpu current>)
	maxVCPUs    int
	agent       bool // has the guest agent channel
	serial      bool // has a serial port or console
	display     bool // has a VNC display
	disks       []simDisk
}

// simDisk is a disk of the definition, for Stats.
type simDisk struct {
	target, path string
}

// definition is a validated domain definition.
type definition struct {
	dom  *libvirtxml.Domain
	name string
	uuid string // canonical, or "" when the XML has none
	xml  string // normalised XML
	cfg  config
}

// acceptedDiskBuses are the disk buses libvirt knows.
var acceptedDiskBuses = []string{"ide", "fdc", "scsi", "virtio", "xen", "usb", "uml", "sata", "sd"}

// parseDefinition checks a domain XML the way libvirt's parser does for the
// parts the simulation cares about. Errors are of kind
// errdefs.ErrInvalidArgument and read like libvirt's.
func parseDefinition(doc string) (*definition, error) {
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(doc); err != nil {
		return nil, errdefs.InvalidArgumentf("XML error: parsing domain XML: %v", err)
	}
	p := &definition{dom: &dom, name: dom.Name}
	if dom.Name == "" {
		return nil, errdefs.InvalidArgumentf("XML error: missing name information in <domain>")
	}
	if strings.Contains(dom.Name, "/") {
		return nil, errdefs.InvalidArgumentf("invalid argument: name '%s' cannot contain '/'", dom.Name)
	}
	switch dom.Type {
	case "kvm", "qemu":
	case "":
		return nil, errdefs.InvalidArgumentf("XML error: missing domain type attribute in domain '%s' (accepted: kvm, qemu)", dom.Name)
	default:
		return nil, errdefs.InvalidArgumentf("unsupported configuration: domain type '%s' of domain '%s' is not supported (accepted: kvm, qemu)", dom.Type, dom.Name)
	}
	if dom.Memory == nil || dom.Memory.Value == 0 {
		return nil, errdefs.InvalidArgumentf("XML error: Memory size must be specified via <memory> or in the <numa> configuration (domain '%s')", dom.Name)
	}
	mem, err := scaleMemory(uint64(dom.Memory.Value), dom.Memory.Unit)
	if err != nil {
		return nil, errdefs.InvalidArgumentf("invalid argument: <memory> of domain '%s': %v", dom.Name, err)
	}
	p.cfg.memoryBytes, p.cfg.curMemory = mem, mem
	if cm := dom.CurrentMemory; cm != nil && cm.Value > 0 {
		if cur, err := scaleMemory(uint64(cm.Value), cm.Unit); err == nil && cur < mem {
			p.cfg.curMemory = cur
		}
	}
	if dom.UUID != "" {
		id, ok := parseUUID(dom.UUID)
		if !ok {
			return nil, errdefs.InvalidArgumentf("XML error: malformed uuid element '%s' in domain '%s'", dom.UUID, dom.Name)
		}
		dom.UUID = id
		p.uuid = id
	}
	p.cfg.vcpus, p.cfg.maxVCPUs = 1, 1
	if dom.VCPU != nil && dom.VCPU.Value > 0 {
		p.cfg.vcpus, p.cfg.maxVCPUs = int(dom.VCPU.Value), int(dom.VCPU.Value)
		if c := int(dom.VCPU.Current); c > 0 {
			if c > p.cfg.maxVCPUs {
				return nil, errdefs.InvalidArgumentf("unsupported configuration: requested vcpus is greater than max allowable vcpus for the live domain: %d > %d", c, p.cfg.maxVCPUs)
			}
			p.cfg.vcpus = c
		}
	}
	if err := checkDisks(&dom); err != nil {
		return nil, err
	}
	if dom.Devices != nil {
		for _, disk := range dom.Devices.Disks {
			p.cfg.disks = append(p.cfg.disks, simDisk{target: disk.Target.Dev, path: diskSource(disk)})
		}
		p.cfg.serial = len(dom.Devices.Serials) > 0 || len(dom.Devices.Consoles) > 0
		for _, g := range dom.Devices.Graphics {
			p.cfg.display = p.cfg.display || g.VNC != nil
		}
		for _, ch := range dom.Devices.Channels {
			if ch.Target != nil && ch.Target.VirtIO != nil && ch.Target.VirtIO.Name == AgentChannel {
				p.cfg.agent = true
			}
		}
	}
	if p.uuid != "" {
		if err := p.marshal(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *definition) setUUID(id string) error {
	p.uuid = id
	p.dom.UUID = id
	return p.marshal()
}

func (p *definition) marshal() error {
	x, err := p.dom.Marshal()
	if err != nil {
		return fmt.Errorf("marshalling domain '%s': %w", p.name, err)
	}
	p.xml = x
	return nil
}

func checkDisks(dom *libvirtxml.Domain) error {
	if dom.Devices == nil {
		return nil
	}
	seen := map[string]string{} // target dev -> source
	for _, disk := range dom.Devices.Disks {
		src := diskSource(disk)
		if disk.Target == nil || disk.Target.Dev == "" {
			return errdefs.InvalidArgumentf("XML error: missing target information for device %s in domain '%s'", src, dom.Name)
		}
		dev := disk.Target.Dev
		if bus := disk.Target.Bus; bus != "" && !contains(acceptedDiskBuses, bus) {
			return errdefs.InvalidArgumentf("unsupported configuration: unknown disk bus type '%s' for disk '%s' in domain '%s' (accepted: %s)",
				bus, dev, dom.Name, strings.Join(acceptedDiskBuses, ", "))
		}
		if prev, dup := seen[dev]; dup {
			return errdefs.InvalidArgumentf("XML error: target '%s' duplicated for disk sources '%s' and '%s' in domain '%s'", dev, prev, src, dom.Name)
		}
		seen[dev] = src
	}
	return nil
}

func diskSource(d libvirtxml.DomainDisk) string {
	if s := d.Source; s != nil {
		switch {
		case s.File != nil:
			return s.File.File
		case s.Block != nil:
			return s.Block.Dev
		case s.Network != nil:
			return s.Network.Name
		}
	}
	return "<null>"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// scaleMemory converts a libvirt memory value and unit to bytes. libvirt's
// default unit for <memory> is KiB; "KB", "MB"... are powers of 1000 and
// "K", "KiB", "M", "MiB"... powers of 1024, case-insensitively.
func scaleMemory(v uint64, unit string) (uint64, error) {
	u := strings.ToLower(unit)
	var scale uint64
	switch {
	case u == "":
		scale = 1024
	case u == "b" || u == "bytes":
		scale = 1
	default:
		power := strings.IndexByte("kmgtpe", u[0]) + 1
		if power == 0 {
			return 0, fmt.Errorf("unknown suffix '%s'", unit)
		}
		var base uint64
		switch u[1:] {
		case "", "ib":
			base = 1024
		case "b":
			base = 1000
		default:
			return 0, fmt.Errorf("unknown suffix '%s'", unit)
		}
		scale = 1
		for range power {
			scale *= base
		}
	}
	hi, lo := bits.Mul64(v, scale)
	if hi != 0 || lo > math.MaxInt64 {
		return 0, fmt.Errorf("value %d %s is too large", v, unit)
	}
	return lo, nil
}

// parseUUID accepts what libvirt's virUUIDParse accepts: 32 hex digits,
// optionally with '-' between them and surrounding spaces. It returns the
// canonical form.
func parseUUID(s string) (string, bool) {
	s = strings.TrimSpace(s)
	var buf [16]byte
	n := 0
	for i := 0; i < len(s); {
		if s[i] == '-' {
			i++
			continue
		}
		if i+1 >= len(s) || n == 16 {
			return "", false
		}
		if _, err := hex.Decode(buf[n:n+1], []byte(s[i:i+2])); err != nil {
			return "", false
		}
		n++
		i += 2
	}
	if n != 16 {
		return "", false
	}
	id, err := uuid.FromBytes(buf[:])
	if err != nil {
		return "", false
	}
	return id.String(), true
}

func newUUID() (string, error) {
	id, err := uuid.NewRandom()
	if err != nil {
		return "", err
	}
	return id.String(), nil
}
