package pod

import (
	"context"
	"time"
)

// Network sets up and tears down a pod's network. Implementations: CNI in a
// network namespace (runtime/network) and fakes/fakenet.
type Network interface {
	// Setup creates the pod network for sb and reports it.
	Setup(ctx context.Context, sb *Sandbox) (*NetworkStatus, error)
	// Teardown removes everything Setup made for sb. It succeeds when there
	// is nothing to remove, so a retried or repeated call is harmless.
	Teardown(ctx context.Context, sb *Sandbox) error
}

// Images gives the local file of a pulled image.
type Images interface {
	// Resolve returns the image file and its ref (sha256:<hex>) for an
	// image name or ref; an image that is not pulled is an error wrapping
	// errdefs.ErrNotFound.
	Resolve(ctx context.Context, image string) (path, ref string, err error)
}

// VMAssembler turns a container request into everything the hypervisor
// needs: root disk, cloud-init drive, domain XML. It owns the files it makes
// under the container's Dir.
type VMAssembler interface {
	// Assemble prepares the VM of c in sb from the image at imagePath and
	// returns the domain XML. On error it leaves nothing behind.
	Assemble(ctx context.Context, sb *Sandbox, c *Container, imagePath string) (domainXML string, err error)
}

// VMResources places each VM in its pod's cgroup under its container's
// limits and checks new limits for an in-place resize; vmbuild.Assembler
// implements it. Optional: without it VMs get no cgroup of their own and
// cannot be resized.
type VMResources interface {
	// PrepareStart makes the VM's cgroup with c's limits before it starts.
	PrepareStart(ctx context.Context, sb *Sandbox, c *Container) error
	// SetLimits writes the limits res gives the VM's cgroup.
	SetLimits(sb *Sandbox, c *Container, res Resources, create bool) error
	// Release removes the VM's cgroup once its emulator is gone.
	Release(ctx context.Context, sb *Sandbox, c *Container) error
	// Target validates res for c, as CreateContainer would, and says
	// what the guest gets.
	Target(sb *Sandbox, c *Container, res Resources) (ResizeTarget, error)
}

// Clock tells the time and times the waits (stop grace, monitor
// intervals), so tests can pass a fake clock and advance it instead of
// sleeping. fakes/clock.Fake satisfies it.
type Clock interface {
	Now() time.Time
	// After delivers the time once d has elapsed, as time.After.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now().Round(0) }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
