// Package fakenet is a pod network without kernel objects, for the unit
// tier and the simulated hypervisor: it hands out addresses from a subnet
// like the host-local IPAM plugin (round robin, one file per address on
// disk, so a restarted daemon does not hand one out twice and an
// allocation costs the same with 5 pods or 5,000), and can be told to fail.
package fakenet

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/podtypes"
)

// Network allocates pod IPs from a /16.
type Network struct {
	mu        sync.Mutex
	dir       string
	prefix    netip.Prefix
	gateway   netip.Addr
	allocated map[string]netip.Addr // sandbox ID -> address
	owner     map[netip.Addr]string // address -> sandbox ID
	last      netip.Addr            // the last address handed out
	failSetup error
	failTear  error
}

// New makes a network keeping its allocations in dir ("" = memory only).
// subnet defaults to 10.88.0.0/16 with the gateway at .1.
func New(dir, subnet string) (*Network, error) {
	if subnet == "" {
		subnet = "10.88.0.0/16"
	}
	p, err := netip.ParsePrefix(subnet)
	if err != nil || !p.Addr().Is4() {
		return nil, fmt.Errorf("fake network subnet %q: want an IPv4 CIDR like 10.88.0.0/16", subnet)
	}
	p = p.Masked()
	n := &Network{dir: dir, prefix: p, gateway: p.Addr().Next(), allocated: map[string]netip.Addr{}, owner: map[netip.Addr]string{}}
	n.last = n.gateway
	if dir != "" {
		if err := n.load(); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (n *Network) load() error {
	entries, err := os.ReadDir(n.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading fake network state: %w", err)
	}
	for _, e := range entries {
		a, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue // a temporary file of an interrupted write
		}
		id, err := os.ReadFile(filepath.Join(n.dir, e.Name()))
		if err != nil {
			return fmt.Errorf("reading fake network state: %w", err)
		}
		n.allocated[string(id)] = a
		n.owner[a] = string(id)
	}
	return nil
}

// record keeps a's owner on disk, as host-local does: a file per address.
func (n *Network) record(a netip.Addr, id string) error {
	if n.dir == "" {
		return nil
	}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return fmt.Errorf("creating fake network state dir: %w", err)
	}
	path := filepath.Join(n.dir, a.String())
	if err := os.WriteFile(path+".tmp", []byte(id), 0o600); err != nil {
		return fmt.Errorf("writing fake network state: %w", err)
	}
	return os.Rename(path+".tmp", path)
}

func (n *Network) release(id string) error {
	a, ok := n.allocated[id]
	if !ok {
		return nil
	}
	if n.dir != "" {
		if err := os.Remove(filepath.Join(n.dir, a.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("releasing fake network address %s: %w", a, err)
		}
	}
	delete(n.allocated, id)
	delete(n.owner, a)
	return nil
}

// next finds a free address after the last one handed out, wrapping
// around; the network and broadcast addresses and the gateway are never
// handed out.
func (n *Network) next() (netip.Addr, bool) {
	first := n.gateway.Next()
	a := n.last
	for range 1 << (32 - n.prefix.Bits()) {
		a = a.Next()
		if !n.prefix.Contains(a.Next()) { // a is the broadcast address
			a = first
		}
		if a != n.gateway && n.owner[a] == "" {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// FailSetup makes every Setup fail with err (nil: succeed again).
func (n *Network) FailSetup(err error) { n.mu.Lock(); n.failSetup = err; n.mu.Unlock() }

// FailTeardown makes every Teardown fail with err (nil: succeed again).
func (n *Network) FailTeardown(err error) { n.mu.Lock(); n.failTear = err; n.mu.Unlock() }

// Allocated lists the sandbox IDs holding an address, sorted: a leak
// checker's view.
func (n *Network) Allocated() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]string, 0, len(n.allocated))
	for id := range n.allocated {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Setup allocates the next free address for sb.
func (n *Network) Setup(ctx context.Context, sb *podtypes.Sandbox) (*podtypes.NetworkStatus, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.failSetup != nil {
		return nil, fmt.Errorf("fake CNI ADD: %w", n.failSetup)
	}
	for _, k := range []string{"k8s.v1.cni.cncf.io/networks", "cni"} {
		if _, ok := sb.Config.Annotations[k]; ok {
			// Not silently eth0 alone: the pod asked for more.
			return nil, errdefs.Unimplementedf("annotation %s: the simulated network (--network fake) has no extra networks; run podvisor with --network cni", k)
		}
	}
	addr, ok := n.allocated[sb.ID]
	if !ok {
		found, ok := n.next()
		if !ok {
			return nil, fmt.Errorf("fake CNI ADD: no free address left in %s", n.prefix)
		}
		if err := n.record(found, sb.ID); err != nil {
			return nil, err
		}
		addr = found
		n.allocated[sb.ID] = addr
		n.owner[addr] = sb.ID
		n.last = addr
	}
	return &podtypes.NetworkStatus{Interfaces: []podtypes.Interface{{
		Name:   "eth0",
		MAC:    macFor(sb.ID),
		MTU:    1500,
		IPs:    []podtypes.IPConfig{{CIDR: netip.PrefixFrom(addr, n.prefix.Bits()).String(), Gateway: n.gateway.String()}},
		Routes: []podtypes.Route{{Dst: "0.0.0.0/0", GW: n.gateway.String()}},
	}}}, nil
}

// Teardown releases sb's address; releasing twice succeeds.
func (n *Network) Teardown(ctx context.Context, sb *podtypes.Sandbox) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.failTear != nil {
		return fmt.Errorf("fake CNI DEL: %w", n.failTear)
	}
	return n.release(sb.ID)
}

// macFor derives a stable locally administered unicast MAC.
func macFor(id string) string {
	h := sha256.Sum256([]byte(id))
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", h[0], h[1], h[2], h[3], h[4])
}

// CollectOrphans releases the addresses of sandboxes not in keep.
func (n *Network) CollectOrphans(_ context.Context, keep map[string]bool) ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var removed []string
	for id, a := range n.allocated {
		if !keep[id] {
			if err := n.release(id); err != nil {
				return removed, err
			}
			removed = append(removed, fmt.Sprintf("fake network address %s of sandbox %s", a, id))
		}
	}
	sort.Strings(removed)
	return removed, nil
}
