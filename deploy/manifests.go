// Package deploy holds podvisor's Kubernetes manifests (YAML files in this
// directory and examples/) and renders them for `podvisorctl gen`.
//
// The YAML files are the source: they are written by hand, with their
// comments, and `kubectl apply -k deploy/` applies them as they are. Render
// embeds them and prints them in the kustomization's order with two
// substitutions, the image and the namespace; with the default Options it
// prints the files unchanged (TestRenderDefaultsAreTheFiles). The package's
// tests validate the manifests: strict decoding with the client-go scheme,
// CRD structure, custom resources against the CRDs' schemas, and consistency
// with the binaries (flags, criproxy's handler, annotations, image
// translations).
package deploy

import (
	"bytes"
	"embed"
	"fmt"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

//go:embed *.yaml
var files embed.FS

//go:embed examples/*.yaml
var examples embed.FS

// Example is the file examples/name as it is in the repository (the e2e
// suite applies the examples as a user would).
func Example(name string) ([]byte, error) {
	b, err := examples.ReadFile("examples/" + name)
	if err != nil {
		return nil, fmt.Errorf("reading example %s: %w", name, err)
	}
	return b, nil
}

const (
	// DefaultImage is the image every container of the manifests names: a
	// placeholder built by deploy/image/Dockerfile (no image is published).
	DefaultImage = "podvisor/podvisor:dev"
	// DefaultNamespace is where the DaemonSets, the ServiceAccount and the
	// ConfigMaps live.
	DefaultNamespace = "kube-system"
	// CRDFile is the file of the CustomResourceDefinitions.
	CRDFile = "crds.yaml"
)

// The DaemonSet's facts podvisorctl relies on to find a node's podvisor pod
// and talk to libvirt in it (TestDaemonSetFacts checks them against
// daemonset.yaml).
const (
	// DaemonSetName is the podvisor DaemonSet.
	DaemonSetName = "podvisor"
	// RuntimeSelector selects the podvisor DaemonSet's pods.
	RuntimeSelector = "app.kubernetes.io/name=podvisor,app.kubernetes.io/component=runtime"
	// PodvisorContainer runs the daemon; LibvirtContainer runs libvirtd
	// (and has virsh); VMsContainer holds the QEMU processes' namespaces.
	PodvisorContainer = "podvisor"
	LibvirtContainer  = "libvirt"
	VMsContainer      = "vms"
	// PrepareNodeContainer is the init container.
	PrepareNodeContainer = "prepare-node"
	// PodvisorBinary is the daemon's path in the image.
	PodvisorBinary = "/usr/local/bin/podvisor"
	// LibvirtURI is the daemon's --libvirt-uri.
	LibvirtURI = "qemu:///system"
)

// Options change what Render prints. The zero value renders the files as
// they are.
type Options struct {
	// Image replaces DefaultImage in every container ("" keeps it).
	Image string
	// Namespace replaces DefaultNamespace ("" keeps it). Another namespace
	// also gets a Namespace object, first.
	Namespace string
	// CRDsOnly renders crds.yaml alone.
	CRDsOnly bool
}

// File is one rendered manifest.
type File struct {
	Name string // as in deploy/, e.g. "daemonset.yaml"; "" for the generated Namespace
	Data []byte
}

var (
	// An image reference: [domain[:port]/]path[:tag][@digest], after the
	// grammar of github.com/distribution/reference (no IPv6 hosts).
	imageRE = regexp.MustCompile(`^` +
		`(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?` +
		`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*` +
		`(?::[\w][\w.-]{0,127})?` +
		`(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`)
	namespaceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

	imageLineRE     = regexp.MustCompile(`^(\s*(?:- )?image: )` + regexp.QuoteMeta(DefaultImage) + `\s*$`)
	namespaceLineRE = regexp.MustCompile(`^(\s*(?:- )?namespace: )` + regexp.QuoteMeta(DefaultNamespace) + `\s*$`)
)

// ValidImage says why ref is not an image reference, or nil.
func ValidImage(ref string) error {
	if !imageRE.MatchString(ref) {
		return fmt.Errorf("image %q is not an image reference: want [REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST], e.g. registry.example.com/podvisor:v0.1.0", ref)
	}
	return nil
}

// ValidNamespace says why ns is not a namespace name, or nil.
func ValidNamespace(ns string) error {
	if len(ns) > 63 || !namespaceRE.MatchString(ns) {
		return fmt.Errorf("namespace %q is not a valid name: want at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit", ns)
	}
	return nil
}

// Resources lists the top-level manifests in the kustomization's order.
func Resources() ([]string, error) {
	data, err := files.ReadFile("kustomization.yaml")
	if err != nil {
		return nil, err
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("deploy/kustomization.yaml: %w", err)
	}
	if len(k.Resources) == 0 {
		return nil, fmt.Errorf("deploy/kustomization.yaml lists no resources")
	}
	return k.Resources, nil
}

// RenderFiles returns the manifests with o applied, one File per file of
// the kustomization (in its order), preceded by a Namespace when
// o.Namespace is not the default.
func RenderFiles(o Options) ([]File, error) {
	image, ns := o.Image, o.Namespace
	if image == "" {
		image = DefaultImage
	}
	if ns == "" {
		ns = DefaultNamespace
	}
	if err := ValidImage(image); err != nil {
		return nil, err
	}
	if err := ValidNamespace(ns); err != nil {
		return nil, err
	}
	names, err := Resources()
	if err != nil {
		return nil, err
	}
	if o.CRDsOnly {
		names = []string{CRDFile}
	}
	var out []File
	if ns != DefaultNamespace && !o.CRDsOnly {
		out = append(out, File{Data: []byte(
			"# The namespace of podvisor's DaemonSets, ServiceAccount and ConfigMaps\n" +
				"# (podvisorctl gen --podvisor-namespace).\n" +
				"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n  labels:\n    app.kubernetes.io/name: podvisor\n")})
	}
	images, namespaces := 0, 0
	for _, name := range names {
		data, err := files.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("deploy/%s: %w", name, err)
		}
		lines := strings.SplitAfter(string(data), "\n")
		for i, l := range lines {
			nl := ""
			if strings.HasSuffix(l, "\n") {
				l, nl = l[:len(l)-1], "\n"
			}
			if m := imageLineRE.FindStringSubmatch(l); m != nil {
				lines[i] = m[1] + image + nl
				images++
			} else if m := namespaceLineRE.FindStringSubmatch(l); m != nil {
				lines[i] = m[1] + ns + nl
				namespaces++
			}
		}
		out = append(out, File{Name: name, Data: []byte(strings.Join(lines, ""))})
	}
	if !o.CRDsOnly && (images == 0 || namespaces == 0) {
		// The files no longer say what the substitutions look for.
		return nil, fmt.Errorf("deploy/: found %d lines 'image: %s' and %d lines 'namespace: %s': update deploy.DefaultImage and deploy.DefaultNamespace to the manifests", images, DefaultImage, namespaces, DefaultNamespace)
	}
	return out, nil
}

// Render returns the manifests with o applied as one YAML stream for
// `kubectl apply -f -`: the files of RenderFiles, each after a "---" line
// and a comment naming it.
func Render(o Options) ([]byte, error) {
	fs, err := RenderFiles(o)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for _, f := range fs {
		src := "deploy/" + f.Name
		if f.Name == "" {
			src = "podvisorctl gen"
		}
		b.WriteString("---\n# Source: " + src + "\n")
		b.Write(f.Data)
		if len(f.Data) > 0 && f.Data[len(f.Data)-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	return b.Bytes(), nil
}
