// Package cloudinit builds the cloud-init drive of a VM pod: the NoCloud
// (label "cidata") or ConfigDrive (label "config-2") files computed from the
// pod's Virtlet annotations, its environment, volumes and network, and the
// ISO 9660 image that carries them. Generate is pure apart from the
// DataSource it is handed; WriteISO is the only part that touches the disk.
package cloudinit

import (
	"fmt"
	"os"
)

// DriveType selects the layout of the cloud-init drive
// (annotation VirtletCloudInitImageType).
type DriveType string

const (
	// NoCloud is the default: files meta-data, user-data and
	// network-config on a volume labelled "cidata".
	NoCloud DriveType = "nocloud"
	// ConfigDrive is the OpenStack layout: openstack/latest/meta_data.json,
	// user_data and network_data.json on a volume labelled "config-2".
	ConfigDrive DriveType = "configdrive"
)

// Volume labels the guest looks for.
const (
	LabelNoCloud     = "cidata"
	LabelConfigDrive = "config-2"
)

// SourceKind is the kind of Kubernetes object a data source annotation names.
type SourceKind string

const (
	SourceConfigMap SourceKind = "configmap"
	SourceSecret    SourceKind = "secret"
)

// Encodings of VirtletCloudInitUserDataSourceEncoding.
const (
	EncodingPlain  = "plain"
	EncodingBase64 = "base64"
)

// SourceRef names a ConfigMap or Secret in the pod's namespace, as written in
// VirtletCloudInitUserDataSource, VirtletSSHKeySource or
// VirtletFilesFromDataSource (`configmap/NAME[/KEY]`, `secret/NAME[/KEY]`).
type SourceRef struct {
	Kind SourceKind
	Name string
	// Key selects one entry. For the user-data source it comes from
	// VirtletCloudInitUserDataSourceKey; for the ssh key source it is the
	// optional third part (default "authorized_keys").
	Key string
	// Encoding of the selected key of the user-data source: "plain"
	// (default when empty) or "base64". Ignored elsewhere.
	Encoding string
}

// String gives the ref back in annotation syntax, for error messages.
func (r SourceRef) String() string {
	s := string(r.Kind) + "/" + r.Name
	if r.Key != "" {
		s += "/" + r.Key
	}
	return s
}

// EnvVar is one container environment variable.
type EnvVar struct {
	Name, Value string
}

// GuestFile is a file cloud-init writes into the guest (write_files): the
// contents of secret and configmap volumes, file-like mounts, scripts.
type GuestFile struct {
	// Path is absolute in the guest.
	Path    string
	Content []byte
	// Mode is the permission bits; 0 means 0644.
	Mode os.FileMode
}

// Sysctl is one kernel parameter, e.g. {"net.ipv4.ip_local_port_range",
// "1024 65000"}.
type Sysctl struct {
	Name, Value string
}

// NetworkInfo is what the pod network gave the VM, converted from the CNI
// result by the network package.
type NetworkInfo struct {
	Interfaces []Interface
}

// Interface is one guest NIC.
type Interface struct {
	// Name the guest should give the NIC (cloud-init renames the NIC that
	// has MAC to it), e.g. "eth0".
	Name string
	// MAC in the usual colon form; required, it is how the guest finds the NIC.
	MAC string
	// MTU, 0 for the guest's default.
	MTU       int
	Addresses []Address
	// Routes through this interface besides the default route given by
	// Address.Gateway.
	Routes []Route
}

// Address is one static address of an interface.
type Address struct {
	// CIDR is the address with its prefix length, e.g. "10.1.2.3/24" or
	// "fd00::5/64".
	CIDR string
	// Gateway, if set, becomes the default route of this address family.
	Gateway string
}

// Route is a route to Dst (CIDR) via Gateway (empty: via the gateway of the
// interface's address of the same family).
type Route struct {
	Dst     string
	Gateway string
}

// DNSConfig is the pod's DNS configuration (CRI DNSConfig).
type DNSConfig struct {
	Servers  []string
	Searches []string
	// Options (e.g. "ndots:5") cannot be expressed in cloud-init network
	// config; they are kept for the caller and ignored here.
	Options []string
}

// Input is everything Generate needs. The caller maps the parsed pod
// annotations (VMConfig) and the CRI sandbox/container configs onto it.
type Input struct {
	PodName      string
	PodNamespace string
	// Hostname is local-hostname; empty means PodName.
	Hostname string

	// Type is VirtletCloudInitImageType; empty means NoCloud.
	Type DriveType

	// MetaData is VirtletCloudInitMetaData: its top-level keys replace the
	// generated meta-data keys.
	MetaData map[string]any

	// UserData is VirtletCloudInitUserData, deep-merged into the user-data
	// built from UserDataSource (maps merge, lists append, scalars replace),
	// or replacing it when UserDataOverwrite (VirtletCloudInitUserDataOverwrite).
	UserData          map[string]any
	UserDataOverwrite bool
	// UserDataScript is VirtletCloudInitUserDataScript: user-data verbatim.
	// The text "@virtlet-mount-script@" in it is replaced by MountScript.
	UserDataScript string
	// UserDataSource is VirtletCloudInitUserDataSource, with Key and
	// Encoding from VirtletCloudInitUserDataSourceKey/-Encoding.
	UserDataSource *SourceRef

	// SSHKeys is VirtletSSHKeys, one key per element.
	SSHKeys []string
	// SSHKeySource is VirtletSSHKeySource.
	SSHKeySource *SourceRef

	// FilesFrom is VirtletFilesFromDataSource.
	FilesFrom *SourceRef

	// Env is the container environment, written to /etc/cloud/environment.
	Env []EnvVar
	// Files are written with write_files in this order (secrets, configmaps,
	// file-like mounts, scripts of the volume package).
	Files []GuestFile
	// Mounts are cloud-init `mounts` entries appended to user-data, e.g.
	// ["data", "/data", "9p", "trans=virtio"].
	Mounts [][]string
	// RunCmd entries are appended to user-data `runcmd`.
	RunCmd []string
	// Sysctls are the pod's sysctls, set in the guest kernel early at
	// every boot (bootcmd `sysctl -w NAME=VALUE`, after the user's bootcmd)
	// and written to SysctlConfPath for the guest's own tools. The caller
	// validates them and gives them in a stable order.
	Sysctls []Sysctl
	// BootCmd entries are appended to user-data `bootcmd`, after the
	// sysctls' (the block volumes' device links of the volume package).
	BootCmd []string
	// MountScript replaces "@virtlet-mount-script@" in UserDataScript.
	MountScript string

	// Network is the pod network; nil writes no network config.
	Network *NetworkInfo
	// DNS is the pod DNS configuration, added to the network config.
	DNS *DNSConfig
	// ForceDHCP is VirtletForceDHCPNetworkConfig: no network config at all,
	// the guest configures its NICs by DHCP.
	ForceDHCP bool
	// NetworkConfigVersion of the NoCloud network-config: 1 (default when 0,
	// Virtlet's format) or 2 (netplan format). ConfigDrive always uses
	// network_data.json.
	NetworkConfigVersion int
}

// DriveFile is one file on the cloud-init drive.
type DriveFile struct {
	// Path is relative to the root of the drive, with '/' separators.
	Path string
	Data []byte
}

// Contents is the generated cloud-init drive.
type Contents struct {
	// Label is the ISO volume label: "cidata" or "config-2".
	Label string
	// Files sorted by Path.
	Files []DriveFile
	// Warnings name inputs that were given but could not be used, e.g.
	// VirtletCloudInitUserData next to a verbatim user-data script. The
	// caller should surface them (log, pod event).
	Warnings []string
}

// File returns the data of the file at path on the drive.
func (c *Contents) File(path string) ([]byte, bool) {
	for _, f := range c.Files {
		if f.Path == path {
			return f.Data, true
		}
	}
	return nil, false
}

func (in *Input) podRef() string {
	return fmt.Sprintf("pod %s/%s", in.PodNamespace, in.PodName)
}
