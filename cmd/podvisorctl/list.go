package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// What podvisor makes of a pod's spec (runtime/annotations; a test keeps
// these equal): the vCPU annotation and its default, the guest RAM of a
// container without a memory limit, and the RuntimeClass handler.
const (
	vcpuAnnotation     = "VirtletVCPUCount"
	defaultVCPUs       = 1
	defaultMemoryBytes = 1024 << 20
	podvisorHandler    = "podvisor"
)

// listedVM is one row of podvisorctl list, also its -o json/yaml item.
type listedVM struct {
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	Phase       string `json:"phase"`
	Node        string `json:"node,omitempty"`
	Domain      string `json:"domain,omitempty"`
	ContainerID string `json:"containerID,omitempty"`
	VCPUs       int    `json:"vcpus,omitempty"`
	MemoryBytes int64  `json:"memoryBytes,omitempty"`
	// Accelerator is the node's podvisor.io/accelerator label: kvm or tcg.
	Accelerator string `json:"accelerator,omitempty"`
	Image       string `json:"image"`
	PodIP       string `json:"podIP,omitempty"`
	// Problem says why a field podvisor computes could not be (a bad
	// annotation or limit: podvisor refuses such a VM).
	Problem string `json:"problem,omitempty"`
}

type listedVMs struct {
	Kind  string     `json:"kind"`
	Items []listedVM `json:"items"`
}

func (a *app) listCmd() *cobra.Command {
	var (
		all    bool
		output string
	)
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List VM pods with their node, domain, vCPUs, memory and accelerator",
		Long: `Lists the pods podvisor runs as VMs, in the context's namespace, the one
of -n, or every namespace (-A), from

  kubectl get pods [-n NAMESPACE | -A] -o json
  kubectl get nodes -o json                   (the accelerator)
  kubectl get runtimeclasses -o json          (only if a pod without a VM yet names one)

A VM pod is one whose container podvisor runs (container ID
<runtime>://podvisor__<id>), or, before its VM exists, one routed to
podvisor: an image virtlet.cloud/..., the annotation
kubernetes.io/target-runtime: virtlet.cloud, or a RuntimeClass whose
handler is podvisor.

Everything comes from the Kubernetes API, as podvisor computes it:
  DOMAIN  pv- and the first 16 hex digits of the container's ID (none yet: <none>)
  VCPUS   the VirtletVCPUCount annotation (default 1)
  MEMORY  the container's memory limit rounded up to MiB (no limit: 1Gi)
  ACCEL   the node's label podvisor.io/accelerator, kvm or tcg, which
          podvisor sets (unknown: no label, or no right to list nodes)

-o wide adds the pod IP and the image; -o json and -o yaml print every
field, memory in bytes.`,
		Example: `  podvisorctl list
  podvisorctl list -A -o wide
  kubectl podvisor -n vms list -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "", "wide", "json", "yaml":
			default:
				return fmt.Errorf("-o %q: want wide, json or yaml (or no -o for the table)", output)
			}
			if all && a.namespace != "" {
				return errors.New("-A lists every namespace; give it or -n NAMESPACE, not both")
			}
			vms, err := a.listVMs(cmd.Context(), all, true)
			if err != nil {
				return err
			}
			return a.printVMs(vms, all, output)
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list VM pods in every namespace")
	cmd.Flags().StringVarP(&output, "output", "o", "", "wide, json or yaml (default: a table)")
	return cmd
}

// listVMs reads the pods and keeps the VM pods; withNodes reads the nodes'
// accelerators too.
func (a *app) listVMs(ctx context.Context, all, withNodes bool) ([]listedVM, error) {
	k, err := a.kubectl()
	if err != nil {
		return nil, err
	}
	args := []string{"get", "pods"}
	if all {
		args = append(args, "-A")
	} else {
		args = append(args, a.namespaceArgs()...)
	}
	out, err := k.output(ctx, append(args, "-o", "json")...)
	if err != nil {
		return nil, err
	}
	var l podListJSON
	if err := json.Unmarshal(out, &l); err != nil {
		return nil, fmt.Errorf("reading pods from kubectl: %w", err)
	}
	var handlers map[string]bool // RuntimeClass name → handler is podvisor; read once, if needed
	var vms []listedVM
	for i := range l.Items {
		p := &l.Items[i]
		id, byContainer := podvisorContainerID(p)
		if !byContainer {
			if p.Spec.RuntimeClassName != "" && handlers == nil {
				handlers = podvisorRuntimeClasses(ctx, k)
			}
			if !routedToPodvisor(p, handlers) {
				continue
			}
		}
		vms = append(vms, describeVM(p, id))
	}
	if len(vms) > 0 && withNodes {
		accel := nodeAccelerators(ctx, k)
		for i := range vms {
			vms[i].Accelerator = accel[vms[i].Node][0]
		}
	}
	return vms, nil
}

// podvisorContainerID returns podvisor's ID of the pod's first container,
// and whether podvisor runs it.
func podvisorContainerID(p *podJSON) (string, bool) {
	if len(p.Spec.Containers) == 0 {
		return "", false
	}
	for _, s := range p.Status.ContainerStatuses {
		if s.Name != p.Spec.Containers[0].Name {
			continue
		}
		_, native, ok := strings.Cut(s.ContainerID, "://")
		if !ok {
			native = s.ContainerID
		}
		if id, ok := strings.CutPrefix(native, vmIDPrefix); ok {
			return id, true
		}
	}
	return "", false
}

// routedToPodvisor: a pod without a podvisor container (yet) that criproxy
// would send to podvisor. A pod that already runs elsewhere is not.
func routedToPodvisor(p *podJSON, podvisorClasses map[string]bool) bool {
	for _, s := range p.Status.ContainerStatuses {
		if s.ContainerID != "" {
			return false
		}
	}
	if rc := p.Spec.RuntimeClassName; rc != "" {
		return podvisorClasses[rc]
	}
	if p.Metadata.Annotations[targetRuntimeAnnotation] == "virtlet.cloud" {
		return true
	}
	for _, c := range p.Spec.Containers {
		if strings.HasPrefix(c.Image, virtletImagePrefix) {
			return true
		}
	}
	return false
}

// podvisorRuntimeClasses names the RuntimeClasses whose handler is
// podvisor; if they cannot be read, deploy's RuntimeClass "podvisor".
func podvisorRuntimeClasses(ctx context.Context, k *kubectl) map[string]bool {
	fallback := map[string]bool{podvisorHandler: true}
	b, err := k.output(ctx, "get", "runtimeclasses", "-o", "json")
	if err != nil {
		return fallback
	}
	var l struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Handler string `json:"handler"`
		} `json:"items"`
	}
	if json.Unmarshal(b, &l) != nil {
		return fallback
	}
	out := map[string]bool{}
	for _, rc := range l.Items {
		if rc.Handler == podvisorHandler {
			out[rc.Metadata.Name] = true
		}
	}
	return out
}

// describeVM computes a row as podvisor would configure the VM.
func describeVM(p *podJSON, containerID string) listedVM {
	v := listedVM{Namespace: p.Metadata.Namespace, Name: p.Metadata.Name, Phase: p.Status.Phase,
		Node: p.Spec.NodeName, PodIP: p.Status.PodIP, ContainerID: containerID, VCPUs: defaultVCPUs, MemoryBytes: defaultMemoryBytes}
	if containerID != "" {
		v.Domain = domainName(containerID)
	}
	var problems []string
	// The CPU limit, rounded up, gives the vCPUs without the annotation
	// and bounds them with it.
	limitCPUs := int64(0)
	if len(p.Spec.Containers) > 0 {
		if q, ok := p.Spec.Containers[0].Resources.Limits["cpu"]; ok {
			if n, err := quantityBytes(q); err == nil && n > 0 {
				limitCPUs = min(n, 255)
				v.VCPUs = int(limitCPUs)
			}
		}
	}
	if s, ok := p.Metadata.Annotations[vcpuAnnotation]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 255 {
			v.VCPUs = 0
			problems = append(problems, fmt.Sprintf("annotation %s: %q is not an integer from 1 to 255", vcpuAnnotation, s))
		} else {
			v.VCPUs = n
			if limitCPUs > 0 && int64(n) > limitCPUs {
				problems = append(problems, fmt.Sprintf("annotation %s: %d vCPUs are more than the CPU limit allows (at most %d)", vcpuAnnotation, n, limitCPUs))
			}
		}
	}
	if len(p.Spec.Containers) > 0 {
		c := p.Spec.Containers[0]
		v.Image = c.Image
		if q, ok := c.Resources.Limits["memory"]; ok {
			b, err := quantityBytes(q)
			switch {
			case err != nil:
				v.MemoryBytes = 0
				problems = append(problems, fmt.Sprintf("memory limit %q: %v", q, err))
			case b > 0:
				const mib = 1 << 20
				v.MemoryBytes = (b + mib - 1) / mib * mib
			}
		}
	}
	v.Problem = strings.Join(problems, "; ")
	return v
}

// quantitySuffixes are Kubernetes' quantity suffixes (resource.Quantity).
var quantitySuffixes = map[string]*big.Rat{
	"": big.NewRat(1, 1), "m": big.NewRat(1, 1000),
	"k": pow(10, 3), "M": pow(10, 6), "G": pow(10, 9), "T": pow(10, 12), "P": pow(10, 15), "E": pow(10, 18),
	"Ki": pow(2, 10), "Mi": pow(2, 20), "Gi": pow(2, 30), "Ti": pow(2, 40), "Pi": pow(2, 50), "Ei": pow(2, 60),
}

func pow(base, exp int64) *big.Rat {
	return new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(base), big.NewInt(exp), nil))
}

// quantityBytes reads a Kubernetes quantity ("512Mi", "1G", "1.5Gi",
// "1e9") as a whole number of bytes, rounded up as kubelet does.
func quantityBytes(q string) (int64, error) {
	num, suffix := q, ""
	if i := strings.LastIndexAny(q, "0123456789."); i >= 0 && i < len(q)-1 {
		num, suffix = q[:i+1], q[i+1:]
	}
	if e := strings.IndexAny(num, "eE"); e >= 0 {
		num, suffix = q, "" // a decimal exponent: big.Rat reads it
	}
	mult, ok := quantitySuffixes[suffix]
	r, okNum := new(big.Rat).SetString(num)
	if !ok || !okNum || r.Sign() < 0 || strings.ContainsAny(num, "/") {
		return 0, errors.New("not a Kubernetes quantity")
	}
	r.Mul(r, mult)
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if new(big.Rat).SetInt(n).Cmp(r) < 0 {
		n.Add(n, big.NewInt(1))
	}
	if !n.IsInt64() {
		return 0, errors.New("too large")
	}
	return n.Int64(), nil
}

func (a *app) printVMs(vms []listedVM, all bool, output string) error {
	switch output {
	case "json", "yaml":
		doc := listedVMs{Kind: "VMPodList", Items: vms}
		if doc.Items == nil {
			doc.Items = []listedVM{}
		}
		b, err := json.MarshalIndent(doc, "", "    ")
		if err != nil {
			return err
		}
		if output == "yaml" {
			if b, err = yaml.JSONToYAML(b); err != nil {
				return err
			}
			_, err = a.stdout.Write(b)
			return err
		}
		_, err = fmt.Fprintf(a.stdout, "%s\n", b)
		return err
	}
	if len(vms) == 0 {
		where := "in any namespace"
		if !all {
			where = "in " + a.namespaceDesc()
		}
		fmt.Fprintf(a.stderr, "No VM pods found %s.\n", where)
		return nil
	}
	return writeTable(a.stdout, vms, all, output == "wide")
}

// writeTable prints the rows as kubectl get does: upper-case headers,
// columns three spaces apart, NAMESPACE first with -A, <none> for empty.
func writeTable(out io.Writer, vms []listedVM, all, wide bool) error {
	w := tabwriter.NewWriter(out, 6, 4, 3, ' ', 0)
	row := func(cols ...string) {
		if !all {
			cols = cols[1:]
		}
		if !wide {
			cols = cols[:len(cols)-2]
		}
		for i, c := range cols {
			if c == "" {
				cols[i] = "<none>"
			}
		}
		fmt.Fprintln(w, strings.Join(cols, "\t"))
	}
	row("NAMESPACE", "NAME", "PHASE", "NODE", "DOMAIN", "VCPUS", "MEMORY", "ACCEL", "IP", "IMAGE")
	for _, v := range vms {
		vcpus, mem, accel := "?", "?", v.Accelerator
		if v.VCPUs > 0 {
			vcpus = strconv.Itoa(v.VCPUs)
		}
		if v.MemoryBytes > 0 {
			mem = memoryText(v.MemoryBytes)
		}
		if accel == "" && v.Node != "" {
			accel = "unknown"
		}
		row(v.Namespace, v.Name, v.Phase, v.Node, v.Domain, vcpus, mem, accel, v.PodIP, v.Image)
	}
	return w.Flush()
}

// memoryText renders whole MiB as Gi when they divide evenly.
func memoryText(b int64) string {
	mib := b >> 20
	if mib%1024 == 0 {
		return strconv.FormatInt(mib/1024, 10) + "Gi"
	}
	return strconv.FormatInt(mib, 10) + "Mi"
}
