package pod

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// configureRestored tells a restored guest, through its agent, the time
// and the new pod's network: its memory holds the checkpointed pod's. A
// failure is logged, not returned: the VM runs, and kubelet restarting it
// would lose the restored state.
func (m *Manager) configureRestored(ctx context.Context, c *Container) {
	log := m.log.With("pod", c.SandboxID, "container", c.ID, "domain", c.DomainName)
	now := m.clock.Now()
	if _, err := m.agentCall(ctx, c.DomainName, map[string]any{"execute": "guest-set-time", "arguments": map[string]any{"time": now.UnixNano()}}); err != nil {
		log.Warn("restored VM: setting the guest's clock through its agent failed; it runs behind by the time since the checkpoint", "err", err)
	}
	sb := m.getSandbox(c.SandboxID)
	if sb == nil || sb.Network == nil || len(sb.Network.Interfaces) == 0 {
		return
	}
	if err := m.setGuestNetwork(ctx, c.DomainName, sb.Network.Interfaces[0]); err != nil {
		log.Error("restored VM: giving the guest the pod's address through its agent failed; it keeps the checkpointed pod's", "ips", sb.Network.IPs(), "err", err)
		return
	}
	log.Info("restored VM: the guest has the pod's address and the time", "ips", sb.Network.IPs())
}

// setGuestNetwork configures the guest's first NIC as ifc with ip(8),
// run through the agent.
func (m *Manager) setGuestNetwork(ctx context.Context, domain string, ifc Interface) error {
	ret, err := m.agentCall(ctx, domain, map[string]any{"execute": "guest-network-get-interfaces"})
	if err != nil {
		return fmt.Errorf("listing the guest's interfaces: %w", err)
	}
	var ifs []struct {
		Name string `json:"name"`
		HW   string `json:"hardware-address"`
	}
	if err := json.Unmarshal(ret, &ifs); err != nil {
		return fmt.Errorf("guest-network-get-interfaces answered %s: %w", ret, err)
	}
	guestIf := ""
	for _, g := range ifs {
		if g.Name != "lo" && g.HW != "" && g.HW != "00:00:00:00:00:00" {
			guestIf = g.Name
			break
		}
	}
	if guestIf == "" {
		return fmt.Errorf("the guest reports no network interface besides lo (%s)", ret)
	}
	for _, cmd := range guestNetCommands(guestIf, ifc) {
		_, errOut, code, err := m.agentExec(ctx, domain, cmd, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", strings.Join(cmd, " "), err)
		}
		if code != 0 {
			return fmt.Errorf("%s exited %d: %s", strings.Join(cmd, " "), code, strings.TrimSpace(string(errOut)))
		}
	}
	return nil
}

// guestNetCommands are the ip(8) commands that give the guest interface
// dev the pod interface's MAC, addresses and routes.
func guestNetCommands(dev string, ifc Interface) [][]string {
	var cmds [][]string
	if ifc.MAC != "" {
		cmds = append(cmds, []string{"ip", "link", "set", "dev", dev, "address", ifc.MAC})
	}
	cmds = append(cmds, []string{"ip", "addr", "flush", "dev", dev, "scope", "global"})
	for _, ip := range ifc.IPs {
		cmds = append(cmds, []string{"ip", "addr", "add", ip.CIDR, "dev", dev})
	}
	cmds = append(cmds, []string{"ip", "link", "set", "dev", dev, "up"})
	for _, ip := range ifc.IPs {
		if ip.Gateway != "" {
			cmds = append(cmds, ipRoute(ip.Gateway, "default", ip.Gateway, dev))
		}
	}
	for _, r := range ifc.Routes {
		if r.Dst == "0.0.0.0/0" || r.Dst == "::/0" {
			continue // the default route comes from the address's gateway
		}
		cmds = append(cmds, ipRoute(r.Dst, r.Dst, r.GW, dev))
	}
	return cmds
}

func ipRoute(family, dst, gw, dev string) []string {
	cmd := []string{"ip"}
	if strings.Contains(family, ":") {
		cmd = append(cmd, "-6")
	}
	cmd = append(cmd, "route", "replace", dst)
	if gw != "" {
		cmd = append(cmd, "via", gw)
	}
	return append(cmd, "dev", dev)
}
