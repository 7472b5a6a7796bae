package main

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/podvisor/podvisor/deploy"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

type nodeVersion struct {
	Node    string `json:"node"`
	Pod     string `json:"pod"`
	Version string `json:"version,omitempty"`
	// Accelerator (kvm, tcg) and why, from the labels podvisor sets on
	// its node (--node-name); empty when the node has none.
	Accelerator       string `json:"accelerator,omitempty"`
	AcceleratorReason string `json:"acceleratorReason,omitempty"`
	Error             string `json:"error,omitempty"`
}

type versions struct {
	Client string        `json:"client"`
	Go     string        `json:"go"`
	Nodes  []nodeVersion `json:"nodes,omitempty"`
}

func (a *app) versionCmd() *cobra.Command {
	var (
		clientOnly bool
		output     string
	)
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print podvisorctl's version and podvisor's on each node",
		Long: `Prints podvisorctl's version, then the version of podvisor on every node
that runs the DaemonSet, read with

  kubectl exec -n kube-system PODVISOR-POD -c podvisor -- podvisor --version

and the accelerator its VMs get (kvm or tcg) and why, from the node's
label podvisor.io/accelerator and annotation podvisor.io/accelerator-reason
(podvisor sets them when run with --node-name; kubectl get nodes).

--client prints podvisorctl's alone and needs no cluster. A node whose
version cannot be read is reported and makes the exit code 1.`,
		Example: `  podvisorctl version
  podvisorctl version --client
  podvisorctl version -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: want text or json", output)
			}
			v := versions{Client: version, Go: runtime.Version()}
			var clusterErr error
			if !clientOnly {
				v.Nodes, clusterErr = a.nodeVersions(cmd.Context())
			}
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(v); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.stdout, "podvisorctl %s (%s)\n", v.Client, v.Go)
				for _, n := range v.Nodes {
					if n.Error != "" {
						fmt.Fprintf(a.stdout, "node %s: error: %s\n", n.Node, n.Error)
					} else {
						fmt.Fprintf(a.stdout, "node %s: podvisor %s (pod %s), %s\n", n.Node, n.Version, n.Pod, acceleratorText(n))
					}
				}
			}
			if clusterErr != nil {
				return fmt.Errorf("%w (--client skips the cluster)", clusterErr)
			}
			seen := map[string]bool{}
			for _, n := range v.Nodes {
				if n.Error != "" {
					return fmt.Errorf("could not read podvisor's version on every node")
				}
				seen[n.Version] = true
			}
			if len(seen) > 1 {
				fmt.Fprintln(a.stderr, "warning: the nodes run different podvisor versions (a rollout in progress?)")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "print podvisorctl's version only; contact no cluster")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func (a *app) nodeVersions(ctx context.Context) ([]nodeVersion, error) {
	k, err := a.kubectl()
	if err != nil {
		return nil, err
	}
	pods, err := a.podvisorPods(ctx, k, "")
	if err != nil {
		return nil, err
	}
	if len(pods) == 0 {
		return nil, a.noPodvisorPod("")
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Spec.NodeName < pods[j].Spec.NodeName })
	accel := nodeAccelerators(ctx, k)
	var out []nodeVersion
	for _, p := range pods {
		n := nodeVersion{Node: p.Spec.NodeName, Pod: p.ref()}
		n.Accelerator, n.AcceleratorReason = accel[n.Node][0], accel[n.Node][1]
		if p.Status.Phase != "Running" {
			n.Error = "pod " + p.ref() + " is " + p.Status.Phase
			out = append(out, n)
			continue
		}
		b, err := k.output(ctx, "exec", "-n", p.Metadata.Namespace, p.Metadata.Name, "-c", deploy.PodvisorContainer, "--", deploy.PodvisorBinary, "--version")
		if err != nil {
			n.Error = err.Error()
		} else {
			n.Version = strings.TrimPrefix(strings.TrimSpace(string(b)), "podvisor ")
		}
		out = append(out, n)
	}
	return out, nil
}

// nodeAccelerators reads every node's accelerator label and reason with
// one kubectl get nodes; a failure (no right to list nodes) leaves them
// unknown rather than failing the verb.
func nodeAccelerators(ctx context.Context, k *kubectl) map[string][2]string {
	b, err := k.output(ctx, "get", "nodes", "-o", "json")
	if err != nil {
		return nil
	}
	var l struct {
		Items []struct {
			Metadata struct {
				Name        string            `json:"name"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if json.Unmarshal(b, &l) != nil {
		return nil
	}
	out := map[string][2]string{}
	for _, n := range l.Items {
		md := n.Metadata
		out[md.Name] = [2]string{md.Labels[hypervisor.NodeLabelAccelerator], md.Annotations[hypervisor.NodeAnnotationAcceleratorReason]}
	}
	return out
}

func acceleratorText(n nodeVersion) string {
	if n.Accelerator == "" {
		return "accelerator unknown (no " + hypervisor.NodeLabelAccelerator + " label on the node: podvisor runs without --node-name or may not patch nodes)"
	}
	if n.AcceleratorReason == "" {
		return "accelerator " + n.Accelerator
	}
	return "accelerator " + n.Accelerator + ": " + n.AcceleratorReason
}
