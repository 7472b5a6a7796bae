package daemon

import (
	"context"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// The node's label and annotation saying which accelerator its VMs get
// (kvm or tcg) and why (defined in runtime/hypervisor for podvisorctl).
const (
	LabelAccelerator            = hypervisor.NodeLabelAccelerator
	AnnotationAcceleratorReason = hypervisor.NodeAnnotationAcceleratorReason
)

// nodePatcher is the part of apiclient.Client that labels the node.
type nodePatcher interface {
	MergePatch(ctx context.Context, path string, patch, into any) error
}

// acceleratorPatch is the merge patch of the Node object.
func acceleratorPatch(accel, why string) map[string]any {
	return map[string]any{"metadata": map[string]any{
		"labels":      map[string]string{LabelAccelerator: accel},
		"annotations": map[string]string{AnnotationAcceleratorReason: why},
	}}
}

// labelNode patches the node's accelerator label and reason in the
// background, retrying with backoff (the API server may be down, the RBAC
// rule not applied yet) until it succeeds or the returned stop is called.
// The first failure is a warning, the following ones debug lines.
func (d *Daemon) labelNode(c nodePatcher, node, accel, why string, b backoff.BackOff) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		path := "/api/v1/nodes/" + node
		failures := 0
		op := func() error {
			err := c.MergePatch(ctx, path, acceleratorPatch(accel, why), nil)
			if err == nil || ctx.Err() != nil {
				return err
			}
			failures++
			if failures == 1 {
				d.log.Warn("cannot label this node with its accelerator; retrying in the background (RBAC: patch on nodes)",
					"node", node, "label", LabelAccelerator, "err", err)
			} else {
				d.log.Debug("labelling the node failed again", "node", node, "attempt", failures, "err", err)
			}
			return err
		}
		if err := backoff.Retry(op, backoff.WithContext(b, ctx)); err == nil {
			d.log.Info("node labelled with its accelerator", "node", node, LabelAccelerator, accel, "why", why)
		}
	}()
	return func() error {
		cancel()
		wg.Wait()
		return nil
	}
}

// nodeLabelBackoff retries quickly at first, then every 5 minutes at most.
func nodeLabelBackoff() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = time.Second
	b.MaxInterval = 5 * time.Minute
	b.MaxElapsedTime = 0 // until it works or the daemon stops
	return b
}
