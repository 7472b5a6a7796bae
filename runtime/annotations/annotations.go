// Package annotations turns a pod's Virtlet-compatible annotations, the
// container's resources and its environment into one validated, typed
// VMConfig. It knows nothing of CRI or libvirt calls: the CRI layer passes
// plain values in, runtime/domain and runtime/cloudinit read VMConfig out.
//
// Every rejected value becomes an *Error naming the annotation, the value
// and what is accepted; Parse reports all of them at once.
package annotations

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"libvirt.org/go/libvirtxml"
	"sigs.k8s.io/yaml"
)

// Annotation keys, spelled as Virtlet spelled them.
const (
	KeyTargetRuntime                   = "kubernetes.io/target-runtime"
	KeyVCPUCount                       = "VirtletVCPUCount"
	KeyDiskDriver                      = "VirtletDiskDriver"
	KeyCPUModel                        = "VirtletCPUModel"
	KeyLibvirtCPUSetting               = "VirtletLibvirtCPUSetting"
	KeyRootVolumeSize                  = "VirtletRootVolumeSize"
	KeyCloudInitImageType              = "VirtletCloudInitImageType"
	KeyCloudInitMetaData               = "VirtletCloudInitMetaData"
	KeyCloudInitUserData               = "VirtletCloudInitUserData"
	KeyCloudInitUserDataOverwrite      = "VirtletCloudInitUserDataOverwrite"
	KeyCloudInitUserDataScript         = "VirtletCloudInitUserDataScript"
	KeyCloudInitUserDataSource         = "VirtletCloudInitUserDataSource"
	KeyCloudInitUserDataSourceKey      = "VirtletCloudInitUserDataSourceKey"
	KeyCloudInitUserDataSourceEncoding = "VirtletCloudInitUserDataSourceEncoding"
	KeySSHKeys                         = "VirtletSSHKeys"
	KeySSHKeySource                    = "VirtletSSHKeySource"
	KeyFilesFromDataSource             = "VirtletFilesFromDataSource"
	KeyChown9pfsMounts                 = "VirtletChown9pfsMounts"
	KeySystemUUID                      = "VirtletSystemUUID"
	KeyForceDHCPNetworkConfig          = "VirtletForceDHCPNetworkConfig"
)

// TargetRuntimeVirtlet is the value of KeyTargetRuntime that routes a pod to
// podvisor through the proxy.
const TargetRuntimeVirtlet = "virtlet.cloud"

// Defaults and limits.
const (
	DefaultVCPUCount   = 1
	MaxVCPUCount       = 255
	DefaultMemoryBytes = 1024 << 20 // guest RAM when the container has no memory limit
	MinMemoryBytes     = 16 << 20   // below this no guest boots; refuse early
	// DefaultSSHKeySourceKey is the key read from the object named by
	// VirtletSSHKeySource when the annotation names none.
	DefaultSSHKeySourceKey = "authorized_keys"
	// Bounds accepted for the CPU resources (cgroup shares; CFS period and
	// quota in microseconds, as libvirt's <cputune> accepts them).
	MinCPUShares = 2
	MaxCPUShares = 262144
	MinCPUPeriod = 1000
	MaxCPUPeriod = 1000000
	MinCPUQuota  = 1000
	MaxCPUQuota  = 17592186044415
)

// DiskDriver is the bus of every disk and of the cloud-init drive.
type DiskDriver string

const (
	DiskDriverSCSI   DiskDriver = "scsi"   // sdX on one virtio-scsi controller (default)
	DiskDriverVirtio DiskDriver = "virtio" // vdX, one virtio-blk device each
)

// CloudInitImageType is the format of the cloud-init drive.
type CloudInitImageType string

const (
	CloudInitNoCloud     CloudInitImageType = "nocloud"     // label cidata (default)
	CloudInitConfigDrive CloudInitImageType = "configdrive" // label config-2
)

// CPUModel is the VirtletCPUModel value.
type CPUModel string

const (
	CPUModelDefault   CPUModel = ""           // the hypervisor's default CPU
	CPUModelHostModel CPUModel = "host-model" // the host's CPU model (allows nested virtualization)
)

// DataSourceKind is the kind of Kubernetes object a data source names.
type DataSourceKind string

const (
	DataSourceConfigMap DataSourceKind = "configmap"
	DataSourceSecret    DataSourceKind = "secret"
)

// DataSourceRef names a ConfigMap or Secret in the pod's namespace, and
// optionally one key of it.
type DataSourceRef struct {
	Kind DataSourceKind
	Name string
	Key  string // "" = the whole object
}

func (r DataSourceRef) String() string {
	s := string(r.Kind) + "/" + r.Name
	if r.Key != "" {
		s += "/" + r.Key
	}
	return s
}

// Encoding is how the value under VirtletCloudInitUserDataSourceKey is encoded.
type Encoding string

const (
	EncodingPlain  Encoding = "plain"
	EncodingBase64 Encoding = "base64"
)

// Resources are the container's Linux resources as the CRI passes them.
// Zero means unset.
type Resources struct {
	MemoryLimitBytes int64
	CPUShares        int64
	CPUPeriod        int64 // microseconds
	CPUQuota         int64 // microseconds per period; <= 0 = no limit
}

// EnvVar is one container environment variable.
type EnvVar struct {
	Name  string
	Value string
}

// CloudInit holds the cloud-init annotations, parsed but not resolved:
// runtime/cloudinit fetches the data sources and builds the drive.
type CloudInit struct {
	ImageType CloudInitImageType
	// MetaData overrides meta-data keys; nil when not given.
	MetaData map[string]any
	// UserData is deep-merged into the generated user-data (replaces it when
	// UserDataOverwrite); nil when not given.
	UserData          map[string]any
	UserDataOverwrite bool
	// UserDataScript is used verbatim as user-data when not empty.
	UserDataScript string
	// UserDataSource is the object whose keys form the base user-data.
	UserDataSource *DataSourceRef
	// UserDataSourceKey, when set, names the one key of UserDataSource that
	// holds the whole user-data, decoded with UserDataSourceEncoding.
	UserDataSourceKey      string
	UserDataSourceEncoding Encoding
	// SSHKeys are the keys of VirtletSSHKeys, one per non-empty line.
	SSHKeys []string
	// SSHKeySource adds keys from an object; Key defaults to DefaultSSHKeySourceKey.
	SSHKeySource *DataSourceRef
	// FilesFromDataSource names an object whose keys are files for the guest.
	FilesFromDataSource    *DataSourceRef
	ForceDHCPNetworkConfig bool
}

// VMConfig is everything the annotations, resources and env say about one VM.
type VMConfig struct {
	VCPUCount int
	// VCPUCountFixed: VirtletVCPUCount gave the count, so a new CPU limit
	// (in-place resize) changes the vCPUs' time, not their number.
	VCPUCountFixed bool
	DiskDriver     DiskDriver
	CPUModel       CPUModel
	// CPUSetting replaces the whole <cpu> element when not nil.
	CPUSetting *libvirtxml.DomainCPU
	// MemoryBytes is the guest RAM, a whole number of MiB.
	MemoryBytes int64
	// CPU resources, validated; 0 = unset.
	CPUShares int64
	CPUPeriod int64
	CPUQuota  int64
	// RootVolumeSize in bytes; 0 = the image's virtual size.
	RootVolumeSize int64
	// SystemUUID is the canonical lower-case UUID of VirtletSystemUUID, or "".
	SystemUUID      string
	Chown9pfsMounts bool
	CloudInit       CloudInit
	Env             []EnvVar
	// Unknown lists annotations that start with "Virtlet" but that podvisor
	// does not know (typos, retired ones), sorted; the caller may log them.
	Unknown []string
}

var known = map[string]bool{
	KeyVCPUCount: true, KeyDiskDriver: true, KeyCPUModel: true, KeyLibvirtCPUSetting: true,
	KeyRootVolumeSize: true, KeyCloudInitImageType: true, KeyCloudInitMetaData: true,
	KeyCloudInitUserData: true, KeyCloudInitUserDataOverwrite: true, KeyCloudInitUserDataScript: true,
	KeyCloudInitUserDataSource: true, KeyCloudInitUserDataSourceKey: true,
	KeyCloudInitUserDataSourceEncoding: true, KeySSHKeys: true, KeySSHKeySource: true,
	KeyFilesFromDataSource: true, KeyChown9pfsMounts: true, KeySystemUUID: true,
	KeyForceDHCPNetworkConfig: true,
}

// parser collects errors while filling a VMConfig.
type parser struct {
	ann  map[string]string
	errs []error
}

func (p *parser) fail(key, value, accepted string, err error) {
	p.errs = append(p.errs, &Error{Annotation: key, Value: value, Accepted: accepted, Err: err})
}

// Parse validates the pod annotations, the container resources and env and
// returns the VM configuration. On any bad value it returns nil and an error
// that joins one *Error per bad value.
func Parse(podAnnotations map[string]string, res Resources, env []EnvVar) (*VMConfig, error) {
	p := &parser{ann: podAnnotations}
	c := &VMConfig{}

	// The resources bound the vCPU count, so they are read first; their
	// errors are reported after the annotations', as ever.
	rp := &parser{ann: podAnnotations}
	rp.resources(c, res)
	c.VCPUCount, c.VCPUCountFixed = p.vcpuCount(c)
	c.DiskDriver = DiskDriver(p.enum(KeyDiskDriver, string(DiskDriverSCSI), false, string(DiskDriverSCSI), string(DiskDriverVirtio)))
	c.CPUModel = CPUModel(p.enum(KeyCPUModel, "", false, "", string(CPUModelHostModel)))
	c.CPUSetting = p.cpuSetting(c.VCPUCount)
	c.RootVolumeSize = p.rootVolumeSize()
	c.SystemUUID = p.systemUUID()
	c.Chown9pfsMounts = p.boolean(KeyChown9pfsMounts)

	ci := &c.CloudInit
	// Virtlet lower-cased the image type, so "NoCloud" keeps working.
	ci.ImageType = CloudInitImageType(p.enum(KeyCloudInitImageType, string(CloudInitNoCloud), true, string(CloudInitNoCloud), string(CloudInitConfigDrive)))
	ci.MetaData = p.yamlMap(KeyCloudInitMetaData)
	ci.UserData = p.yamlMap(KeyCloudInitUserData)
	ci.UserDataOverwrite = p.boolean(KeyCloudInitUserDataOverwrite)
	ci.UserDataScript = p.ann[KeyCloudInitUserDataScript]
	ci.UserDataSource = p.dataSource(KeyCloudInitUserDataSource, false)
	ci.UserDataSourceKey = p.objectKey(KeyCloudInitUserDataSourceKey)
	if ci.UserDataSourceKey != "" && ci.UserDataSource == nil {
		if _, given := p.ann[KeyCloudInitUserDataSource]; !given {
			p.fail(KeyCloudInitUserDataSourceKey, ci.UserDataSourceKey,
				"a key of the object named by "+KeyCloudInitUserDataSource+", which must be set too", nil)
		}
	}
	ci.UserDataSourceEncoding = Encoding(p.enum(KeyCloudInitUserDataSourceEncoding, string(EncodingPlain), false, string(EncodingPlain), string(EncodingBase64)))
	ci.SSHKeys = p.sshKeys()
	ci.SSHKeySource = p.dataSource(KeySSHKeySource, true)
	if ci.SSHKeySource != nil && ci.SSHKeySource.Key == "" {
		ci.SSHKeySource.Key = DefaultSSHKeySourceKey
	}
	ci.FilesFromDataSource = p.dataSource(KeyFilesFromDataSource, false)
	ci.ForceDHCPNetworkConfig = p.boolean(KeyForceDHCPNetworkConfig)

	p.errs = append(p.errs, rp.errs...)
	c.Env = p.env(env)

	for k := range podAnnotations {
		if strings.HasPrefix(k, "Virtlet") && !known[k] {
			c.Unknown = append(c.Unknown, k)
		}
	}
	sort.Strings(c.Unknown)

	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return c, nil
}

// vcpuCount is VirtletVCPUCount, which the container's CPU limit bounds;
// without the annotation a CPU limit gives the count (CPUsOfLimit) and
// DefaultVCPUCount otherwise. fixed reports the annotation was given.
func (p *parser) vcpuCount(c *VMConfig) (n int, fixed bool) {
	limit := CPUsOfLimit(c.CPUQuota, c.CPUPeriod)
	v, ok := p.ann[KeyVCPUCount]
	if !ok || strings.TrimSpace(v) == "" {
		if limit > 0 {
			return limit, false
		}
		return DefaultVCPUCount, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 || n > MaxVCPUCount {
		p.fail(KeyVCPUCount, v, fmt.Sprintf("an integer from 1 to %d (default %d)", MaxVCPUCount, DefaultVCPUCount), nil)
		return DefaultVCPUCount, true
	}
	if limit > 0 && n > limit {
		p.fail(KeyVCPUCount, v, fmt.Sprintf("at most %d", limit), CPULimitError(n, c.CPUQuota, c.CPUPeriod))
	}
	return n, true
}

// CPUsOfLimit is how many vCPUs a CPU limit allows: quota/period rounded
// up (a limit of 1.5 CPUs gives 2 vCPUs sharing 1.5 CPUs of time), at
// most MaxVCPUCount; 0 when there is no limit. period 0 is kubelet's
// 100000 µs.
func CPUsOfLimit(quota, period int64) int {
	if quota <= 0 {
		return 0
	}
	if period <= 0 {
		period = 100000
	}
	n := (quota + period - 1) / period
	return int(min(n, MaxVCPUCount))
}

// CPULimitError says that n vCPUs are more than the CPU limit allows.
func CPULimitError(n int, quota, period int64) error {
	if period <= 0 {
		period = 100000
	}
	return fmt.Errorf("%d vCPUs are more than the container's CPU limit allows (%s %d / %s %d = %.3g CPUs, so at most %d vCPUs): lower %s or raise the limit",
		n, FieldCPUQuota, quota, FieldCPUPeriod, period, float64(quota)/float64(period), CPUsOfLimit(quota, period), KeyVCPUCount)
}

// enum returns the annotation's value if it is one of allowed (the first
// allowed value being the default, used when the annotation is absent or empty).
func (p *parser) enum(key, def string, fold bool, allowed ...string) string {
	v, ok := p.ann[key]
	if !ok {
		return def
	}
	got := v
	if fold {
		got = strings.ToLower(got)
	}
	if got == "" {
		return def
	}
	for _, a := range allowed {
		if got == a {
			return a
		}
	}
	p.fail(key, v, describe(def, allowed), nil)
	return def
}

// describe renders allowed values as `"a" (default) or "b"`.
func describe(def string, allowed []string) string {
	var parts []string
	for _, a := range allowed {
		s := strconv.Quote(a)
		switch {
		case a == "" && a == def:
			s = `"" (empty, the default)`
		case a == "":
			s = `"" (empty)`
		case a == def:
			s += " (default)"
		}
		parts = append(parts, s)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " or " + parts[len(parts)-1]
}

func (p *parser) boolean(key string) bool {
	v, ok := p.ann[key]
	if !ok {
		return false
	}
	switch v {
	case "true":
		return true
	case "false", "":
		return false
	}
	p.fail(key, v, `"true" or "false" (default)`, nil)
	return false
}

func (p *parser) rootVolumeSize() int64 {
	v, ok := p.ann[KeyRootVolumeSize]
	if !ok || strings.TrimSpace(v) == "" {
		return 0
	}
	n, err := parseQuantity(v)
	if err != nil {
		p.fail(KeyRootVolumeSize, v, `a Kubernetes quantity of bytes such as "10Gi" or "20G" (the disk is never smaller than the image)`, err)
		return 0
	}
	return n
}

func (p *parser) systemUUID() string {
	v, ok := p.ann[KeySystemUUID]
	if !ok || strings.TrimSpace(v) == "" {
		return ""
	}
	u, err := uuid.Parse(strings.TrimSpace(v))
	if err != nil {
		p.fail(KeySystemUUID, v, `a UUID such as "4f8b1f2e-3c1a-4d2b-9e3f-0a1b2c3d4e5f"`, err)
		return ""
	}
	return u.String()
}

// yamlMap parses a YAML or JSON mapping; an empty value means none.
func (p *parser) yamlMap(key string) map[string]any {
	v, ok := p.ann[key]
	if !ok || strings.TrimSpace(v) == "" {
		return nil
	}
	const accepted = "a YAML or JSON mapping (key: value)"
	var out any
	if err := yaml.Unmarshal([]byte(v), &out); err != nil {
		p.fail(key, v, accepted, yamlError(err))
		return nil
	}
	switch m := out.(type) {
	case map[string]any:
		return m
	case nil:
		return nil
	default:
		p.fail(key, v, accepted, fmt.Errorf("the document is a %s, not a mapping", kindOf(out)))
		return nil
	}
}

func kindOf(v any) string {
	switch v.(type) {
	case []any:
		return "list"
	case string:
		return "string"
	case bool:
		return "boolean"
	case float64, int64, int:
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

// yamlError strips sigs.k8s.io/yaml's conversion prefixes, keeping the
// line number of the parser's message.
func yamlError(err error) error {
	msg := err.Error()
	for _, prefix := range []string{"error converting YAML to JSON: ", "error unmarshaling JSON: ", "while decoding JSON: "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	return errors.New(msg)
}

func (p *parser) sshKeys() []string {
	v, ok := p.ann[KeySSHKeys]
	if !ok {
		return nil
	}
	var keys []string
	for _, line := range strings.Split(v, "\n") {
		if k := strings.TrimSpace(line); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// dataSource parses "configmap/NAME", "secret/NAME" and, when withKey,
// "KIND/NAME/KEY".
func (p *parser) dataSource(key string, withKey bool) *DataSourceRef {
	v, ok := p.ann[key]
	if !ok || strings.TrimSpace(v) == "" {
		return nil
	}
	accepted := `"configmap/NAME" or "secret/NAME" (NAME of an object in the pod's namespace)`
	if withKey {
		accepted = `"configmap/NAME", "secret/NAME", "configmap/NAME/KEY" or "secret/NAME/KEY" (KEY defaults to "` + DefaultSSHKeySourceKey + `")`
	}
	parts := strings.Split(strings.TrimSpace(v), "/")
	max := 2
	if withKey {
		max = 3
	}
	if len(parts) == 3 && !withKey {
		hint := "this annotation names a whole object, without a key"
		if key == KeyCloudInitUserDataSource {
			hint += "; name the key with " + KeyCloudInitUserDataSourceKey
		}
		p.fail(key, v, accepted, errors.New(hint))
		return nil
	}
	if len(parts) < 2 || len(parts) > max {
		p.fail(key, v, accepted, nil)
		return nil
	}
	ref := &DataSourceRef{Kind: DataSourceKind(strings.ToLower(parts[0])), Name: parts[1]}
	if ref.Kind != DataSourceConfigMap && ref.Kind != DataSourceSecret {
		p.fail(key, v, accepted, fmt.Errorf("unknown kind %q", parts[0]))
		return nil
	}
	if err := checkObjectName(ref.Name); err != nil {
		p.fail(key, v, accepted, err)
		return nil
	}
	if len(parts) == 3 {
		if err := checkObjectKey(parts[2]); err != nil {
			p.fail(key, v, accepted, err)
			return nil
		}
		ref.Key = parts[2]
	}
	return ref
}

func (p *parser) objectKey(key string) string {
	v, ok := p.ann[key]
	if !ok || v == "" {
		return ""
	}
	if err := checkObjectKey(v); err != nil {
		p.fail(key, v, "a ConfigMap or Secret key (letters, digits, '-', '_', '.')", err)
		return ""
	}
	return v
}

// checkObjectName accepts a Kubernetes object name (DNS subdomain).
func checkObjectName(n string) error {
	if n == "" {
		return errors.New("the object name is empty")
	}
	if len(n) > 253 {
		return fmt.Errorf("the object name is %d characters long, more than 253", len(n))
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || isDigit(c) || c == '-' || c == '.') {
			return fmt.Errorf("the object name %q has %q: names use lower-case letters, digits, '-' and '.'", n, c)
		}
	}
	if !isAlnum(n[0]) || !isAlnum(n[len(n)-1]) {
		return fmt.Errorf("the object name %q must start and end with a letter or digit", n)
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || isDigit(c) }

// checkObjectKey accepts a ConfigMap/Secret data key.
func checkObjectKey(k string) error {
	if k == "" {
		return errors.New("the key is empty")
	}
	if len(k) > 253 {
		return fmt.Errorf("the key is %d characters long, more than 253", len(k))
	}
	if k == "." || k == ".." {
		return fmt.Errorf("the key %q is not allowed", k)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("the key %q has %q: keys use letters, digits, '-', '_' and '.'", k, c)
		}
	}
	return nil
}

func (p *parser) resources(c *VMConfig, r Resources) {
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	switch {
	case r.MemoryLimitBytes == 0:
		c.MemoryBytes = DefaultMemoryBytes
	case r.MemoryLimitBytes < MinMemoryBytes:
		p.fail(FieldMemoryLimit, itoa(r.MemoryLimitBytes), fmt.Sprintf("0 (no limit: %d MiB of guest RAM) or at least %d MiB", DefaultMemoryBytes>>20, MinMemoryBytes>>20), nil)
	default:
		// Guest RAM in whole MiB, rounded up so the guest never gets less.
		const mib = 1 << 20
		c.MemoryBytes = (r.MemoryLimitBytes + mib - 1) / mib * mib
		if c.MemoryBytes < 0 { // overflow when rounding the largest values
			c.MemoryBytes = r.MemoryLimitBytes / mib * mib
		}
	}
	if r.CPUShares != 0 && (r.CPUShares < MinCPUShares || r.CPUShares > MaxCPUShares) {
		p.fail(FieldCPUShares, itoa(r.CPUShares), fmt.Sprintf("0 (unset) or %d to %d", MinCPUShares, MaxCPUShares), nil)
	} else {
		c.CPUShares = r.CPUShares
	}
	if r.CPUPeriod != 0 && (r.CPUPeriod < MinCPUPeriod || r.CPUPeriod > MaxCPUPeriod) {
		p.fail(FieldCPUPeriod, itoa(r.CPUPeriod), fmt.Sprintf("0 (unset) or %d to %d microseconds", MinCPUPeriod, MaxCPUPeriod), nil)
	} else {
		c.CPUPeriod = r.CPUPeriod
	}
	if r.CPUQuota > 0 && (r.CPUQuota < MinCPUQuota || r.CPUQuota > MaxCPUQuota) {
		p.fail(FieldCPUQuota, itoa(r.CPUQuota), fmt.Sprintf("0 or -1 (no limit) or %d to %d microseconds", MinCPUQuota, int64(MaxCPUQuota)), nil)
	} else if r.CPUQuota > 0 {
		c.CPUQuota = r.CPUQuota
	}
}

func (p *parser) env(env []EnvVar) []EnvVar {
	var out []EnvVar
	for _, e := range env {
		var bad string
		switch {
		case e.Name == "":
			bad = "the name is empty"
		case strings.ContainsAny(e.Name, "=\x00\n\r"):
			bad = "the name contains '=', a newline or NUL"
		case strings.ContainsRune(e.Value, 0):
			bad = "the value contains NUL"
		}
		if bad != "" {
			// The value may be a secret: only the name goes into the message.
			p.fail(FieldEnv, e.Name, "variables whose name is not empty and has no '=', newline or NUL, and whose value has no NUL", errors.New(bad))
			continue
		}
		out = append(out, e)
	}
	return out
}
