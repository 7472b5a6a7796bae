package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/podvisor/podvisor/deploy"
)

func (a *app) virshCmd() *cobra.Command {
	var node string
	cmd := &cobra.Command{
		Use:   "virsh [--node NODE] VIRSH-COMMAND [ARGS...]",
		Short: "Run virsh in the libvirt container of a node's podvisor pod",
		Long: `Runs virsh in the libvirt container of the podvisor pod on a node:

  kubectl exec -n kube-system PODVISOR-POD -c libvirt -- virsh -c qemu:///system ARGS...

An argument @POD (a VM pod, in -n NAMESPACE) is replaced by the name of
that pod's libvirt domain (pv-<16 hex digits of its container ID>), and the
node is the one the pod runs on. Without @POD, name the node with --node.

podvisorctl's own flags come before the virsh command; everything from the
virsh command on is virsh's. virsh runs without a terminal: interactive
commands (console, edit) do not work (the console is podvisorctl console).
podvisor owns its domains: change them with virsh only to investigate, as
podvisor does not expect it.`,
		Example: `  podvisorctl virsh --node worker-1 list --all
  podvisorctl virsh dumpxml @cirros-vm
  podvisorctl -n vms virsh dominfo @ubuntu-vm
  podvisorctl virsh domstats @cirros-vm`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && args[0] == "--" {
				args = args[1:]
			}
			if len(args) == 0 {
				return errors.New("virsh needs a virsh command, e.g. 'podvisorctl virsh --node NODE list --all' or 'podvisorctl virsh dumpxml @POD'")
			}
			return a.virsh(cmd.Context(), node, args)
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVar(&node, "node", "", "the node whose podvisor pod runs virsh (default: the node of the @POD arguments)")
	return cmd
}

func (a *app) virsh(ctx context.Context, node string, args []string) error {
	k, err := a.kubectl()
	if err != nil {
		return err
	}
	virshArgs := make([]string, 0, len(args))
	podNode, fromPod := "", ""
	for _, arg := range args {
		if len(arg) < 2 || arg[0] != '@' {
			virshArgs = append(virshArgs, arg)
			continue
		}
		vm, err := a.vmPod(ctx, k, arg[1:])
		if err != nil {
			return err
		}
		switch {
		case podNode == "":
			podNode, fromPod = vm.Node, vm.ref()
		case podNode != vm.Node:
			return fmt.Errorf("pods %s (node %s) and %s (node %s) run on different nodes: one virsh runs on one node", fromPod, podNode, vm.ref(), vm.Node)
		}
		virshArgs = append(virshArgs, vm.Domain)
	}
	switch {
	case node == "" && podNode == "":
		return errors.New("which node? Name it with --node NODE, or name a VM pod as @POD in the virsh arguments")
	case node != "" && podNode != "" && node != podNode:
		return fmt.Errorf("--node %s, but pod %s runs on node %s", node, fromPod, podNode)
	case node == "":
		node = podNode
	}
	pod, err := a.podvisorPod(ctx, k, node)
	if err != nil {
		return err
	}
	return k.interactive(ctx, append([]string{"exec", "-n", a.podvisorNamespace, pod, "-c", deploy.LibvirtContainer, "--",
		"virsh", "-c", deploy.LibvirtURI}, virshArgs...)...)
}
