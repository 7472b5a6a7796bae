// Command podvisor-guest-agent is the test guest's QEMU guest agent and
// network configurator. ci/build-guest.sh builds it static (CGO_ENABLED=0)
// into the guest's initramfs; the guest's /etc/rcS runs it three times:
//
//	podvisor-guest-agent netconfig DIR   applies the network config of the
//	                                     cloud-init drive mounted at DIR
//	podvisor-guest-agent cloudconfig F   applies write_files, mounts and
//	                                     runcmd of a #cloud-config user-data
//	podvisor-guest-agent agent           serves the QEMU guest agent protocol
//	                                     on the org.qemu.guest_agent.0 port
//
// It is a test fixture, not a product: enough of qemu-ga for podvisor's
// ExecSync/Exec and for libvirt, with the standard library only.
package main

import (
	"fmt"
	"os"
	"time"
)

const version = "podvisor-guest-agent 1"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: podvisor-guest-agent agent [PORT-NAME] | netconfig DRIVE-DIR | cloudconfig USER-DATA")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "agent":
		name := channelName
		if len(os.Args) > 2 {
			name = os.Args[2]
		}
		os.Exit(runAgent(name))
	case "cloudconfig":
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, "usage: podvisor-guest-agent cloudconfig USER-DATA")
			os.Exit(2)
		}
		os.Exit(runCloudConfig(os.Args[2], os.Stdout))
	case "netconfig":
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, "usage: podvisor-guest-agent netconfig DRIVE-DIR")
			os.Exit(2)
		}
		os.Exit(runNetconfig(os.Args[2], os.Stdout, os.Stderr))
	default:
		fmt.Fprintf(os.Stderr, "podvisor-guest-agent: unknown subcommand %q: accepted agent, netconfig, cloudconfig\n", os.Args[1])
		os.Exit(2)
	}
}

// channelName is the virtio-serial port libvirt and podvisor use.
const channelName = "org.qemu.guest_agent.0"

// runAgent waits for the port (a domain without the channel has none: then
// it gives up quietly after a minute) and serves it until the guest stops.
func runAgent(name string) int {
	var dev string
	for i := 0; ; i++ {
		var err error
		dev, err = findPort("/sys/class/virtio-ports", name)
		if err == nil {
			break
		}
		if i >= 60 {
			fmt.Fprintf(os.Stderr, "podvisor-guest-agent: %v; no agent\n", err)
			return 0
		}
		time.Sleep(time.Second)
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "podvisor-guest-agent: opening %s: %v\n", dev, err)
		return 1
	}
	fmt.Printf("PODVISOR-GUEST: agent=%s\n", dev)
	a := newAgent()
	a.shutdown = busyboxShutdown
	a.cpuDir = "/sys/devices/system/cpu"
	a.setTime, a.freeze, a.thaw = setClock, freezeAll, thawAll
	for {
		// The port reads EOF while no host side is connected: retry.
		if err := a.serve(f, f); err != nil {
			fmt.Fprintf(os.Stderr, "podvisor-guest-agent: %s: %v\n", dev, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// findPort maps a virtio-serial port name to its device, e.g.
// /sys/class/virtio-ports/vport1p1/name = org.qemu.guest_agent.0 -> /dev/vport1p1.
func findPort(sysDir, name string) (string, error) {
	ents, err := os.ReadDir(sysDir)
	if err != nil {
		return "", fmt.Errorf("virtio port %s: %w", name, err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(sysDir + "/" + e.Name() + "/name")
		if err == nil && string(trimNL(b)) == name {
			return "/dev/" + e.Name(), nil
		}
	}
	return "", fmt.Errorf("no virtio port named %s under %s", name, sysDir)
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
