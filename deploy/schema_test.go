package deploy

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The apiextensions types are not a dependency of this module, so a CRD is
// decoded strictly into this subset of apiextensions.k8s.io/v1 (every field
// the manifests may use; anything else is an unknown field and fails) and its
// schema is checked for the structural rules the API server enforces.

type crd struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       crdSpec           `json:"spec"`
}

type crdSpec struct {
	Group    string       `json:"group"`
	Scope    string       `json:"scope"`
	Names    crdNames     `json:"names"`
	Versions []crdVersion `json:"versions"`
}

type crdNames struct {
	Kind       string   `json:"kind"`
	ListKind   string   `json:"listKind,omitempty"`
	Plural     string   `json:"plural"`
	Singular   string   `json:"singular,omitempty"`
	ShortNames []string `json:"shortNames,omitempty"`
	Categories []string `json:"categories,omitempty"`
}

type crdVersion struct {
	Name    string `json:"name"`
	Served  bool   `json:"served"`
	Storage bool   `json:"storage"`
	Schema  *struct {
		OpenAPIV3Schema *schemaProps `json:"openAPIV3Schema"`
	} `json:"schema"`
	Subresources             map[string]json.RawMessage `json:"subresources,omitempty"`
	AdditionalPrinterColumns []printerColumn            `json:"additionalPrinterColumns,omitempty"`
}

type printerColumn struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Format      string `json:"format,omitempty"`
	Description string `json:"description,omitempty"`
	Priority    int32  `json:"priority,omitempty"`
	JSONPath    string `json:"jsonPath"`
}

type schemaProps struct {
	Type                 string                  `json:"type,omitempty"`
	Description          string                  `json:"description,omitempty"`
	Format               string                  `json:"format,omitempty"`
	Properties           map[string]*schemaProps `json:"properties,omitempty"`
	AdditionalProperties *schemaProps            `json:"additionalProperties,omitempty"`
	Items                *schemaProps            `json:"items,omitempty"`
	Required             []string                `json:"required,omitempty"`
	OneOf                []*schemaProps          `json:"oneOf,omitempty"`
	Enum                 []any                   `json:"enum,omitempty"`
	Minimum              *float64                `json:"minimum,omitempty"`
	Maximum              *float64                `json:"maximum,omitempty"`
	MinLength            *int64                  `json:"minLength,omitempty"`
	MaxLength            *int64                  `json:"maxLength,omitempty"`
	Pattern              string                  `json:"pattern,omitempty"`
	PreserveUnknown      *bool                   `json:"x-kubernetes-preserve-unknown-fields,omitempty"`
}

var schemaTypes = map[string]bool{"object": true, "array": true, "string": true, "integer": true, "number": true, "boolean": true}

// checkCRD applies the API server's rules that matter here: the name is
// <plural>.<group>, exactly one storage version, every version has a
// structural schema, and printer columns point into the schema.
func checkCRD(c *crd) []error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.APIVersion != "apiextensions.k8s.io/v1" {
		fail("apiVersion %q: want apiextensions.k8s.io/v1", c.APIVersion)
	}
	if want := c.Spec.Names.Plural + "." + c.Spec.Group; c.Metadata.Name != want {
		fail("metadata.name %q: must be <plural>.<group> = %q", c.Metadata.Name, want)
	}
	if c.Spec.Scope != "Namespaced" && c.Spec.Scope != "Cluster" {
		fail("spec.scope %q: want Namespaced or Cluster", c.Spec.Scope)
	}
	if c.Spec.Names.Kind == "" || c.Spec.Names.Plural == "" {
		fail("spec.names: kind and plural are required")
	}
	if c.Spec.Names.Plural != strings.ToLower(c.Spec.Names.Plural) {
		fail("spec.names.plural %q: must be lowercase", c.Spec.Names.Plural)
	}
	storage := 0
	for i, v := range c.Spec.Versions {
		p := fmt.Sprintf("spec.versions[%d]", i)
		if v.Storage {
			storage++
		}
		if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
			fail("%s.schema.openAPIV3Schema: required in apiextensions.k8s.io/v1", p)
			continue
		}
		root := v.Schema.OpenAPIV3Schema
		if root.Type != "object" {
			fail("%s: the root schema must be of type object", p)
		}
		if m := root.Properties["metadata"]; m != nil && (len(m.Properties) > 0 || m.Type != "object") {
			fail("%s: metadata may only be declared as type object", p)
		}
		errs = append(errs, structural(root, p+".schema.openAPIV3Schema", false)...)
		for j, col := range v.AdditionalPrinterColumns {
			if !strings.HasPrefix(col.JSONPath, ".metadata.") && schemaAt(root, col.JSONPath) == nil {
				fail("%s.additionalPrinterColumns[%d] %q: jsonPath %s is not in the schema", p, j, col.Name, col.JSONPath)
			}
		}
	}
	if storage != 1 {
		fail("spec.versions: %d storage versions, want exactly 1", storage)
	}
	return errs
}

// structural checks that every node declares a type (nodes under oneOf
// must not: there only value validations are allowed), that properties
// and items appear on the types that have them, and that properties and
// additionalProperties are not combined.
func structural(s *schemaProps, path string, inJunctor bool) []error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(path+": "+format, a...)) }
	if inJunctor {
		if s.Type != "" || s.Description != "" || s.Items != nil || s.AdditionalProperties != nil {
			fail("inside oneOf only value validations are allowed (no type, description, items or additionalProperties)")
		}
	} else if s.Type == "" && (s.PreserveUnknown == nil || !*s.PreserveUnknown) {
		fail("type is required in a structural schema")
	} else if s.Type != "" && !schemaTypes[s.Type] {
		fail("type %q is not an OpenAPI type", s.Type)
	}
	if len(s.Properties) > 0 && s.Type != "object" && !inJunctor {
		fail("properties on a schema of type %q", s.Type)
	}
	if s.Items != nil && s.Type != "array" {
		fail("items on a schema of type %q", s.Type)
	}
	if s.Type == "array" && s.Items == nil {
		fail("an array needs items")
	}
	if s.AdditionalProperties != nil && len(s.Properties) > 0 {
		fail("properties and additionalProperties are mutually exclusive")
	}
	for _, r := range s.Required {
		if !inJunctor && s.Properties[r] == nil {
			fail("required property %q is not declared", r)
		}
	}
	for _, k := range sortedKeys(s.Properties) {
		errs = append(errs, structural(s.Properties[k], path+".properties."+k, false)...)
	}
	if s.AdditionalProperties != nil {
		errs = append(errs, structural(s.AdditionalProperties, path+".additionalProperties", false)...)
	}
	if s.Items != nil {
		errs = append(errs, structural(s.Items, path+".items", false)...)
	}
	for i, o := range s.OneOf {
		errs = append(errs, structural(o, fmt.Sprintf("%s.oneOf[%d]", path, i), true)...)
	}
	return errs
}

// schemaAt follows a simple JSON path (.a.b) through properties.
func schemaAt(s *schemaProps, path string) *schemaProps {
	for _, part := range strings.Split(strings.TrimPrefix(path, "."), ".") {
		if s == nil {
			return nil
		}
		s = s.Properties[part]
	}
	return s
}

// validate checks value (as decoded by encoding/json) against s. Unknown
// fields are errors, as with the API server's fieldValidation=Strict
// (kubectl's default), instead of being pruned silently.
func validate(s *schemaProps, v any, path string) []error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(path+": "+format, a...)) }
	if s.Type != "" && !hasType(s.Type, v) {
		return []error{fmt.Errorf("%s: %s is not of type %s", path, describe(v), s.Type)}
	}
	if len(s.Enum) > 0 {
		found := false
		for _, e := range s.Enum {
			if reflect.DeepEqual(e, v) {
				found = true
			}
		}
		if !found {
			fail("%s is not one of %v", describe(v), s.Enum)
		}
	}
	if n, ok := v.(float64); ok {
		if s.Minimum != nil && n < *s.Minimum {
			fail("%v is less than the minimum %v", n, *s.Minimum)
		}
		if s.Maximum != nil && n > *s.Maximum {
			fail("%v is more than the maximum %v", n, *s.Maximum)
		}
	}
	switch x := v.(type) {
	case map[string]any:
		for _, r := range s.Required {
			if _, ok := x[r]; !ok {
				fail("required field %q is missing", r)
			}
		}
		for _, k := range sortedKeys(x) {
			switch {
			case path == "" && k == "metadata":
				// ObjectMeta: checked by the caller, not by the schema.
			case s.Properties[k] != nil:
				errs = append(errs, validate(s.Properties[k], x[k], path+"."+k)...)
			case s.AdditionalProperties != nil:
				errs = append(errs, validate(s.AdditionalProperties, x[k], path+"."+k)...)
			case s.PreserveUnknown != nil && *s.PreserveUnknown:
			case path == "" && (k == "apiVersion" || k == "kind"):
			default:
				if s.Type == "object" {
					fail("unknown field %q (declared: %s)", k, strings.Join(sortedKeys(s.Properties), ", "))
				}
			}
		}
	case []any:
		if s.Items != nil {
			for i, e := range x {
				errs = append(errs, validate(s.Items, e, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	}
	if len(s.OneOf) > 0 {
		matched := 0
		for _, o := range s.OneOf {
			if len(validate(o, v, path)) == 0 {
				matched++
			}
		}
		if matched != 1 {
			fail("must match exactly one of %d alternatives (%s), matches %d", len(s.OneOf), describeOneOf(s.OneOf), matched)
		}
	}
	return errs
}

func hasType(t string, v any) bool {
	switch t {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "number":
		_, ok := v.(float64)
		return ok
	case "integer":
		n, ok := v.(float64)
		return ok && n == math.Trunc(n)
	}
	return false
}

func describe(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return fmt.Sprintf("string %q", v)
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", v)
}

func describeOneOf(alts []*schemaProps) string {
	var parts []string
	for _, a := range alts {
		parts = append(parts, "required "+strings.Join(a.Required, "+"))
	}
	return strings.Join(parts, " | ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
