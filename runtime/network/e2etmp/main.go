// Temporary by-hand end-to-end check; not committed.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"libvirt.org/go/libvirtxml"

	"github.com/podvisor/podvisor/runtime/network"
	"github.com/podvisor/podvisor/runtime/pod"
)

func main() {
	ctx := context.Background()
	dir := os.Args[2]
	n, err := network.New(network.Config{ConfDir: dir + "/conf", NetNSDir: "/run/netns", CacheDir: dir + "/cache"})
	must(err)
	sb := &pod.Sandbox{ID: "e2e0e2e0e2e0e2e0e2e0", Config: pod.SandboxConfig{Name: "e2e-vm", Namespace: "default", UID: "u1",
		DNS: pod.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"default.svc.cluster.local"}}}}
	switch os.Args[1] {
	case "up":
		st, err := n.Setup(ctx, sb)
		must(err)
		sb.Network = st
		b, _ := json.Marshal(st)
		must(os.WriteFile(dir+"/status.json", b, 0o644))
		_, env, err := n.NICs(ctx, sb, nil)
		must(err)
		d := &libvirtxml.Domain{Type: "qemu", Name: "pv-e2e-network",
			Memory: &libvirtxml.DomainMemory{Value: 256, Unit: "MiB"},
			OS:     &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Type: "hvm", Machine: "pc"}},
			Devices: &libvirtxml.DomainDeviceList{
				Emulator: dir + "/podvisor-vmwrapper",
				Disks: []libvirtxml.DomainDisk{{Device: "disk",
					Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2"},
					Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: dir + "/root.qcow2"}},
					Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"}}},
				Serials: []libvirtxml.DomainSerial{{
					Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: dir + "/console.log"}}}},
			},
			QEMUCommandline: &libvirtxml.DomainQEMUCommandline{},
		}
		for k, v := range env {
			d.QEMUCommandline.Envs = append(d.QEMUCommandline.Envs, libvirtxml.DomainQEMUCommandlineEnv{Name: k, Value: v})
		}
		x, err := d.Marshal()
		must(err)
		must(os.WriteFile(dir+"/domain.xml", []byte(x), 0o644))
		out, err := exec.Command("virsh", "-c", "qemu:///system", "create", dir+"/domain.xml").CombinedOutput()
		fmt.Printf("%s", out)
		must(err)
		fmt.Println("IP", st.IPs(), "MAC", st.Interfaces[0].MAC, "netns", st.NetNS)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		out, _ = exec.Command("virsh", "-c", "qemu:///system", "destroy", "pv-e2e-network").CombinedOutput()
		fmt.Printf("%s", out)
		must(n.Teardown(ctx, sb))
		fmt.Println("torn down")
	case "down":
		b, err := os.ReadFile(dir + "/status.json")
		must(err)
		sb.Network = &pod.NetworkStatus{}
		must(json.Unmarshal(b, sb.Network))
		out, _ := exec.Command("virsh", "-c", "qemu:///system", "destroy", "pv-e2e-network").CombinedOutput()
		fmt.Printf("%s", out)
		must(n.Teardown(ctx, sb))
		fmt.Println("torn down")
	}
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
