package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// doc is one YAML document of a manifest file.
type doc struct {
	file  string // relative to deploy/
	index int    // position in the file, from 0
	raw   []byte
	// Header fields, read loosely.
	APIVersion string
	Kind       string
	Name       string
}

func (d doc) String() string {
	return d.file + "#" + strconv.Itoa(d.index) + " (" + d.Kind + " " + d.Name + ")"
}

func gvk(d doc) schema.GroupVersionKind {
	return schema.FromAPIVersionAndKind(d.APIVersion, d.Kind)
}

// manifestFiles lists deploy/*.yaml and deploy/examples/*.yaml.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{"*.yaml", "examples/*.yaml", "uninstall/*.yaml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	if len(files) < 10 {
		t.Fatalf("found only %d manifest files (%v): run the test from deploy/", len(files), files)
	}
	return files
}

// loadDocs reads every document of every manifest file; empty documents
// (comments only) are skipped.
func loadDocs(t *testing.T) []doc {
	t.Helper()
	var docs []doc
	for _, f := range manifestFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ds, err := splitDocs(f, data)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, ds...)
	}
	return docs
}

// splitDocs splits a YAML stream into its documents, reading their
// headers; empty documents (comments only) are skipped.
func splitDocs(file string, data []byte) ([]doc, error) {
	var docs []doc
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 0; ; i++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i, err)
		}
		var hdr struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(raw, &hdr); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i, err)
		}
		if hdr.APIVersion == "" && hdr.Kind == "" {
			if len(bytes.TrimSpace(stripComments(raw))) == 0 {
				continue
			}
			return nil, fmt.Errorf("%s: document %d has content but no apiVersion and kind", file, i)
		}
		docs = append(docs, doc{file: file, index: i, raw: raw, APIVersion: hdr.APIVersion, Kind: hdr.Kind, Name: hdr.Metadata.Name})
	}
	return docs, nil
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("---")) {
			out = append(out, line...)
		}
	}
	return out
}

// strictDecoder decodes built-in kinds; unknown and duplicate fields are
// errors.
var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

func decodeBuiltin(d doc) (runtime.Object, error) {
	obj, _, err := strictDecoder.Decode(d.raw, nil, nil)
	return obj, err
}

// crds returns the CRDs of crds.yaml by kind.
func crds(t *testing.T, docs []doc) map[string]*crd {
	t.Helper()
	out := map[string]*crd{}
	for _, d := range docs {
		if d.Kind != "CustomResourceDefinition" {
			continue
		}
		var c crd
		if err := yaml.UnmarshalStrict(d.raw, &c); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		out[c.Spec.Group+"/"+c.Spec.Names.Kind] = &c
	}
	return out
}

// TestEveryDocumentValidates decodes every document: built-in kinds
// strictly with client-go's scheme, CRDs into the apiextensions subset with
// structural checks, custom resources against their CRD's schema, the
// kustomization strictly.
func TestEveryDocumentValidates(t *testing.T) {
	docs := loadDocs(t)
	defs := crds(t, docs)
	seen := map[string]string{}
	for _, d := range docs {
		t.Run(d.file+"/"+d.Kind+"/"+d.Name, func(t *testing.T) {
			if d.Name == "" && d.Kind != "Kustomization" {
				t.Errorf("%s: metadata.name is missing", d)
			}
			key := d.Kind + "/" + d.Name
			if other, dup := seen[key]; dup && !strings.HasPrefix(d.file, "examples/") {
				t.Errorf("%s: %s also defined in %s", d, key, other)
			}
			seen[key] = d.file
			group, _, _ := strings.Cut(d.APIVersion, "/")
			switch {
			case d.Kind == "CustomResourceDefinition":
				c := defs[""]
				for _, v := range defs {
					if v.Metadata.Name == d.Name {
						c = v
					}
				}
				if c == nil {
					t.Fatalf("%s: not decoded", d)
				}
				for _, err := range checkCRD(c) {
					t.Errorf("%s: %v", d, err)
				}
			case d.Kind == "Kustomization":
				checkKustomization(t, d)
			case strings.Contains(group, "."):
				if _, builtin := scheme.Scheme.AllKnownTypes()[gvk(d)]; builtin {
					decodeOrFail(t, d)
					return
				}
				c := defs[group+"/"+d.Kind]
				if c == nil {
					t.Fatalf("%s: no CRD in deploy/ defines kind %s of group %s", d, d.Kind, group)
				}
				checkCustomResource(t, d, c)
			default:
				decodeOrFail(t, d)
			}
		})
	}
}

func decodeOrFail(t *testing.T, d doc) {
	t.Helper()
	if _, err := decodeBuiltin(d); err != nil {
		t.Errorf("%s: %v", d, err)
	}
}

func checkCustomResource(t *testing.T, d doc, c *crd) {
	t.Helper()
	_, version, _ := strings.Cut(d.APIVersion, "/")
	var schema *schemaProps
	for _, v := range c.Spec.Versions {
		if v.Name == version && v.Served {
			schema = v.Schema.OpenAPIV3Schema
		}
	}
	if schema == nil {
		t.Fatalf("%s: CRD %s serves no version %q", d, c.Metadata.Name, version)
	}
	obj, err := yamlToValue(d.raw)
	if err != nil {
		t.Fatalf("%s: %v", d, err)
	}
	if err := strictObjectMeta(obj.(map[string]any)["metadata"]); err != nil {
		t.Errorf("%s: metadata: %v", d, err)
	}
	for _, err := range validate(schema, obj, "") {
		t.Errorf("%s: %v", d, err)
	}
	if c.Spec.Scope == "Namespaced" {
		if ns, _ := obj.(map[string]any)["metadata"].(map[string]any)["namespace"].(string); ns == "" {
			t.Errorf("%s: a namespaced object without metadata.namespace lands in whatever namespace kubectl uses; name one", d)
		}
	}
}

// strictObjectMeta decodes m into ObjectMeta; unknown fields are errors.
func strictObjectMeta(m any) error {
	j, err := json.Marshal(m)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	var meta metav1.ObjectMeta
	return dec.Decode(&meta)
}

func yamlToValue(raw []byte) (any, error) {
	j, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, err
	}
	var v any
	if err := yaml.Unmarshal(j, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// checkKustomization: the kustomization names every top-level manifest
// (and nothing else), so `kubectl apply -k deploy/` installs everything.
func checkKustomization(t *testing.T, d doc) {
	t.Helper()
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
		Images     []struct {
			Name    string `json:"name"`
			NewName string `json:"newName,omitempty"`
			NewTag  string `json:"newTag,omitempty"`
		} `json:"images,omitempty"`
	}
	if err := yaml.UnmarshalStrict(d.raw, &k); err != nil {
		t.Fatalf("%s: %v", d, err)
	}
	want, _ := filepath.Glob("*.yaml")
	var top []string
	for _, f := range want {
		if f != d.file {
			top = append(top, f)
		}
	}
	got := append([]string(nil), k.Resources...)
	sort.Strings(got)
	sort.Strings(top)
	if strings.Join(got, " ") != strings.Join(top, " ") {
		t.Errorf("%s: resources %v, want every top-level manifest %v", d, got, top)
	}
}
