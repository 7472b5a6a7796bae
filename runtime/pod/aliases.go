package pod

import "github.com/podvisor/podvisor/runtime/podtypes"

// The records and configurations live in runtime/podtypes, a leaf package
// the adapters import; these names keep the lifecycle's API in one place.
type (
	SandboxState    = podtypes.SandboxState
	ContainerState  = podtypes.ContainerState
	KeyValue        = podtypes.KeyValue
	PortMapping     = podtypes.PortMapping
	DNSConfig       = podtypes.DNSConfig
	SandboxConfig   = podtypes.SandboxConfig
	IPConfig        = podtypes.IPConfig
	Route           = podtypes.Route
	Interface       = podtypes.Interface
	NetworkStatus   = podtypes.NetworkStatus
	Sandbox         = podtypes.Sandbox
	Mount           = podtypes.Mount
	Device          = podtypes.Device
	Resources       = podtypes.Resources
	ResizeTarget    = podtypes.ResizeTarget
	ContainerConfig = podtypes.ContainerConfig
	Container       = podtypes.Container
	SandboxFilter   = podtypes.SandboxFilter
	ContainerFilter = podtypes.ContainerFilter
)

const (
	SandboxReady     = podtypes.SandboxReady
	SandboxNotReady  = podtypes.SandboxNotReady
	ContainerCreated = podtypes.ContainerCreated
	ContainerRunning = podtypes.ContainerRunning
	ContainerExited  = podtypes.ContainerExited
	ContainerUnknown = podtypes.ContainerUnknown
)

func labelsMatch(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Restore is what a container made from a checkpoint needs to start.
type Restore = podtypes.Restore
