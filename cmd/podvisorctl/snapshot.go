package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/podvisor/podvisor/deploy"
)

// kubeletCheckpoints is where kubelet's checkpoint API writes archives.
const kubeletCheckpoints = "/var/lib/kubelet/checkpoints"

// checkpointImagePrefix names a checkpoint archive as an image: the
// operator's translation maps virtlet.cloud/checkpoint/<file> to
// file:///var/lib/kubelet/checkpoints/<file> (docs/snapshots.md).
const checkpointImagePrefix = virtletImagePrefix + "checkpoint/"

func (a *app) snapshotCmd() *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "snapshot POD",
		Short: "Checkpoint a VM pod through kubelet's checkpoint API (the VM runs on)",
		Long: `Checkpoints the VM of a pod: kubelet's checkpoint API, reached through the
API server's node proxy,

  kubectl create --raw /api/v1/nodes/NODE/proxy/checkpoint/NAMESPACE/POD/CONTAINER -f /dev/null

asks podvisor for a checkpoint archive (the VM's memory state, its disks,
its definition) in /var/lib/kubelet/checkpoints on the pod's node. The VM
runs on after a short pause. The pod's annotations
podvisor.io/checkpoint-mode (memory, disk-only) and
podvisor.io/checkpoint-after (run, stop) choose how. Your kubeconfig needs
the nodes/proxy permission (create); kubelet's checkpoint API must be on
(the ContainerCheckpoint feature, on by default since Kubernetes 1.30).`,
		Example: `  podvisorctl snapshot cirros-vm
  podvisorctl restore checkpoint-cirros-vm_default-cirros-vm-2026-12-03T17:00:00Z.tar --node node-1`,
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
			url := fmt.Sprintf("/api/v1/nodes/%s/proxy/checkpoint/%s/%s/%s", vm.Node, vm.Namespace, vm.Name, vm.Container)
			if timeout > 0 {
				url += "?timeout=" + strconv.Itoa(timeout)
			}
			out, err := k.output(ctx, "create", "--raw", url, "-f", "/dev/null")
			if err != nil {
				return fmt.Errorf("checkpoint of %s on node %s: %w", vm.ref(), vm.Node, err)
			}
			var resp struct {
				Items []string `json:"items"`
			}
			if err := json.Unmarshal(out, &resp); err != nil || len(resp.Items) == 0 {
				return fmt.Errorf("checkpoint of %s: kubelet answered %q, not a list of archives (%v)", vm.ref(), bytes.TrimSpace(out), err)
			}
			for _, p := range resp.Items {
				fmt.Fprintln(a.stdout, p)
			}
			fmt.Fprintf(a.stderr, "Checkpoint of %s on node %s. Restore it as a new pod: %s restore %s --node %s\n",
				vm.ref(), vm.Node, cmd.Root().DisplayName(), path.Base(resp.Items[0]), vm.Node)
			return nil
		},
	}
	cmd.Flags().IntVar(&timeout, "timeout", 0, "seconds kubelet gives the checkpoint (0: kubelet's default)")
	return cmd
}

// restoreOpts are restore's flags.
type restoreOpts struct {
	node, name, from, container string
	dryRun                      bool
}

func (a *app) restoreCmd() *cobra.Command {
	var o restoreOpts
	cmd := &cobra.Command{
		Use:   "restore ARCHIVE",
		Short: "Restore a checkpoint archive as a new VM pod on the node that holds it",
		Long: `Creates a pod on --node whose image is the checkpoint archive ARCHIVE (a file
in /var/lib/kubelet/checkpoints there, as podvisorctl snapshot printed it).
kubelet's archive names hold a time no image name may, so the archive is
first hard-linked beside itself as restore-<hash>.tar (in the node's
podvisor pod), and the pod's image is

  image: virtlet.cloud/checkpoint/restore-<hash>.tar

deploy/image-translations.yaml maps that name to the file
(file:///var/lib/kubelet/checkpoints/...; docs/snapshots.md); podvisor finds
a checkpoint where the image's file is one, and restores it: the guest
continues where it was, with the new pod's address. The checkpoint's base image must be pulled on the node.
--from POD copies the checkpointed pod's annotations, RuntimeClass,
container name and resources (it may still exist, or use the same spec).`,
		Example: `  podvisorctl restore checkpoint-cirros-vm_default-cirros-vm-2026-12-03T17:00:00Z.tar --node node-1 --from cirros-vm
  podvisorctl restore /var/lib/kubelet/checkpoints/x.tar --node node-1 --name copy --dry-run`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%s needs one argument, the archive (got %d: %q)", cmd.CommandPath(), len(args), args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.restore(cmd.Context(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.node, "node", "", "the node whose /var/lib/kubelet/checkpoints holds the archive (required)")
	f.StringVar(&o.name, "name", "", "the new pod's name (default: restored-<archive's pod>)")
	f.StringVar(&o.from, "from", "", "a pod whose annotations, RuntimeClass, container name and resources the new pod copies")
	f.StringVar(&o.container, "container", "vm", "the container's name without --from (the checkpoint's)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the pod instead of creating it")
	return cmd
}

func (a *app) restore(ctx context.Context, archive string, o restoreOpts) error {
	file, err := checkpointFile(archive)
	if err != nil {
		return err
	}
	if o.node == "" {
		return fmt.Errorf("--node is required: the node whose %s holds %s", kubeletCheckpoints, file)
	}
	k, err := a.kubectl()
	if err != nil {
		return err
	}
	image := restoreImageFile(file)
	p, err := a.restoredPod(ctx, k, image, o)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if o.dryRun {
		fmt.Fprintln(a.stdout, string(b))
		return nil
	}
	// kubelet's archive names hold a time (capitals, colons) no image
	// reference may: a hard link beside it gets a name one can.
	pv, err := a.podvisorPod(ctx, k, o.node)
	if err != nil {
		return err
	}
	link := []string{"exec", "-n", a.podvisorNamespace, pv, "-c", deploy.LibvirtContainer, "--",
		"ln", "-f", path.Join(kubeletCheckpoints, file), path.Join(kubeletCheckpoints, image)}
	if _, err := k.output(ctx, link...); err != nil {
		return fmt.Errorf("naming the archive %s for its image on node %s: %w", file, o.node, err)
	}
	c := k.command(ctx, []string{"create", "-f", "-", "-o", "name"})
	var stderr bytes.Buffer
	c.Stdin, c.Stdout, c.Stderr = bytes.NewReader(b), a.stdout, &stderr
	if err := c.Run(); err != nil {
		return &kubectlError{args: []string{"create", "-f", "-", "-o", "name"}, err: err, stderr: stderr.String()}
	}
	fmt.Fprintf(a.stderr, "Restoring %s on node %s; the VM continues once the pod runs (kubectl get pod %s -w).\n", file, o.node, p.Metadata.Name)
	return nil
}

// checkpointFile is the archive's file name in kubelet's checkpoint
// directory, from a name or a path in it.
func checkpointFile(archive string) (string, error) {
	dir, file := path.Split(archive)
	if dir != "" && path.Clean(dir) != kubeletCheckpoints {
		return "", fmt.Errorf("archive %s: give a file in %s on the node (where kubelet writes checkpoints), by name or path", archive, kubeletCheckpoints)
	}
	if !strings.HasSuffix(file, ".tar") || file == ".tar" {
		return "", fmt.Errorf("archive %q: want a checkpoint archive's file name (*.tar)", archive)
	}
	return file, nil
}

// restoreImageFile is the archive's name as an image can name it:
// restore-<12 hex digits of its name's SHA-256>.tar.
func restoreImageFile(file string) string {
	sum := sha256.Sum256([]byte(file))
	return "restore-" + hex.EncodeToString(sum[:6]) + ".tar"
}

// newPod is the pod restore creates.
type newPod struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"metadata"`
	Spec struct {
		NodeName         string         `json:"nodeName"`
		RuntimeClassName string         `json:"runtimeClassName,omitempty"`
		Containers       []newContainer `json:"containers"`
	} `json:"spec"`
}

type newContainer struct {
	Name      string         `json:"name"`
	Image     string         `json:"image"`
	Stdin     bool           `json:"stdin"`
	TTY       bool           `json:"tty"`
	Resources map[string]any `json:"resources,omitempty"`
}

func (a *app) restoredPod(ctx context.Context, k *kubectl, image string, o restoreOpts) (*newPod, error) {
	p := &newPod{APIVersion: "v1", Kind: "Pod"}
	p.Metadata.Name, p.Metadata.Namespace = o.name, a.namespace
	p.Spec.NodeName = o.node
	c := newContainer{Name: o.container, Image: checkpointImagePrefix + image, Stdin: true, TTY: true}
	p.Metadata.Annotations = map[string]string{targetRuntimeAnnotation: "virtlet.cloud"}
	if o.from != "" {
		out, err := k.output(ctx, append(append([]string{"get", "pod", o.from}, a.namespaceArgs()...), "-o", "json")...)
		if err != nil {
			return nil, fmt.Errorf("--from %s: %w", o.from, err)
		}
		var src podJSON
		if err := json.Unmarshal(out, &src); err != nil || len(src.Spec.Containers) == 0 {
			return nil, fmt.Errorf("--from %s: reading the pod from kubectl: %v", o.from, err)
		}
		for k, v := range src.Metadata.Annotations {
			if !strings.HasPrefix(k, "kubectl.kubernetes.io/") {
				p.Metadata.Annotations[k] = v
			}
		}
		p.Spec.RuntimeClassName = src.Spec.RuntimeClassName
		sc := src.Spec.Containers[0]
		c.Name, c.Stdin, c.TTY = sc.Name, sc.Stdin, sc.TTY
		if len(sc.Resources.Limits) > 0 {
			c.Resources = map[string]any{"limits": sc.Resources.Limits}
		}
		if p.Metadata.Name == "" {
			p.Metadata.Name = "restored-" + src.Metadata.Name
		}
	}
	if p.Metadata.Name == "" {
		p.Metadata.Name = "restored-" + strings.TrimSuffix(strings.TrimPrefix(image, "restore-"), ".tar")
	}
	p.Spec.Containers = []newContainer{c}
	return p, nil
}
