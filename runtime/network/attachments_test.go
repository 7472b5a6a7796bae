package network

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podvisor/podvisor/runtime/errdefs"
)

func TestParseNetworkAnnotations(t *testing.T) {
	multus := func(v string) map[string]string { return map[string]string{AnnotationMultus: v} }
	genie := func(v string) map[string]string { return map[string]string{AnnotationGenie: v} }
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want *podNetworks
	}{
		{"none", nil, &podNetworks{}},
		{"other annotations", map[string]string{"VirtletVCPUCount": "2"}, &podNetworks{}},
		{"multus empty", multus("  "), &podNetworks{Annotation: AnnotationMultus}},
		{"multus one", multus("net-b"), &podNetworks{Annotation: AnnotationMultus,
			Extra: []attachment{{Name: "net-b", IfName: "net1"}}}},
		{"multus text, every form", multus(" net-b , kube-system/net-c@data0,default/net_d.x "), &podNetworks{Annotation: AnnotationMultus,
			Extra: []attachment{{Name: "net-b", IfName: "net1"}, {Name: "net-c", Namespace: "kube-system", IfName: "data0"}, {Name: "net_d.x", Namespace: "default", IfName: "net3"}}}},
		{"multus same network twice", multus("net-b,net-b"), &podNetworks{Annotation: AnnotationMultus,
			Extra: []attachment{{Name: "net-b", IfName: "net1"}, {Name: "net-b", IfName: "net2"}}}},
		{"multus JSON", multus(`[{"name":"net-b"},{"name":"net-c","namespace":"ns1","interface":"eth5","ips":["10.1.2.3/24"],"mac":"02:AA:bb:cc:dd:01"}]`),
			&podNetworks{Annotation: AnnotationMultus, Extra: []attachment{{Name: "net-b", IfName: "net1"},
				{Name: "net-c", Namespace: "ns1", IfName: "eth5", IPs: []string{"10.1.2.3/24"}, MAC: "02:aa:bb:cc:dd:01"}}}},
		{"multus JSON empty list", multus(`[]`), &podNetworks{Annotation: AnnotationMultus}},
		{"genie one", genie("calico"), &podNetworks{Annotation: AnnotationGenie, Primary: "calico"}},
		{"genie two", genie("calico, flannel"), &podNetworks{Annotation: AnnotationGenie, Primary: "calico",
			Extra: []attachment{{Name: "flannel", IfName: "eth1"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseNetworkAnnotations(tc.ann)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(podNetworks{}, attachment{})); d != "" {
				t.Errorf("-want +got:\n%s", d)
			}
		})
	}
}

func TestParseNetworkAnnotationsErrors(t *testing.T) {
	multus := func(v string) map[string]string { return map[string]string{AnnotationMultus: v} }
	genie := func(v string) map[string]string { return map[string]string{AnnotationGenie: v} }
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want string // the error contains it
	}{
		{"both", map[string]string{AnnotationMultus: "a", AnnotationGenie: "b"}, "annotations k8s.v1.cni.cncf.io/networks and cni: both name networks"},
		{"empty entry", multus("a,,b"), `annotation k8s.v1.cni.cncf.io/networks: entry 2 "": empty entry; accepted: "[namespace/]name[@interface]"`},
		{"bad name", multus("a b"), `entry 1 "a b": network name "a b": want letters`},
		{"too many slashes", multus("ns/a/b"), `network name "a/b"`},
		{"bad namespace", multus("Kube_System/a"), `namespace "Kube_System": want a Kubernetes namespace name`},
		{"empty namespace", multus("/a"), `namespace ""`},
		{"empty interface", multus("a@"), `empty interface name after '@'`},
		{"interface too long", multus("a@abcdefghijklmnop"), `interface "abcdefghijklmnop": want 1 to 15 characters`},
		{"interface eth0", multus("a@eth0"), `interface "eth0": the pod's own interface`},
		{"interface of podvisor", multus("a@pv-br1"), `names starting with pv- are podvisor's`},
		{"interface with a bad character", multus("b,a@x:y"), `network 2 (a): interface "x:y": character ':' not allowed`},
		{"interface slash", multus(`[{"name":"a","interface":"x/y"}]`), `character '/' not allowed`},
		{"duplicate interface", multus("a@data,b@data"), `network 2 (b): interface "data" is network 1's already`},
		{"duplicate default interface", multus("a,b@net1"), `network 2 (b): interface "net1" is network 1's already`},
		{"too many", multus("a,b,c,d,e,f,g,h"), "8 networks: a VM has at most 8 NICs, eth0 and 7 more"},
		{"bad JSON", multus(`[{"name":}]`), "bad JSON"},
		{"JSON not a list of objects", multus(`["a"]`), "bad JSON"},
		{"JSON trailing", multus(`[{"name":"a"}] x`), "text after the JSON list"},
		{"JSON unknown field", multus(`[{"name":"a","colour":"red"}]`), `bad JSON: json: unknown field "colour"`},
		{"JSON unsupported field", multus(`[{"name":"a","default-route":["10.0.0.1"]}]`), `element 0 ("a"): "default-route" is not supported by podvisor`},
		{"JSON no name", multus(`[{"interface":"x"}]`), `element 0: network name ""`},
		{"JSON bad ip", multus(`[{"name":"a","ips":["10.1.2"]}]`), `ips: "10.1.2" is not an IP address`},
		{"JSON multicast mac", multus(`[{"name":"a","mac":"01:00:5e:00:00:01"}]`), `mac "01:00:5e:00:00:01": want a unicast MAC`},
		{"genie empty", genie(""), "annotation cni: empty value; accepted: CNI network names separated by commas"},
		{"genie bad name", genie("calico,flan nel"), `annotation cni: entry 2 "flan nel"`},
		{"genie duplicate", genie("calico,calico"), `entry 2 "calico": named already as entry 1`},
		{"genie too many", genie("a,b,c,d,e,f,g,h,i"), "9 networks: a VM has at most 8 NICs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseNetworkAnnotations(tc.ann)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error %v is not InvalidArgument", err)
			}
		})
	}
}

// A pod naming a network that no configuration in ConfDir has fails
// before anything is made, naming the annotation, the network and the
// names there are; a configuration found by name is used whatever its
// file's place in the order.
func TestPlanNetworks(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"10-pod.conflist":   `{"cniVersion":"1.0.0","name":"podnet","plugins":[{"type":"bridge"}]}`,
		"20-net-b.conf":     `{"cniVersion":"1.0.0","name":"net-b","type":"bridge"}`,
		"30-broken.conf":    `{`,
		"40-net-c.json":     `{"cniVersion":"1.0.0","name":"net-c","plugins":[{"type":"macvlan"}]}`,
		"50-dup-net-b.conf": `{"cniVersion":"1.0.0","name":"net-b","type":"ipvlan"}`,
	})
	n := &Network{cfg: Config{ConfDir: dir}}
	sb := newSandbox("0123456789abcdef0123")
	sb.Config.Annotations = map[string]string{AnnotationMultus: "net-c,net-b@data"}
	plan, err := n.planNetworks(sb)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{plan.primary.list.Name + "=" + filepath.Base(plan.primary.file)}
	for _, x := range plan.extra {
		got = append(got, x.list.Name+"@"+x.att.IfName+"="+filepath.Base(x.file))
	}
	if d := cmp.Diff([]string{"podnet=10-pod.conflist", "net-c@net1=40-net-c.json", "net-b@data=20-net-b.conf"}, got); d != "" {
		t.Errorf("plan -want +got:\n%s", d)
	}

	sb.Config.Annotations = map[string]string{AnnotationGenie: "net-c,podnet"}
	if plan, err = n.planNetworks(sb); err != nil {
		t.Fatal(err)
	}
	if plan.primary.list.Name != "net-c" || len(plan.extra) != 1 || plan.extra[0].list.Name != "podnet" || plan.extra[0].att.IfName != "eth1" {
		t.Errorf("Genie plan: primary %s, extra %+v", plan.primary.list.Name, plan.extra)
	}

	sb.Config.Annotations = map[string]string{AnnotationMultus: "net-b,nope"}
	_, err = n.planNetworks(sb)
	want := `annotation k8s.v1.cni.cncf.io/networks: network "nope": unknown network: no CNI network configuration named "nope" in ` + dir +
		` (there are podnet, net-b, net-c, net-b); accepted: the names of the CNI network configurations in ` + dir
	if err == nil || err.Error() != want || !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("unknown network: error\n%v\nwant (InvalidArgument)\n%s", err, want)
	}
	sb.Config.Annotations = map[string]string{AnnotationGenie: "nope"}
	if _, err = n.planNetworks(sb); err == nil || !strings.Contains(err.Error(), `annotation cni: network "nope"`) {
		t.Errorf("unknown Genie network: %v", err)
	}
}
