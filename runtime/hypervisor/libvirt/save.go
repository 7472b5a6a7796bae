package libvirt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

var _ hypervisor.Saver = (*Hypervisor)(nil)

// virtFSBlocker is QEMU's migration blocker for a mounted 9p export; save
// is a migration to a file, so it refuses the same way.
var virtFSBlocker = regexp.MustCompile(`VirtFS export path '([^']*)' is mounted in the guest using mount_tag '([^']*)'`)

// Save writes the running domain's memory and device state to path
// (virDomainSaveFlags) and so shuts it off with reason saved. A mounted 9p
// share gives hypervisor.ErrNotSavable naming it; the domain keeps
// running. On error path is removed.
func (h *Hypervisor) Save(ctx context.Context, name, path string) error {
	err := h.withDomain(ctx, "saving domain", name, func(d *lv.Domain) error {
		return d.SaveFlags(path, "", 0)
	})
	if err == nil {
		h.rec.stopped(name, time.Now(), hypervisor.ReasonSaved)
		return nil
	}
	if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		h.log.Warn("removing the file of a failed save", "domain", name, "path", path, "err", rerr)
	}
	var le lv.Error
	if errors.As(err, &le) {
		if m := virtFSBlocker.FindStringSubmatch(le.Message); m != nil {
			return fmt.Errorf("saving domain %q: %w: the guest has the 9p share %s (tag %s) mounted, and QEMU cannot save or migrate a mounted virtio-9p export: unmount it in the guest, or take a disk-only checkpoint",
				name, hypervisor.ErrNotSavable, m[1], m[2])
		}
	}
	return err
}

// Restore starts a domain from the state saved at path with domainXML as
// its definition (virDomainRestoreFlags; libvirt checks that the hardware
// matches the saved domain's). libvirt restores a save file only into the
// UUID it was saved from: for another name or UUID the definition inside
// the file is rewritten first (retargetSaveFile), so the file then names
// the new domain. It runs on return.
func (h *Hypervisor) Restore(ctx context.Context, path, domainXML string) error {
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(domainXML); err != nil {
		return fmt.Errorf("restoring a domain: %w: the domain XML does not parse: %w", errdefs.ErrInvalidArgument, err)
	}
	saved, err := h.SavedXML(ctx, path)
	if err != nil {
		return err
	}
	var old libvirtxml.Domain
	if err := old.Unmarshal(saved); err != nil {
		return fmt.Errorf("restoring domain %q: the saved definition does not parse: %w", dom.Name, err)
	}
	if old.UUID != dom.UUID || old.Name != dom.Name {
		if dom.UUID == "" {
			return fmt.Errorf("restoring domain %q as another: %w: the new definition needs a <uuid>", dom.Name, errdefs.ErrInvalidArgument)
		}
		if err := retargetSaveFile(path, old.Name, old.UUID, dom.Name, dom.UUID); err != nil {
			return err
		}
	}
	at := time.Now()
	err = h.do(ctx, func(c *lv.Connect) error {
		return c.DomainRestoreFlags(path, domainXML, lv.DOMAIN_SAVE_RUNNING)
	})
	if err != nil {
		return wrapErr(fmt.Sprintf("restoring domain %q from %s", dom.Name, path), err)
	}
	h.rec.started(dom.Name, at)
	return nil
}

// SavedXML returns the definition stored in a save file.
func (h *Hypervisor) SavedXML(ctx context.Context, path string) (string, error) {
	var x string
	err := h.do(ctx, func(c *lv.Connect) error {
		var err error
		x, err = c.DomainSaveImageGetXMLDesc(path, lv.DOMAIN_SAVE_IMAGE_XML_SECURE)
		return err
	})
	return x, wrapErr("reading the domain definition in save file "+path, err)
}
