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

  kubectl attach -i -t -n NAMESPACE POD -c CONTAINER

podvisor serves kubectl attach as the VM's serial console (ttyS0). Type
Ctrl-] to detach: the VM keeps running. Closing the input detaches too.

The pod's container needs stdin: true for your keystrokes to reach the VM
(without it the console is read-only and -i is not passed), and tty: true
for a raw terminal (-t, given when your input is a terminal): keys such as
Ctrl-C and Ctrl-] then go to the VM at once. Without tty: true, lines are
sent when you press Enter, Ctrl-] included. deploy/examples/cirros-vm.yaml
sets both. kubectl logs POD shows the same console's output without
attaching.`,
		Example: `  podvisorctl console cirros-vm
  kubectl podvisor -n vms console ubuntu-vm`,
		Args:              onePod,
		ValidArgsFunction: a.completeVMPods,
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
			attach, detach := []string{"attach"}, ""
			switch term := a.isTerminal(a.stdin); {
			case !vm.Stdin:
				fmt.Fprintf(a.stderr, "warning: container %s of pod %s has stdin: false: the console is read-only (set stdin: true and tty: true in the pod to type into it)\n", vm.Container, vm.ref())
				detach = "Stop with Ctrl-C."
			case vm.TTY && term:
				attach = append(attach, "-i", "-t")
				detach = "Detach with Ctrl-]."
			case term:
				attach = append(attach, "-i")
				detach = "Detach with Ctrl-] and Enter (the container has no tty: true, so lines go when you press Enter)."
			default:
				attach = append(attach, "-i")
				detach = "A Ctrl-] in the input, or its end, detaches."
			}
			fmt.Fprintf(a.stderr, "Serial console of %s (domain %s on node %s). %s\n", vm.ref(), vm.Domain, vm.Node, detach)
			return k.interactive(ctx, append(attach, "-n", vm.Namespace, vm.Name, "-c", vm.Container)...)
		},
	}
}
