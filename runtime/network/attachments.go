package network

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/network/vmenv"
)

// The pod annotations that ask for more networks (docs/networking.md).
const (
	// AnnotationMultus is Multus's: extra networks beyond the pod's
	// default one, as "[namespace/]name[@interface]" entries separated by
	// commas, or a JSON list of network selection elements.
	AnnotationMultus = "k8s.v1.cni.cncf.io/networks"
	// AnnotationGenie is CNI-Genie's, as Virtlet documented it: every
	// network of the pod by name, separated by commas; the first one gives
	// eth0 (the pod IP), the others eth1, eth2, ...
	AnnotationGenie = "cni"
)

// maxExtra is how many networks a pod can have beyond eth0: the wrapper
// puts every NIC in one PCI slot of vmenv.MaxNICs functions.
const maxExtra = vmenv.MaxNICs - 1

// attachment is one network a pod asked for by annotation.
type attachment struct {
	// Name is the CNI network's name (the "name" of a configuration in
	// ConfDir).
	Name string
	// Namespace is the namespace part of a Multus reference ("" when
	// none); CNI networks are node-wide, so it does not change which
	// configuration is used.
	Namespace string
	// IfName is the interface CNI makes in the pod's namespace; the guest's
	// NIC gets the same name.
	IfName string
	// IPs and MAC are Multus's requests, passed to the plugins as the CNI
	// capabilities "ips" and "mac".
	IPs []string
	MAC string
}

// podNetworks is what the annotations ask for: Primary names the network
// of eth0 ("" = the default, the first configuration in ConfDir) and Extra
// the networks beyond it, in order.
type podNetworks struct {
	Annotation string // the annotation they came from, for errors
	Primary    string
	Extra      []attachment
}

var (
	// cniNetworkName is what libcni accepts as a network name.
	cniNetworkName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)
	// k8sNamespace is a DNS-1123 label.
	k8sNamespace = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

const (
	multusAccepted = `accepted: "[namespace/]name[@interface]" entries separated by commas, ` +
		`or a JSON list of objects with "name" (required), "namespace", "interface", "ips", "mac"`
	genieAccepted = `accepted: CNI network names separated by commas, the first giving eth0, e.g. "calico,flannel"`
)

// parseNetworkAnnotations reads the annotations of a pod that name more
// networks. Errors are InvalidArgument and name the annotation and what it
// accepts.
func parseNetworkAnnotations(ann map[string]string) (*podNetworks, error) {
	mv, hasMultus := ann[AnnotationMultus]
	gv, hasGenie := ann[AnnotationGenie]
	switch {
	case hasMultus && hasGenie:
		return nil, errdefs.InvalidArgumentf("annotations %s and %s: both name networks for the pod; use one of them (%s adds networks to the default one, %s lists all of them)",
			AnnotationMultus, AnnotationGenie, AnnotationMultus, AnnotationGenie)
	case hasMultus:
		extra, err := parseMultus(mv)
		if err != nil {
			return nil, err
		}
		return &podNetworks{Annotation: AnnotationMultus, Extra: extra}, nil
	case hasGenie:
		return parseGenie(gv)
	}
	return &podNetworks{}, nil
}

func multusErr(format string, args ...any) error {
	return errdefs.InvalidArgumentf("annotation %s: %s; %s", AnnotationMultus, fmt.Sprintf(format, args...), multusAccepted)
}

// parseMultus reads Multus's annotation. An empty value asks for nothing.
func parseMultus(v string) ([]attachment, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	var out []attachment
	if strings.HasPrefix(v, "[") {
		var err error
		if out, err = parseMultusJSON(v); err != nil {
			return nil, err
		}
	} else {
		for i, e := range strings.Split(v, ",") {
			a, err := parseMultusText(strings.TrimSpace(e))
			if err != nil {
				return nil, multusErr("entry %d %q: %v", i+1, strings.TrimSpace(e), err)
			}
			out = append(out, a)
		}
	}
	for i := range out {
		if out[i].IfName == "" {
			// Multus's default names: net1, net2, ... by position.
			out[i].IfName = fmt.Sprintf("net%d", i+1)
		}
	}
	if err := checkAttachments(out); err != nil {
		return nil, multusErr("%v", err)
	}
	return out, nil
}

// parseMultusText reads "[namespace/]name[@interface]".
func parseMultusText(e string) (attachment, error) {
	var a attachment
	if e == "" {
		return a, fmt.Errorf("empty entry")
	}
	rest, ifname, hasIf := strings.Cut(e, "@")
	if hasIf {
		if ifname == "" {
			return a, fmt.Errorf("empty interface name after '@'")
		}
		a.IfName = ifname
	}
	ns, name, hasNS := strings.Cut(rest, "/")
	if !hasNS {
		ns, name = "", rest
	}
	a.Namespace, a.Name = ns, name
	return a, checkRef(a, hasNS)
}

func checkRef(a attachment, hasNS bool) error {
	if !cniNetworkName.MatchString(a.Name) {
		return fmt.Errorf("network name %q: want letters, digits, '_', '.', '-', starting with a letter or digit", a.Name)
	}
	if hasNS && !k8sNamespace.MatchString(a.Namespace) {
		return fmt.Errorf("namespace %q: want a Kubernetes namespace name (lower-case letters, digits, '-')", a.Namespace)
	}
	return nil
}

// multusElement is Multus's network selection element; the fields
// podvisor does not implement are kept to refuse them by name.
type multusElement struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace"`
	Interface string   `json:"interface"`
	IPs       []string `json:"ips"`
	MAC       string   `json:"mac"`

	DefaultRoute  json.RawMessage `json:"default-route"`
	PortMappings  json.RawMessage `json:"portMappings"`
	Bandwidth     json.RawMessage `json:"bandwidth"`
	CNIArgs       json.RawMessage `json:"cni-args"`
	GatewayReq    json.RawMessage `json:"gateway"`
	InfinibandGUI json.RawMessage `json:"infiniband-guid"`
	IPAMClaim     json.RawMessage `json:"ipam-claim-reference"`
	DeviceID      json.RawMessage `json:"deviceID"`
}

func parseMultusJSON(v string) ([]attachment, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(v)))
	dec.DisallowUnknownFields()
	var elems []multusElement
	if err := dec.Decode(&elems); err != nil {
		return nil, multusErr("bad JSON: %v", err)
	}
	if dec.More() {
		return nil, multusErr("text after the JSON list")
	}
	var out []attachment
	for i, el := range elems {
		where := fmt.Sprintf("element %d", i)
		if el.Name != "" {
			where += fmt.Sprintf(" (%q)", el.Name)
		}
		for field, raw := range map[string]json.RawMessage{"default-route": el.DefaultRoute, "portMappings": el.PortMappings,
			"bandwidth": el.Bandwidth, "cni-args": el.CNIArgs, "gateway": el.GatewayReq, "infiniband-guid": el.InfinibandGUI,
			"ipam-claim-reference": el.IPAMClaim, "deviceID": el.DeviceID} {
			if raw != nil {
				return nil, multusErr("%s: %q is not supported by podvisor (the default route, ports and bandwidth come from eth0's network)", where, field)
			}
		}
		a := attachment{Name: el.Name, Namespace: el.Namespace, IfName: el.Interface, MAC: el.MAC}
		if err := checkRef(a, el.Namespace != ""); err != nil {
			return nil, multusErr("%s: %v", where, err)
		}
		for _, ip := range el.IPs {
			if _, err := netip.ParsePrefix(ip); err != nil {
				if _, err := netip.ParseAddr(ip); err != nil {
					return nil, multusErr("%s: ips: %q is not an IP address (with or without a prefix length)", where, ip)
				}
			}
			a.IPs = append(a.IPs, ip)
		}
		if el.MAC != "" {
			hw, err := net.ParseMAC(el.MAC)
			if err != nil || len(hw) != 6 || hw[0]&1 != 0 {
				return nil, multusErr("%s: mac %q: want a unicast MAC of six hex bytes like 02:00:00:00:00:01", where, el.MAC)
			}
			a.MAC = hw.String()
		}
		out = append(out, a)
	}
	return out, nil
}

// parseGenie reads the CNI-Genie annotation: the first network is eth0's,
// the others become eth1, eth2, ...
func parseGenie(v string) (*podNetworks, error) {
	fail := func(format string, args ...any) error {
		return errdefs.InvalidArgumentf("annotation %s: %s; %s", AnnotationGenie, fmt.Sprintf(format, args...), genieAccepted)
	}
	if strings.TrimSpace(v) == "" {
		return nil, fail("empty value")
	}
	pn := &podNetworks{Annotation: AnnotationGenie}
	seen := map[string]int{}
	for i, e := range strings.Split(v, ",") {
		name := strings.TrimSpace(e)
		if !cniNetworkName.MatchString(name) {
			return nil, fail("entry %d %q: want a CNI network name (letters, digits, '_', '.', '-', starting with a letter or digit)", i+1, name)
		}
		if j, dup := seen[name]; dup {
			return nil, fail("entry %d %q: named already as entry %d", i+1, name, j)
		}
		seen[name] = i + 1
		if i == 0 {
			pn.Primary = name
			continue
		}
		pn.Extra = append(pn.Extra, attachment{Name: name, IfName: fmt.Sprintf("eth%d", i)})
	}
	if len(pn.Extra) > maxExtra {
		return nil, fail("%d networks: a VM has at most %d NICs", len(pn.Extra)+1, maxExtra+1)
	}
	return pn, nil
}

// checkAttachments checks the interface names and the count.
func checkAttachments(as []attachment) error {
	if len(as) > maxExtra {
		return fmt.Errorf("%d networks: a VM has at most %d NICs, eth0 and %d more", len(as), maxExtra+1, maxExtra)
	}
	seen := map[string]int{}
	for i, a := range as {
		if err := checkPodIfName(a.IfName); err != nil {
			return fmt.Errorf("network %d (%s): interface %w", i+1, a.Name, err)
		}
		if j, dup := seen[a.IfName]; dup {
			return fmt.Errorf("network %d (%s): interface %q is network %d's already", i+1, a.Name, a.IfName, j)
		}
		seen[a.IfName] = i + 1
	}
	return nil
}

// checkPodIfName accepts interface names the kernel, the wrapper's QEMU
// options and the guest's cloud-init take, other than the pod's own.
func checkPodIfName(name string) error {
	if len(name) == 0 || len(name) > 15 {
		return fmt.Errorf("%q: want 1 to 15 characters", name)
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return fmt.Errorf("%q: character %q not allowed (want letters, digits, '-', '_', '.')", name, c)
		}
	}
	switch {
	case name == podIfName || name == "lo":
		return fmt.Errorf("%q: the pod's own interface", name)
	case strings.HasPrefix(name, "pv-"):
		return fmt.Errorf("%q: names starting with pv- are podvisor's", name)
	case name == "." || name == "..":
		return fmt.Errorf("%q: not an interface name", name)
	}
	return nil
}
