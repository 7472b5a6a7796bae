// Package fakenet is a pod network without kernel objects, for the unit
// tier and the simulated hypervisor: it hands out addresses from a subnet
// like the host-local IPAM plugin, remembers them on disk so a restarted
// daemon does not hand one out twice, and can be told to fail.
package fakenet

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/podvisor/podvisor/runtime/pod"
)

// Network allocates pod IPs from a /16.
type Network struct {
	mu        sync.Mutex
	dir       string
	prefix    netip.Prefix
	gateway   netip.Addr
	allocated map[string]netip.Addr // sandbox ID -> address
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
	n := &Network{dir: dir, prefix: p, gateway: p.Addr().Next(), allocated: map[string]netip.Addr{}}
	if dir != "" {
		if err := n.load(); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (n *Network) statePath() string { return filepath.Join(n.dir, "allocations.json") }

func (n *Network) load() error {
	data, err := os.ReadFile(n.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading fake network state: %w", err)
	}
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("decoding fake network state %s: %w", n.statePath(), err)
	}
	for id, s := range m {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("fake network state %s: bad address %q", n.statePath(), s)
		}
		n.allocated[id] = a
	}
	return nil
}

func (n *Network) save() error {
	if n.dir == "" {
		return nil
	}
	m := map[string]string{}
	for id, a := range n.allocated {
		m[id] = a.String()
	}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return fmt.Errorf("creating fake network state dir: %w", err)
	}
	tmp := n.statePath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("writing fake network state: %w", err)
	}
	return os.Rename(tmp, n.statePath())
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
func (n *Network) Setup(ctx context.Context, sb *pod.Sandbox) (*pod.NetworkStatus, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.failSetup != nil {
		return nil, fmt.Errorf("fake CNI ADD: %w", n.failSetup)
	}
	addr, ok := n.allocated[sb.ID]
	if !ok {
		used := map[netip.Addr]bool{n.gateway: true}
		for _, a := range n.allocated {
			used[a] = true
		}
		var found netip.Addr
		for a := n.gateway.Next(); n.prefix.Contains(a); a = a.Next() {
			if !n.prefix.Contains(a.Next()) {
				break // the broadcast address
			}
			if !used[a] {
				found = a
				break
			}
		}
		if !found.IsValid() {
			return nil, fmt.Errorf("fake CNI ADD: no free address left in %s", n.prefix)
		}
		addr = found
		n.allocated[sb.ID] = addr
		if err := n.save(); err != nil {
			delete(n.allocated, sb.ID)
			return nil, err
		}
	}
	return &pod.NetworkStatus{Interfaces: []pod.Interface{{
		Name:   "eth0",
		MAC:    macFor(sb.ID),
		MTU:    1500,
		IPs:    []pod.IPConfig{{CIDR: netip.PrefixFrom(addr, n.prefix.Bits()).String(), Gateway: n.gateway.String()}},
		Routes: []pod.Route{{Dst: "0.0.0.0/0", GW: n.gateway.String()}},
	}}}, nil
}

// Teardown releases sb's address; releasing twice succeeds.
func (n *Network) Teardown(ctx context.Context, sb *pod.Sandbox) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.failTear != nil {
		return fmt.Errorf("fake CNI DEL: %w", n.failTear)
	}
	if _, ok := n.allocated[sb.ID]; !ok {
		return nil
	}
	delete(n.allocated, sb.ID)
	return n.save()
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
			delete(n.allocated, id)
			removed = append(removed, fmt.Sprintf("fake network address %s of sandbox %s", a, id))
		}
	}
	sort.Strings(removed)
	if len(removed) == 0 {
		return nil, nil
	}
	return removed, n.save()
}
