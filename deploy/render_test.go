package deploy

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestRenderDefaultsAreTheFiles: `podvisorctl gen` without options prints
// deploy/*.yaml unchanged, every file of the kustomization in its order,
// so the committed manifests are what gen prints.
func TestRenderDefaultsAreTheFiles(t *testing.T) {
	fs, err := RenderFiles(Options{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := Resources()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fs {
		got = append(got, f.Name)
		disk, err := os.ReadFile(f.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(disk, f.Data) {
			t.Errorf("Render(defaults) of %s differs from deploy/%s:\n%s", f.Name, f.Name, cmp.Diff(string(disk), string(f.Data)))
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rendered files (-kustomization +rendered):\n%s", diff)
	}
	stream, err := Render(Options{})
	if err != nil {
		t.Fatal(err)
	}
	docs, err := splitDocs("render", stream)
	if err != nil {
		t.Fatal(err)
	}
	var fromFiles int
	for _, d := range loadDocs(t) {
		if !strings.Contains(d.file, "/") && d.Kind != "Kustomization" {
			fromFiles++
		}
	}
	if len(docs) != fromFiles {
		t.Errorf("Render(defaults) has %d documents, deploy/*.yaml %d", len(docs), fromFiles)
	}
}

var custom = Options{Image: "registry.example.com:5000/team/podvisor:v1.2.3", Namespace: "podvisor-system"}

// TestRenderOptions: with another image and namespace every document still
// decodes strictly, every container names the image, every namespaced
// object (and the binding's subject) is in the namespace, the namespace is
// created first, and nothing else differs from the files.
func TestRenderOptions(t *testing.T) {
	stream, err := Render(custom)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := splitDocs("render", stream)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 || docs[0].Kind != "Namespace" || docs[0].Name != custom.Namespace {
		t.Fatalf("first document is %v, want Namespace %s", docs[0], custom.Namespace)
	}
	defStream, err := Render(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defDocs, err := splitDocs("render", defStream)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != len(defDocs)+1 {
		t.Fatalf("%d documents, want the %d of the defaults and a Namespace", len(docs), len(defDocs))
	}
	clusterScoped := map[string]bool{"Namespace": true, "CustomResourceDefinition": true, "ClusterRole": true, "ClusterRoleBinding": true, "RuntimeClass": true}
	containers := 0
	for i, d := range docs {
		if _, err := decodeBuiltin(d); err != nil && d.Kind != "CustomResourceDefinition" {
			t.Errorf("%s: %v", d, err)
		}
		if i == 0 {
			continue
		}
		got, err := yamlToValue(d.raw)
		if err != nil {
			t.Fatal(err)
		}
		want, err := yamlToValue(defDocs[i-1].raw)
		if err != nil {
			t.Fatal(err)
		}
		meta, _ := got.(map[string]any)["metadata"].(map[string]any)
		if ns, _ := meta["namespace"].(string); !clusterScoped[d.Kind] && ns != custom.Namespace {
			t.Errorf("%s: namespace %q, want %q", d, ns, custom.Namespace)
		}
		// Put the defaults back: what remains must equal the file.
		walk(got, func(key string, v any) any {
			switch {
			case key == "image" && v == custom.Image:
				containers++
				return DefaultImage
			case key == "namespace" && v == custom.Namespace:
				return DefaultNamespace
			case v == DefaultImage || v == DefaultNamespace:
				t.Errorf("%s: %s: %v left unchanged", d, key, v)
			}
			return v
		})
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s differs from the file in more than image and namespace (-file +rendered):\n%s", d, diff)
		}
	}
	objs := objects(t, loadDocs(t))
	n := 0
	for key, o := range objs {
		// gen prints the kustomization's files, not deploy/uninstall/.
		if ds, ok := o.(*appsv1.DaemonSet); ok && !strings.HasPrefix(key, "uninstall/") {
			n += len(ds.Spec.Template.Spec.InitContainers) + len(ds.Spec.Template.Spec.Containers)
		}
	}
	if containers != n {
		t.Errorf("%d containers got the image, the DaemonSets have %d", containers, n)
	}
}

// walk calls f on every map value (with its key) and replaces the value by
// f's result.
func walk(v any, f func(key string, v any) any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if reflect.TypeOf(e) != nil && (reflect.TypeOf(e).Kind() == reflect.Map || reflect.TypeOf(e).Kind() == reflect.Slice) {
				walk(e, f)
				continue
			}
			x[k] = f(k, e)
		}
	case []any:
		for _, e := range x {
			walk(e, f)
		}
	}
}

// TestRenderGolden records every line a non-default render changes in
// testdata/render-changes.golden (go test ./deploy/ -update rewrites it).
func TestRenderGolden(t *testing.T) {
	def, err := RenderFiles(Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := RenderFiles(custom)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Render(%+v): the lines that differ from deploy/*.yaml\n", custom)
	byName := map[string][]byte{}
	for _, f := range def {
		byName[f.Name] = f.Data
	}
	for _, f := range got {
		if f.Name == "" {
			fmt.Fprintf(&b, "\n== generated Namespace\n%s", f.Data)
			continue
		}
		old := strings.Split(string(byName[f.Name]), "\n")
		cur := strings.Split(string(f.Data), "\n")
		if len(old) != len(cur) {
			t.Fatalf("%s: %d lines rendered, %d in the file: the substitutions must keep lines", f.Name, len(cur), len(old))
		}
		for i := range cur {
			if cur[i] != old[i] {
				fmt.Fprintf(&b, "%s:%d\n- %s\n+ %s\n", f.Name, i+1, old[i], cur[i])
			}
		}
	}
	golden := filepath.Join("testdata", "render-changes.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./deploy/ -update writes it)", err)
	}
	if diff := cmp.Diff(string(want), b.String()); diff != "" {
		t.Errorf("%s (-golden +got; go test ./deploy/ -update rewrites it):\n%s", golden, diff)
	}
}

func TestRenderCRDsOnly(t *testing.T) {
	for _, o := range []Options{{CRDsOnly: true}, {CRDsOnly: true, Namespace: "other", Image: "x/y:z"}} {
		fs, err := RenderFiles(o)
		if err != nil {
			t.Fatal(err)
		}
		disk, err := os.ReadFile(CRDFile)
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != 1 || fs[0].Name != CRDFile || !bytes.Equal(fs[0].Data, disk) {
			t.Errorf("Render(%+v) = %d files, want %s alone, unchanged", o, len(fs), CRDFile)
		}
	}
}

func TestRenderRefusesBadOptions(t *testing.T) {
	tests := []struct {
		o    Options
		want string
	}{
		{Options{Image: "Podvisor:dev"}, `image "Podvisor:dev" is not an image reference`},
		{Options{Image: "podvisor:has space"}, "[REGISTRY[:PORT]/]NAME[:TAG]"},
		{Options{Image: "podvisor/podvisor:dev\n  hostPID: false"}, "not an image reference"},
		{Options{Image: "podvisor@sha256:abc"}, "not an image reference"},
		{Options{Namespace: "Kube_System"}, `namespace "Kube_System" is not a valid name`},
		{Options{Namespace: strings.Repeat("a", 64)}, "at most 63"},
	}
	for _, tc := range tests {
		_, err := Render(tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Render(%+v): %v, want an error containing %q", tc.o, err, tc.want)
		}
	}
	for _, ok := range []string{"podvisor", "podvisor/podvisor:dev", "localhost:5000/a/b:v1.0-rc.1", "ghcr.io/x/y@sha256:" + strings.Repeat("0", 64), "a.b/c__d/e:f"} {
		if err := ValidImage(ok); err != nil {
			t.Errorf("ValidImage(%q): %v", ok, err)
		}
	}
}

// TestDaemonSetFacts: the names podvisorctl uses to find a node's podvisor
// pod and reach libvirt and the daemon in it are the DaemonSet's.
func TestDaemonSetFacts(t *testing.T) {
	objs := objects(t, loadDocs(t))
	ds := podvisorDaemonSet(t, objs)
	if ds.Name != DaemonSetName || ds.Namespace != DefaultNamespace {
		t.Errorf("DaemonSet %s/%s, want %s/%s", ds.Namespace, ds.Name, DefaultNamespace, DaemonSetName)
	}
	var sel []string
	for k, v := range ds.Spec.Template.Labels {
		sel = append(sel, k+"="+v)
	}
	if diff := cmp.Diff(strings.Split(RuntimeSelector, ","), sel, cmp.Transformer("sort", func(s []string) map[string]bool {
		m := map[string]bool{}
		for _, e := range s {
			m[e] = true
		}
		return m
	})); diff != "" {
		t.Errorf("RuntimeSelector %q does not select exactly the template's labels (-const +labels):\n%s", RuntimeSelector, diff)
	}
	spec := ds.Spec.Template.Spec
	pv := container(t, spec, PodvisorContainer)
	if pv.Command[0] != PodvisorBinary {
		t.Errorf("podvisor container runs %s, want %s", pv.Command[0], PodvisorBinary)
	}
	if uri := flagArgs(pv.Command[1:])["libvirt-uri"]; uri != LibvirtURI {
		t.Errorf("--libvirt-uri %q, want %q", uri, LibvirtURI)
	}
	lv := container(t, spec, LibvirtContainer)
	if !strings.Contains(strings.Join(lv.ReadinessProbe.Exec.Command, " "), "virsh -c "+LibvirtURI) {
		t.Errorf("libvirt container's probe %v does not run virsh -c %s", lv.ReadinessProbe.Exec.Command, LibvirtURI)
	}
	container(t, spec, VMsContainer)
	if len(spec.InitContainers) != 1 || spec.InitContainers[0].Name != PrepareNodeContainer {
		t.Errorf("init containers %v, want %s alone", spec.InitContainers, PrepareNodeContainer)
	}
}
