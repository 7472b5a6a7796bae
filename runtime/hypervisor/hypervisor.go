// Package hypervisor defines the seam between podvisor's lifecycle logic and
// whatever runs virtual machines: libvirt on a real node, the simulated
// hypervisor in fakes/simhv for tests and scale runs.
//
// Domains are addressed by name. podvisor derives the name from the
// container ID, so it is unique and stable across daemon restarts.
package hypervisor

import (
	"context"
	"io"
	"time"

	"github.com/podvisor/podvisor/runtime/errdefs"
)

// ErrNotFound is returned (wrapped) when the named domain does not exist.
var ErrNotFound = errdefs.Sentinel(errdefs.ErrNotFound, "domain not found")

// ErrInvalidState is returned (wrapped) when an operation is not valid in the
// domain's current state, for example starting a running domain.
var ErrInvalidState = errdefs.Sentinel(errdefs.ErrFailedPrecondition, "operation invalid in the domain's state")

// ErrUnimplemented is returned (wrapped) by optional features a hypervisor
// does not provide (for example the guest agent before it is built).
var ErrUnimplemented = errdefs.Sentinel(errdefs.ErrUnimplemented, "not implemented by this hypervisor")

// State is the coarse state of a domain, after libvirt's virDomainState.
type State int

const (
	StateUnknown  State = iota
	StateShutoff        // defined and not running
	StateRunning        // running (booting counts as running)
	StatePaused         // paused by an operator or by the hypervisor
	StateShutdown       // an ACPI shutdown is in progress
	StateCrashed        // the guest crashed
)

func (s State) String() string {
	switch s {
	case StateShutoff:
		return "shutoff"
	case StateRunning:
		return "running"
	case StatePaused:
		return "paused"
	case StateShutdown:
		return "shutdown"
	case StateCrashed:
		return "crashed"
	default:
		return "unknown"
	}
}

// Reason says why a domain is in its state. The strings follow libvirt's
// reason names (virDomainShutoffReason and friends) so logs read the same on
// the simulated and the real hypervisor.
type Reason string

const (
	ReasonUnknown   Reason = "unknown"
	ReasonDefined   Reason = "defined"   // shut off, never started
	ReasonBooted    Reason = "booted"    // running after start
	ReasonShutdown  Reason = "shutdown"  // shut off by the guest (ACPI or poweroff)
	ReasonDestroyed Reason = "destroyed" // shut off by a hard stop
	ReasonCrashed   Reason = "crashed"   // the guest or the emulator crashed
	ReasonFailed    Reason = "failed"    // the emulator failed to start
	ReasonUser      Reason = "user"      // paused by request
)

// DomainStatus describes one domain as the hypervisor sees it.
type DomainStatus struct {
	Name   string
	UUID   string
	State  State
	Reason Reason
	// StartedAt is when the domain last started; zero if never.
	StartedAt time.Time
	// FinishedAt is when the domain last stopped running; zero if it has not.
	FinishedAt time.Time
	// ExitCode is meaningful once the domain stopped after running: 0 for a
	// clean guest shutdown, non-zero for a destroy or a crash.
	ExitCode int32
	// PID of the emulator process while running (0 when not known or not
	// running). Restart tests use it to prove a VM was not restarted.
	PID int
}

// Stats are resource usage figures of a running domain.
type Stats struct {
	Timestamp time.Time
	// CPUTime is the total CPU time consumed by the domain.
	CPUTime time.Duration
	// MemoryBytes is the guest's working set: Memory.WorkingSetBytes.
	MemoryBytes uint64
	// MemoryLimitBytes is the guest's configured memory.
	MemoryLimitBytes uint64
	// Memory, Disks and Interfaces: see "Detailed stats" below.
	Memory     MemoryStats
	Disks      []DiskStats
	Interfaces []InterfaceStats
}

// The Node label and annotation podvisor sets (--node-name) to say which
// accelerator the node's VMs get and why: `kubectl get nodes -L
// podvisor.io/accelerator`, podvisorctl version, nodeSelectors of VMs that
// need KVM.
const (
	NodeLabelAccelerator            = "podvisor.io/accelerator"
	NodeAnnotationAcceleratorReason = "podvisor.io/accelerator-reason"
)

// Info describes the hypervisor itself, for Version and Status.
type Info struct {
	// Name is a short name: "sim" or "libvirt".
	Name string
	// Version is the hypervisor's own version string.
	Version string
	// Accelerator is "kvm", "tcg" or "sim".
	Accelerator string
	// AcceleratorReason is a sentence saying why (e.g. "a trial KVM
	// domain ran 64-bit guest code", or why KVM could not be used).
	AcceleratorReason string
}

// Hypervisor runs domains described by libvirt domain XML.
//
// Every method that waits takes a context. Errors wrap ErrNotFound or
// ErrInvalidState where they apply so that callers can be idempotent.
type Hypervisor interface {
	// Info describes the hypervisor.
	Info(ctx context.Context) (Info, error)
	// Define registers a domain from its XML without starting it and
	// returns its status (shut off, reason defined).
	Define(ctx context.Context, domainXML string) (DomainStatus, error)
	// Start boots a defined, shut off domain.
	Start(ctx context.Context, name string) error
	// Shutdown asks the guest to power off (ACPI). It returns once the
	// request is delivered; the guest may ignore it.
	Shutdown(ctx context.Context, name string) error
	// Destroy stops the domain at once. Destroying a shut off domain
	// succeeds.
	Destroy(ctx context.Context, name string) error
	// Undefine removes a shut off domain's definition.
	Undefine(ctx context.Context, name string) error
	// Status reports a domain's state.
	Status(ctx context.Context, name string) (DomainStatus, error)
	// List reports every domain the hypervisor knows, ours or not.
	List(ctx context.Context) ([]DomainStatus, error)
	// XML returns the domain's current definition.
	XML(ctx context.Context, name string) (string, error)
	// Console opens the domain's serial console: what the guest prints is
	// read, what is written is typed into it. Closing it detaches without
	// affecting the domain. At most one console is open per domain at a
	// time; a second Open fails with ErrInvalidState.
	Console(ctx context.Context, name string) (io.ReadWriteCloser, error)
	// Stats reports resource usage of a running domain.
	Stats(ctx context.Context, name string) (Stats, error)
	// AgentCommand sends a QEMU guest agent command (JSON) and returns the
	// agent's JSON reply. Implementations without an agent channel return
	// ErrUnimplemented.
	AgentCommand(ctx context.Context, name string, command string, timeout time.Duration) (string, error)
	// Close releases the connection. Domains keep running.
	Close() error
}

// PausedStarter is implemented by hypervisors that can start a domain with
// its vCPUs stopped. QEMU's serial socket drops what the guest prints while
// no client is connected, so podvisor starts the domain paused, connects
// its console and only then lets the guest run: the container log then
// holds the guest's first byte however long connecting takes.
type PausedStarter interface {
	// StartPaused starts a defined, shut off domain as Start does, but
	// paused: its devices (the console) exist and the guest has not run.
	StartPaused(ctx context.Context, name string) error
	// Unpause lets a paused domain run.
	Unpause(ctx context.Context, name string) error
}

// StateWatcher is implemented by hypervisors that report domain state
// changes as they happen (libvirt's lifecycle events; the simulated
// hypervisor's own transitions). It is optional: a user without it, or
// with it, polls Status for correctness; events only make noticing a change
// prompt. Both implementations build it on Notifier.
type StateWatcher interface {
	// WatchStates returns a channel of state change notices. It is closed
	// when ctx ends or the hypervisor is closed. Notices may be
	// coalesced (one notice for several changes of a domain) and may be
	// spurious; when some were lost (the watcher fell behind, or the
	// hypervisor's own event source was interrupted) a Resync notice
	// says so. Every call makes an independent watch.
	WatchStates(ctx context.Context) <-chan StateEvent
}

// DisplayPort is the port of a VM pod that CRI port-forward connects to
// the VM's display (VNC, RFB protocol) instead of the guest: podvisorctl
// vnc forwards it. The guest's own port 5900 is not forwarded.
const DisplayPort = 5900

// Displayer is implemented by hypervisors that can connect to a running
// domain's graphical display, which speaks RFB (VNC). podvisor's domains
// have their display on a unix socket only (runtime/domain), so this is
// the one way to it.
type Displayer interface {
	// Display connects to the display of a running domain. Each call is a
	// new RFB connection; closing it leaves the domain alone.
	Display(ctx context.Context, name string) (io.ReadWriteCloser, error)
}

// StateEvent is one notice from a StateWatcher.
type StateEvent struct {
	// Name is the domain whose state may have changed; empty when Resync
	// is set.
	Name string
	// Resync says notices were lost: the state of any domain may have
	// changed, so the watcher should re-read every domain it cares about.
	Resync bool
}

// --- In-place resize (UpdateContainerResources) ---

// Sizing is a running domain's vCPUs and memory, now and at most (the
// most was fixed when the domain was defined: <vcpu>M</vcpu>, <memory>).
type Sizing struct {
	VCPUs, MaxVCPUs             int
	MemoryBytes, MaxMemoryBytes int64
}

// Resizer is implemented by hypervisors that change a running domain's
// vCPUs (hot-plug) and memory (the balloon) without restarting it.
type Resizer interface {
	// Sizing reports a running domain's vCPUs and memory.
	Sizing(ctx context.Context, name string) (Sizing, error)
	// SetVCPUs sets the running domain's vCPU count, at most MaxVCPUs.
	SetVCPUs(ctx context.Context, name string, n int) error
	// SetMemory sets the running domain's memory, at most MaxMemoryBytes.
	// The guest gives memory back (balloon) after the call returns.
	SetMemory(ctx context.Context, name string, bytes int64) error
}

// Detailed stats: what Stats carries beyond CPU time, for the CRI's stats
// and metrics verbs and the per-VM Prometheus metrics.

// MemoryStats is a domain's memory as the guest and the host see it.
type MemoryStats struct {
	// FromGuest says the guest's balloon driver reported its statistics;
	// without them WorkingSetBytes and UsageBytes are the emulator's RSS.
	FromGuest bool
	// WorkingSetBytes is what the guest uses and cannot drop: its RAM less
	// what it reports usable (free memory and reclaimable caches).
	WorkingSetBytes uint64
	// UsageBytes is what the guest uses including its page cache: its RAM
	// less its free memory.
	UsageBytes uint64
	// CacheBytes is the guest's page cache (0 when not reported).
	CacheBytes uint64
	// RSSBytes is the emulator process's resident memory on the host.
	RSSBytes uint64
}

// DiskStats is one disk's I/O and the host bytes its image holds.
type DiskStats struct {
	// Target is the guest's device name ("vda").
	Target string
	// Path is the host file behind it ("" for a network disk).
	Path string
	// ReadBytes, WriteBytes, ReadOps and WriteOps count the guest's I/O.
	ReadBytes, WriteBytes, ReadOps, WriteOps uint64
	// AllocatedBytes is the space the image file takes on the host
	// (st_blocks * 512): for a qcow2 overlay, what the guest wrote.
	AllocatedBytes uint64
}

// InterfaceStats is one network interface's counters, seen from the
// host side of the VM: the interfaces of the pod's network namespace, in
// which the emulator runs.
type InterfaceStats struct {
	Name                string
	RxBytes, RxPackets  uint64
	RxErrors, RxDropped uint64
	TxBytes, TxPackets  uint64
	TxErrors, TxDropped uint64
}

// ReasonSaved: shut off because its state was saved to a file (Saver).
const ReasonSaved Reason = "saved"

// ErrNotSavable is returned (wrapped) by Saver.Save when the domain's
// state cannot be saved as it is, for example while the guest has a 9p
// share mounted (QEMU cannot migrate a mounted virtio-9p export). The
// domain keeps running.
var ErrNotSavable = errdefs.Sentinel(errdefs.ErrFailedPrecondition, "the domain's state cannot be saved")

// Saver is implemented by hypervisors that save a running domain's memory
// and device state to a file and start a domain from such a file again:
// podvisor's checkpoints (runtime/pod) are built on it. It is optional; a
// hypervisor without it has no checkpoints.
type Saver interface {
	// Save writes the state of the running domain to path (a new file)
	// and stops the domain: shut off, ReasonSaved. On error the domain
	// keeps running and path is removed.
	Save(ctx context.Context, name, path string) error
	// Restore starts a domain from the state saved at path, with
	// domainXML as its definition: the same virtual hardware as the saved
	// domain, while its name, UUID, file paths and emulator environment
	// may differ. A defined domain of that name is started from it (it
	// stays defined); otherwise the domain is transient. It runs on
	// return. The file's own record of the domain may be rewritten to the
	// new name and UUID; its state is left alone.
	Restore(ctx context.Context, path, domainXML string) error
	// SavedXML returns the domain definition stored in the file at path.
	SavedXML(ctx context.Context, path string) (string, error)
}
