// Package podtypes holds the records and configurations of sandboxes and
// containers: what the lifecycle (runtime/pod) persists and what its
// adapters (network, VM assembly, the CRI layer) read. It imports only the
// standard library, so an adapter that needs a Sandbox links nothing of the
// lifecycle (no store, no consoles); runtime/pod re-exports every name.
package podtypes

import (
	"time"
)

// SandboxState is the CRI sandbox state.
type SandboxState string

const (
	SandboxReady    SandboxState = "ready"
	SandboxNotReady SandboxState = "notready"
)

// ContainerState is the CRI container state.
type ContainerState string

const (
	ContainerCreated ContainerState = "created"
	ContainerRunning ContainerState = "running"
	ContainerExited  ContainerState = "exited"
	ContainerUnknown ContainerState = "unknown"
)

// KeyValue is an ordered environment entry.
type KeyValue struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// PortMapping is a pod port published on the node.
type PortMapping struct {
	Protocol      string `json:"protocol"`
	ContainerPort int32  `json:"containerPort"`
	HostPort      int32  `json:"hostPort"`
	HostIP        string `json:"hostIP,omitempty"`
}

// DNSConfig is the pod's DNS configuration as kubelet computed it.
type DNSConfig struct {
	Servers  []string `json:"servers,omitempty"`
	Searches []string `json:"searches,omitempty"`
	Options  []string `json:"options,omitempty"`
}

// SandboxConfig is what kubelet asked for in RunPodSandbox, in podvisor's
// own terms.
type SandboxConfig struct {
	Name           string            `json:"name"`
	UID            string            `json:"uid"`
	Namespace      string            `json:"namespace"`
	Attempt        uint32            `json:"attempt"`
	Hostname       string            `json:"hostname,omitempty"`
	LogDirectory   string            `json:"logDirectory,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	Annotations    map[string]string `json:"annotations,omitempty"`
	DNS            DNSConfig         `json:"dns"`
	PortMappings   []PortMapping     `json:"portMappings,omitempty"`
	RuntimeHandler string            `json:"runtimeHandler,omitempty"`
	CgroupParent   string            `json:"cgroupParent,omitempty"`
	// Sysctls are the pod's namespaced kernel parameters (CRI
	// linux.sysctls), name to value. In a VM they are the guest kernel's:
	// cloud-init sets them at boot.
	Sysctls map[string]string `json:"sysctls,omitempty"`
}

// IPConfig is one address of a pod interface.
type IPConfig struct {
	// CIDR is the address with its prefix, e.g. 10.1.0.5/24.
	CIDR    string `json:"cidr"`
	Gateway string `json:"gateway,omitempty"`
}

// Route is a route the guest must install.
type Route struct {
	Dst string `json:"dst"`
	GW  string `json:"gw,omitempty"`
}

// Interface is one network interface of the pod as CNI set it up.
type Interface struct {
	Name   string     `json:"name"`
	MAC    string     `json:"mac,omitempty"`
	MTU    int        `json:"mtu,omitempty"`
	IPs    []IPConfig `json:"ips,omitempty"`
	Routes []Route    `json:"routes,omitempty"`
}

// NetworkStatus is the pod network as set up for a sandbox.
type NetworkStatus struct {
	// NetNS is the path of the pod's network namespace ("" when the
	// network implementation does not use one).
	NetNS      string      `json:"netns,omitempty"`
	Interfaces []Interface `json:"interfaces,omitempty"`
	// Opaque is the implementation's own data needed for teardown (for
	// CNI: the cached result).
	Opaque []byte `json:"opaque,omitempty"`
}

// IPs lists the pod's addresses without prefixes, primary first.
func (n *NetworkStatus) IPs() []string {
	if n == nil {
		return nil
	}
	var out []string
	for _, ifc := range n.Interfaces {
		for _, ip := range ifc.IPs {
			addr := ip.CIDR
			for i := 0; i < len(addr); i++ {
				if addr[i] == '/' {
					addr = addr[:i]
					break
				}
			}
			out = append(out, addr)
		}
	}
	return out
}

// Sandbox is a pod sandbox.
type Sandbox struct {
	ID        string         `json:"id"`
	Config    SandboxConfig  `json:"config"`
	State     SandboxState   `json:"state"`
	CreatedAt time.Time      `json:"createdAt"`
	Network   *NetworkStatus `json:"network,omitempty"`
	// Creating is true while RunPodSandbox has not finished; a record
	// found with it set after a restart is a half-made sandbox.
	Creating bool `json:"creating,omitempty"`
	// UnclaimedSince is set when RunPodSandbox finished after its caller
	// (kubelet) had given up: the sandbox is kept for kubelet's retry,
	// which claims it, and removed if no retry comes.
	UnclaimedSince time.Time `json:"unclaimedSince,omitzero"`
}

// Mount is a host path the container wants to see.
type Mount struct {
	ContainerPath string `json:"containerPath"`
	HostPath      string `json:"hostPath"`
	Readonly      bool   `json:"readonly,omitempty"`
}

// Device is a host device (block volumes arrive as devices).
type Device struct {
	ContainerPath string `json:"containerPath"`
	HostPath      string `json:"hostPath"`
	Permissions   string `json:"permissions,omitempty"`
}

// Resources are the container's resource settings.
type Resources struct {
	MemoryLimitBytes int64 `json:"memoryLimitBytes,omitempty"`
	CPUShares        int64 `json:"cpuShares,omitempty"`
	CPUPeriod        int64 `json:"cpuPeriod,omitempty"`
	CPUQuota         int64 `json:"cpuQuota,omitempty"`
}

// ResizeTarget is what a VM's guest gets from container resources.
type ResizeTarget struct {
	// VCPUs is the vCPU count; VCPUsFixed when VirtletVCPUCount fixes it
	// (a new CPU limit then changes only the vCPUs' time).
	VCPUs      int
	VCPUsFixed bool
	// MemoryBytes is the guest's RAM.
	MemoryBytes int64
}

// ContainerConfig is what kubelet asked for in CreateContainer.
type ContainerConfig struct {
	Name        string            `json:"name"`
	Attempt     uint32            `json:"attempt"`
	Image       string            `json:"image"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Envs        []KeyValue        `json:"envs,omitempty"`
	Mounts      []Mount           `json:"mounts,omitempty"`
	Devices     []Device          `json:"devices,omitempty"`
	// LogPath is relative to the sandbox's LogDirectory.
	LogPath   string    `json:"logPath,omitempty"`
	Resources Resources `json:"resources"`
	Stdin     bool      `json:"stdin,omitempty"`
	StdinOnce bool      `json:"stdinOnce,omitempty"`
	TTY       bool      `json:"tty,omitempty"`
}

// Container is a VM container.
type Container struct {
	ID         string          `json:"id"`
	SandboxID  string          `json:"sandboxID"`
	Config     ContainerConfig `json:"config"`
	ImageRef   string          `json:"imageRef"`
	DomainName string          `json:"domainName"`
	State      ContainerState  `json:"state"`
	CreatedAt  time.Time       `json:"createdAt"`
	StartedAt  time.Time       `json:"startedAt,omitzero"`
	FinishedAt time.Time       `json:"finishedAt,omitzero"`
	ExitCode   int32           `json:"exitCode"`
	Reason     string          `json:"reason,omitempty"`
	Message    string          `json:"message,omitempty"`
	// LogPath is the absolute console log path ("" when kubelet gave none).
	LogPath string `json:"logPath,omitempty"`
	// Dir holds the container's disks, cloud-init drive and console socket.
	Dir string `json:"dir"`
	// UnclaimedSince: as for Sandbox, for CreateContainer.
	UnclaimedSince time.Time `json:"unclaimedSince,omitzero"`
	// Restore is set on a container made from a checkpoint until it has
	// started: StartContainer resumes the saved VM instead of booting it.
	Restore *Restore `json:"restore,omitempty"`
}

// Restore is what StartContainer needs of a container's checkpoint.
type Restore struct {
	// Archive is the checkpoint the container was made from.
	Archive string `json:"archive"`
	// MemoryFile is the saved VM state in the container's directory;
	// empty for a disk-only checkpoint, which boots.
	MemoryFile string `json:"memoryFile,omitempty"`
}

// SandboxFilter selects sandboxes; zero fields match everything.
type SandboxFilter struct {
	ID            string
	State         *SandboxState
	LabelSelector map[string]string
}

// ContainerFilter selects containers; zero fields match everything.
type ContainerFilter struct {
	ID            string
	SandboxID     string
	State         *ContainerState
	LabelSelector map[string]string
}
