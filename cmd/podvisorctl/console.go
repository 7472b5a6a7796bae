package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) consoleCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "console POD",
		Short: "Attach to a VM's serial console (detach with Ctrl-])",
		Long: `Attaches your terminal to the serial console of a VM pod:

  kubectl attach -it -n NAMESPACE POD -c CONTAINER

podvisor serves kubectl attach as the VM's serial console (ttyS0). Type
Ctrl-] to detach: the VM keeps running. Closing the terminal detaches too.
The pod's container needs stdin: true and tty: true (as in
deploy/examples/cirros-vm.yaml) for your keystrokes to reach the VM.
kubectl logs POD shows the same console's output without attaching.`,
		Example: `  podvisorctl console cirros-vm
  kubectl podvisor -n vms console ubuntu-vm`,
		Args: onePod,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			k, err := a.kubectl()
			if err != nil {
				return err
			}
			vm, err := a.vmPod(ctx, k, args[0])
			if err != nil {
				return err
			}
			if !vm.Stdin || !vm.TTY {
				fmt.Fprintf(a.stderr, "warning: container %s of pod %s has stdin: %v, tty: %v; with both true your keystrokes reach the VM, otherwise the console is read-only\n", vm.Container, vm.ref(), vm.Stdin, vm.TTY)
			}
			fmt.Fprintf(a.stderr, "Serial console of %s (domain %s on node %s). Detach with Ctrl-].\n", vm.ref(), vm.Domain, vm.Node)
			return k.interactive(ctx, "attach", "-it", "-n", vm.Namespace, vm.Name, "-c", vm.Container)
		},
	}
}

func (a *app) vncCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "vnc POD",
		Short: "Not available yet: a VM's VNC display cannot be reached from outside its pod",
		Long: `Not built. Every podvisor VM has a VNC display, but QEMU runs in the pod's
network namespace and the display listens on 127.0.0.1 there.
kubectl port-forward does not reach it: podvisor forwards a port to the
guest at the pod IP, not to the pod namespace's loopback. Until podvisor
forwards the display, use the serial console (podvisorctl console POD) or
ssh (podvisorctl ssh POD). 'podvisorctl virsh domdisplay @POD' shows the
display's address inside the pod.`,
		Args: onePod,
		RunE: func(*cobra.Command, []string) error {
			return fmt.Errorf("vnc is not built: a podvisor VM's VNC display listens on 127.0.0.1 inside the pod's network namespace, which kubectl port-forward does not reach; use the serial console (podvisorctl console POD) or ssh (podvisorctl ssh POD)")
		},
	}
}
