package libvirt

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"
)

// undefineFlags remove what libvirt keeps beside a definition, if present.
const undefineFlags = lv.DOMAIN_UNDEFINE_MANAGED_SAVE | lv.DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
	lv.DOMAIN_UNDEFINE_NVRAM | lv.DOMAIN_UNDEFINE_CHECKPOINTS_METADATA

// Define registers (or updates) a persistent domain from its XML.
func (h *Hypervisor) Define(ctx context.Context, domainXML string) (hypervisor.DomainStatus, error) {
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(domainXML); err != nil {
		return hypervisor.DomainStatus{}, fmt.Errorf("defining a domain: %w: the domain XML does not parse: %w", errdefs.ErrInvalidArgument, err)
	}
	if dom.Name == "" {
		return hypervisor.DomainStatus{}, fmt.Errorf("defining a domain: %w: the domain XML has no <name>", errdefs.ErrInvalidArgument)
	}
	var st hypervisor.DomainStatus
	err := h.do(ctx, func(c *lv.Connect) error {
		d, err := c.DomainDefineXML(domainXML)
		if err != nil {
			return err
		}
		defer d.Free()
		st, err = h.status(dom.Name, d)
		return err
	})
	if err != nil {
		return hypervisor.DomainStatus{}, wrapErr(fmt.Sprintf("defining domain %q", dom.Name), err)
	}
	return st, nil
}

// Start boots a defined, shut off domain.
func (h *Hypervisor) Start(ctx context.Context, name string) error {
	return h.start(ctx, "starting domain", name, 0)
}

// StartPaused starts the domain with its vCPUs stopped
// (hypervisor.PausedStarter).
func (h *Hypervisor) StartPaused(ctx context.Context, name string) error {
	return h.start(ctx, "starting domain paused", name, lv.DOMAIN_START_PAUSED)
}

// Unpause lets a domain started paused run.
func (h *Hypervisor) Unpause(ctx context.Context, name string) error {
	return h.withDomain(ctx, "resuming domain", name, func(d *lv.Domain) error { return d.Resume() })
}

func (h *Hypervisor) start(ctx context.Context, what, name string, flags lv.DomainCreateFlags) error {
	tries := 0
	return h.withDomain(ctx, what, name, func(d *lv.Domain) error {
		tries++
		at := time.Now()
		if err := d.CreateWithFlags(flags); err != nil {
			// do retries once when the connection died during the call:
			// the first try may have started the domain and lost only
			// its answer, so the retry finds it running.
			if tries == 1 || libvirtCode(err) != lv.ERR_OPERATION_INVALID {
				return err
			}
			if active, aerr := d.IsActive(); aerr != nil || !active {
				return err
			}
		}
		h.rec.started(name, at)
		return nil
	})
}

// Shutdown presses the ACPI power button.
func (h *Hypervisor) Shutdown(ctx context.Context, name string) error {
	return h.withDomain(ctx, "shutting down domain", name, func(d *lv.Domain) error {
		return d.ShutdownFlags(lv.DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
	})
}

// Destroy stops the domain at once; a domain that is not running is fine.
func (h *Hypervisor) Destroy(ctx context.Context, name string) error {
	return h.withDomain(ctx, "destroying domain", name, func(d *lv.Domain) error {
		active, err := d.IsActive()
		if err != nil {
			return err
		}
		if !active {
			return nil
		}
		err = d.Destroy()
		if libvirtCode(err) == lv.ERR_OPERATION_INVALID {
			// It stopped between the check and the destroy.
			if active, aerr := d.IsActive(); aerr == nil && !active {
				return nil
			}
		}
		return err
	})
}

// Undefine removes a shut off domain's definition with its managed save,
// NVRAM, snapshot and checkpoint metadata. A running domain is refused
// (libvirt would turn it transient).
func (h *Hypervisor) Undefine(ctx context.Context, name string) error {
	err := h.withDomain(ctx, "undefining domain", name, func(d *lv.Domain) error {
		active, err := d.IsActive()
		if err != nil {
			return err
		}
		if active {
			return fmt.Errorf("%w: the domain is running; destroy it first", hypervisor.ErrInvalidState)
		}
		return d.UndefineFlags(undefineFlags)
	})
	if err == nil {
		h.rec.forget(name)
	}
	return err
}

// Status reports a domain's state.
func (h *Hypervisor) Status(ctx context.Context, name string) (hypervisor.DomainStatus, error) {
	var st hypervisor.DomainStatus
	err := h.withDomain(ctx, "reading the state of domain", name, func(d *lv.Domain) error {
		var err error
		st, err = h.status(name, d)
		return err
	})
	return st, err
}

// List reports every domain libvirt knows.
func (h *Hypervisor) List(ctx context.Context) ([]hypervisor.DomainStatus, error) {
	var out []hypervisor.DomainStatus
	err := h.do(ctx, func(c *lv.Connect) error {
		out = out[:0]
		doms, err := c.ListAllDomains(0)
		if err != nil {
			return err
		}
		defer func() {
			for i := range doms {
				_ = doms[i].Free()
			}
		}()
		for i := range doms {
			name, err := doms[i].GetName()
			if err != nil {
				return err
			}
			st, err := h.status(name, &doms[i])
			if libvirtCode(err) == lv.ERR_NO_DOMAIN {
				continue // undefined while listing
			}
			if err != nil {
				return err
			}
			out = append(out, st)
		}
		return nil
	})
	if err != nil {
		return nil, wrapErr("listing domains", err)
	}
	return out, nil
}

// status builds a DomainStatus from libvirt's state and podvisor's records.
func (h *Hypervisor) status(name string, d *lv.Domain) (hypervisor.DomainStatus, error) {
	uuid, err := d.GetUUIDString()
	if err != nil {
		return hypervisor.DomainStatus{}, err
	}
	state, reason, err := d.GetState()
	if err != nil {
		return hypervisor.DomainStatus{}, err
	}
	st := hypervisor.DomainStatus{Name: name, UUID: uuid}
	st.State, st.Reason = mapState(state, reason)
	var startHint time.Time
	if st.State == hypervisor.StateRunning || st.State == hypervisor.StatePaused || st.State == hypervisor.StateShutdown {
		st.PID, startHint = h.emulatorPID(name)
	}
	h.rec.fill(&st, startHint)
	return st, nil
}

// emulatorPID reads the QEMU driver's pid file; its mtime approximates the
// start time. Zero values when unknown.
func (h *Hypervisor) emulatorPID(name string) (int, time.Time) {
	p := filepath.Join(h.stateDir, name+".pid")
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, time.Time{}
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, time.Time{}
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return 0, time.Time{}
	}
	var mtime time.Time
	if fi, err := os.Stat(p); err == nil {
		mtime = fi.ModTime()
	}
	return pid, mtime
}

// XML returns the domain's live definition (the persistent one when off).
func (h *Hypervisor) XML(ctx context.Context, name string) (string, error) {
	var x string
	err := h.withDomain(ctx, "reading the XML of domain", name, func(d *lv.Domain) error {
		var err error
		x, err = d.GetXMLDesc(0)
		return err
	})
	return x, err
}

// AgentCommand sends a guest agent command and returns its JSON reply.
// A domain without an agent channel gives ErrUnimplemented; an agent that
// does not answer within timeout gives errdefs.ErrUnavailable.
func (h *Hypervisor) AgentCommand(ctx context.Context, name string, command string, timeout time.Duration) (string, error) {
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < timeout || timeout <= 0 {
			timeout = left
		}
	}
	secs := int(math.Ceil(timeout.Seconds()))
	if secs < 1 {
		secs = 1
	}
	var reply string
	err := h.withDomain(ctx, "running a guest agent command in domain", name, func(d *lv.Domain) error {
		var err error
		reply, err = d.QemuAgentCommand(command, lv.DomainQemuAgentCommandTimeout(secs), 0)
		var le lv.Error
		if errors.As(err, &le) && le.Code == lv.ERR_ARGUMENT_UNSUPPORTED {
			return fmt.Errorf("%w: %s", hypervisor.ErrUnimplemented, strings.TrimSpace(le.Message))
		}
		return err
	})
	return reply, err
}
