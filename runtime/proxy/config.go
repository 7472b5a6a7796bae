// Package proxy is a CRI proxy: one CRI endpoint in front of a primary
// runtime (containerd) and named runtimes (podvisor). It routes each pod to
// one runtime and prefixes the IDs of non-primary runtimes so that every
// later call by ID reaches the runtime that owns the object.
package proxy

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

const (
	// TargetRuntimeAnnotation is Virtlet's pod annotation naming the runtime.
	TargetRuntimeAnnotation = "kubernetes.io/target-runtime"
	// VirtletTargetRuntime is the annotation value and image domain Virtlet
	// manifests use; the runtime named DefaultVirtletRuntime answers to it
	// unless the config says otherwise.
	VirtletTargetRuntime = "virtlet.cloud"
	// DefaultVirtletRuntime is the runtime name that gets VirtletTargetRuntime
	// as its default target runtime.
	DefaultVirtletRuntime = "podvisor"
	// IDSeparator joins a runtime's name and the runtime's own ID:
	// "podvisor__<id>". Primary IDs carry no prefix.
	IDSeparator = "__"
)

// Config is the proxy's configuration, as read from the config file
// (YAML or JSON) or built from flags.
type Config struct {
	// Listen is the proxy's own endpoint, unix:///path.
	Listen string `json:"listen,omitempty"`
	// Primary is the endpoint of the runtime that gets every pod not
	// routed elsewhere (containerd), unix:///path.
	Primary string `json:"primary,omitempty"`
	// Runtimes are the named runtimes, in the order lists are merged.
	Runtimes []Runtime `json:"runtimes,omitempty"`
	// AnnotationRouting routes a pod by the kubernetes.io/target-runtime
	// annotation when its RuntimeClass handler names no runtime of the
	// proxy (Virtlet's way; nil: on). Off, only RuntimeClass routes pods
	// away from the primary, and a pod whose annotation names a runtime is
	// refused: the annotation escapes RuntimeClass admission rules.
	AnnotationRouting *bool `json:"annotationRouting,omitempty"`
}

// Runtime is one named (non-primary) runtime.
type Runtime struct {
	// Name prefixes the runtime's IDs ("<name>__<id>"); lowercase letters,
	// digits, '-' and '.'.
	Name string `json:"name"`
	// Endpoint is the runtime's CRI socket, unix:///path.
	Endpoint string `json:"endpoint"`
	// Handlers are the RuntimeClass handlers (runtime_handler) routed to
	// this runtime; default: the runtime's name.
	Handlers []string `json:"handlers,omitempty"`
	// TargetRuntime is the value of the kubernetes.io/target-runtime
	// annotation routed to this runtime and the image domain of its images
	// ("<targetRuntime>/<image>", stripped before the runtime sees it).
	// Default: virtlet.cloud for the runtime named podvisor, else the name.
	TargetRuntime string `json:"targetRuntime,omitempty"`
	// KeepImageDomain passes image names on with their domain: podvisor
	// tells "virtlet.cloud/<name>" (translated) from an OCI reference by
	// it. Default: on for targetRuntime virtlet.cloud, else off (stripped).
	KeepImageDomain *bool `json:"keepImageDomain,omitempty"`
	// ImagePrefixes route image calls naming an image that starts with one
	// of them ("registry.example/vm-disks/") to this runtime: OCI images
	// of VMs, which have no domain, when kubelet sends no runtime handler
	// with the image (docs/criproxy.md).
	ImagePrefixes []string `json:"imagePrefixes,omitempty"`
}

// LoadConfig reads a config file; unknown fields are errors.
func LoadConfig(path string) (Config, error) {
	var c Config
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("reading config file: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return c, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

// ParseRuntimeFlag parses the --runtime flag's value "NAME=ENDPOINT".
func ParseRuntimeFlag(v string) (Runtime, error) {
	name, ep, ok := strings.Cut(v, "=")
	if !ok || name == "" || ep == "" {
		return Runtime{}, fmt.Errorf("runtime %q: want NAME=ENDPOINT, e.g. podvisor=unix:///run/podvisor/podvisor.sock", v)
	}
	return Runtime{Name: name, Endpoint: ep}, nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

// withDefaults fills defaults and validates; the result is what the proxy runs.
func (c Config) withDefaults() (Config, error) {
	out := Config{Listen: c.Listen, Primary: c.Primary, AnnotationRouting: c.AnnotationRouting}
	if out.AnnotationRouting == nil {
		on := true
		out.AnnotationRouting = &on
	}
	if err := checkEndpoint("primary", c.Primary); err != nil {
		return out, err
	}
	names := map[string]bool{}
	handlers := map[string]string{}
	targets := map[string]string{}
	prefixes := map[string]string{}
	for _, r := range c.Runtimes {
		if !nameRE.MatchString(r.Name) {
			return out, fmt.Errorf("runtime name %q: use lowercase letters, digits, '-' and '.' (it prefixes IDs as %q)", r.Name, r.Name+IDSeparator)
		}
		if names[r.Name] {
			return out, fmt.Errorf("runtime name %q: given twice", r.Name)
		}
		names[r.Name] = true
		if err := checkEndpoint("runtime "+r.Name, r.Endpoint); err != nil {
			return out, err
		}
		if len(r.Handlers) == 0 {
			r.Handlers = []string{r.Name}
		}
		for _, h := range r.Handlers {
			if h == "" {
				return out, fmt.Errorf("runtime %q: the empty handler is the primary's and cannot be routed elsewhere", r.Name)
			}
			if other, dup := handlers[h]; dup {
				return out, fmt.Errorf("runtime handler %q: routed to both %q and %q", h, other, r.Name)
			}
			handlers[h] = r.Name
		}
		if r.TargetRuntime == "" {
			r.TargetRuntime = r.Name
			if r.Name == DefaultVirtletRuntime {
				r.TargetRuntime = VirtletTargetRuntime
			}
		}
		if strings.Contains(r.TargetRuntime, "/") {
			return out, fmt.Errorf("runtime %q: targetRuntime %q must not contain '/' (it is an image domain such as %q)", r.Name, r.TargetRuntime, VirtletTargetRuntime)
		}
		if other, dup := targets[r.TargetRuntime]; dup {
			return out, fmt.Errorf("targetRuntime %q: claimed by both %q and %q", r.TargetRuntime, other, r.Name)
		}
		targets[r.TargetRuntime] = r.Name
		if r.KeepImageDomain == nil {
			keep := r.TargetRuntime == VirtletTargetRuntime
			r.KeepImageDomain = &keep
		}
		for _, pfx := range r.ImagePrefixes {
			if pfx == "" {
				return out, fmt.Errorf("runtime %q: imagePrefixes: an empty prefix would route every image; give e.g. \"registry.example/vm-disks/\"", r.Name)
			}
			if other, dup := prefixes[pfx]; dup {
				return out, fmt.Errorf("image prefix %q: routed to both %q and %q", pfx, other, r.Name)
			}
			prefixes[pfx] = r.Name
		}
		out.Runtimes = append(out.Runtimes, r)
	}
	return out, nil
}

func checkEndpoint(what, ep string) error {
	if ep == "" {
		return fmt.Errorf("%s: no endpoint given (want unix:///path)", what)
	}
	if !strings.HasPrefix(ep, "unix:///") {
		return fmt.Errorf("%s: endpoint %q is not accepted: want unix:///path", what, ep)
	}
	return nil
}
