package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/podvisor/podvisor/deploy"
)

func (a *app) genCmd() *cobra.Command {
	var (
		image, tag string
		crdOnly    bool
	)
	cmd := &cobra.Command{
		Use:   "gen",
		Short: "Print the YAML that deploys podvisor (for kubectl apply -f -)",
		Long: `Prints podvisor's deploy manifests as one YAML stream: the CRDs, RBAC,
the image-translations ConfigMap, the RuntimeClass, the podvisor DaemonSet
and the node-setup DaemonSet that puts criproxy in front of containerd.
These are the files of deploy/ in podvisor's source, built into
podvisorctl; without flags gen prints them unchanged.

--image (or --tag) sets every container's image; --podvisor-namespace moves
the DaemonSets, ServiceAccount and ConfigMaps to another namespace and adds
that Namespace (give the same --podvisor-namespace to podvisorctl's other
verbs then). Nodes run VMs once labelled:
  kubectl label node NODE extraRuntime=virtlet podvisor.io/enabled=true`,
		Example: `  podvisorctl gen | kubectl apply -f -
  podvisorctl gen --image registry.example.com/podvisor:v0.1.0 > podvisor.yaml
  podvisorctl gen --tag v0.1.0 --podvisor-namespace podvisor-system
  podvisorctl gen --crd | kubectl apply -f -`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			ref := image
			if tag != "" {
				if ref == "" {
					ref = deploy.DefaultImage
				}
				var err error
				if ref, err = withTag(ref, tag); err != nil {
					return err
				}
			}
			if ref != "" {
				if err := deploy.ValidImage(ref); err != nil {
					return fmt.Errorf("--image: %w", err)
				}
			}
			if err := deploy.ValidNamespace(a.podvisorNamespace); err != nil {
				return fmt.Errorf("--podvisor-namespace: %w", err)
			}
			out, err := deploy.Render(deploy.Options{Image: ref, Namespace: a.podvisorNamespace, CRDsOnly: crdOnly})
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&image, "image", "", "image of every container, [REGISTRY/]NAME[:TAG] (default "+deploy.DefaultImage+", a placeholder: no image is published)")
	cmd.Flags().StringVar(&tag, "tag", "", "replace the image's tag (of --image, or of the default image)")
	cmd.Flags().BoolVar(&crdOnly, "crd", false, "print the CustomResourceDefinitions only")
	return cmd
}

// withTag replaces the tag of an image reference.
func withTag(ref, tag string) (string, error) {
	if strings.Contains(ref, "@") {
		return "", fmt.Errorf("--tag %s: --image %s names a digest; give either a tag or a digest", tag, ref)
	}
	name := ref
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		name = ref[:i]
	}
	out := name + ":" + tag
	if err := deploy.ValidImage(out); err != nil {
		return "", fmt.Errorf("--tag %q is not a tag: want letters, digits, '_', '.' and '-', at most 128, not starting with '.' or '-'", tag)
	}
	return out, nil
}
