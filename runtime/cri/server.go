// Package cri serves the CRI v1 RuntimeService and ImageService over gRPC.
// It converts between CRI messages and podvisor's own types and maps error
// kinds to gRPC codes; the lifecycle logic lives in runtime/pod.
package cri

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/hypervisor"
	"github.com/podvisor/podvisor/runtime/pod"
)

// Lifecycle is what the CRI layer needs of runtime/pod.
type Lifecycle interface {
	RunPodSandbox(ctx context.Context, cfg pod.SandboxConfig) (string, error)
	StopPodSandbox(ctx context.Context, id string) error
	RemovePodSandbox(ctx context.Context, id string) error
	PodSandbox(id string) (pod.Sandbox, error)
	// ListPodSandboxes and ListContainers return shared records, oldest
	// first; a record is never changed once returned (a change swaps in a
	// new one).
	ListPodSandboxes(f pod.SandboxFilter) []*pod.Sandbox
	CreateContainer(ctx context.Context, sandboxID string, cfg pod.ContainerConfig) (string, error)
	StartContainer(ctx context.Context, id string) error
	StopContainer(ctx context.Context, id string, timeout time.Duration) error
	RemoveContainer(ctx context.Context, id string) error
	ContainerStatus(ctx context.Context, id string) (pod.Container, error)
	ListContainers(f pod.ContainerFilter) []*pod.Container
	Stats(ctx context.Context, id string) (pod.Container, hypervisor.Stats, error)
	ReopenContainerLog(ctx context.Context, id string) error
	UpdateContainerResources(ctx context.Context, id string, res pod.Resources) error
}

// Image is an image as the CRI reports it.
type Image struct {
	// Ref is the image ID, sha256:<hex>.
	Ref         string
	RepoTags    []string
	RepoDigests []string
	Size        uint64
	// User is the image config's User as the image gives it ("1002",
	// "www-data:1004"), "" when none is known; reported as Uid or
	// Username (imageUser).
	User string
}

// FsUsage is the usage of the filesystem holding images.
type FsUsage struct {
	Mountpoint string
	UsedBytes  uint64
	InodesUsed uint64
}

// Images is what the CRI layer needs of the image store.
type Images interface {
	// Pull pulls name for a pod of namespace ("" when the request names
	// no pod): a tenant's image translations apply to its own pods only.
	// auth (may be nil) is the registry credential of an OCI pull.
	Pull(ctx context.Context, namespace, name string, auth *runtimeapi.AuthConfig) (ref string, err error)
	List(ctx context.Context) ([]Image, error)
	// Status returns nil, nil for an image that is not present.
	Status(ctx context.Context, nameOrRef string) (*Image, error)
	// Remove is RemoveImage as containerd does it: the image goes with
	// every name, by any name or its ID; content a container uses stays
	// (by name) or is refused (by ID). A missing image is not an error.
	Remove(ctx context.Context, nameOrRef string) error
	FsInfo(ctx context.Context) (FsUsage, error)
}

// Config wires a Server.
type Config struct {
	Lifecycle  Lifecycle
	Images     Images
	Hypervisor hypervisor.Hypervisor
	// NetworkReady reports whether pods can get a network (nil: ready).
	NetworkReady func(ctx context.Context) error
	// Version is podvisor's version.
	Version string
	// CgroupDriver is reported by RuntimeConfig: "cgroupfs" or "systemd".
	CgroupDriver string
	// Streaming serves attach, exec and port-forward (nil: Unimplemented).
	Streaming Streaming
	// Exec runs commands in VMs (nil: Exec and ExecSync are Unimplemented).
	Exec   ExecSyncer
	Logger *slog.Logger
}

// Server implements runtimeapi.RuntimeServiceServer and
// runtimeapi.ImageServiceServer.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer
	cfg Config
	log *slog.Logger

	cpu        *cpuSamples
	containers *encodedList[pod.Container]
	sandboxes  *encodedList[pod.Sandbox]
}

// NewServer returns a CRI server.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Lifecycle == nil || cfg.Images == nil || cfg.Hypervisor == nil {
		return nil, errors.New("cri server: lifecycle, images and hypervisor are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CgroupDriver == "" {
		cfg.CgroupDriver = "cgroupfs"
	}
	return &Server{cfg: cfg, log: cfg.Logger, cpu: newCPUSamples(),
		containers: newEncodedList(func(c *pod.Container) string { return c.ID },
			func(c *pod.Container) proto.Message { return containerToCRI(c) }),
		sandboxes: newEncodedList(func(sb *pod.Sandbox) string { return sb.ID },
			func(sb *pod.Sandbox) proto.Message { return sandboxToCRI(sb) }),
	}, nil
}

// Register registers both services on g.
func (s *Server) Register(g *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
}
