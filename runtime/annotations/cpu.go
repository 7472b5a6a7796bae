package annotations

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"libvirt.org/go/libvirtxml"
	"sigs.k8s.io/yaml"
)

const cpuSettingAccepted = `the fields of a libvirt <cpu> element in YAML or JSON, e.g. "mode: host-passthrough" or "{mode: custom, model: {value: Westmere}}"`

// cpuSetting parses VirtletLibvirtCPUSetting: the fields of libvirt's <cpu>
// element as YAML, the way Virtlet read it into libvirtxml.DomainCPU.
// Unknown fields are refused so that a typo does not silently give another CPU.
func (p *parser) cpuSetting(vcpus int) *libvirtxml.DomainCPU {
	v, ok := p.ann[KeyLibvirtCPUSetting]
	if !ok || strings.TrimSpace(v) == "" {
		return nil
	}
	var cpu libvirtxml.DomainCPU
	if err := strictUnmarshal(v, &cpu); err != nil {
		p.fail(KeyLibvirtCPUSetting, v, cpuSettingAccepted, err)
		return nil
	}
	cpu.XMLName.Space, cpu.XMLName.Local = "", ""
	if err := checkCPU(&cpu, vcpus); err != nil {
		p.fail(KeyLibvirtCPUSetting, v, cpuSettingAccepted, err)
		return nil
	}
	return &cpu
}

func oneOf(field, v string, allowed ...string) error {
	if v == "" {
		return nil
	}
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s %q is not one of %s", field, v, strings.Join(allowed, ", "))
}

// checkCPU refuses what libvirt's schema or its topology check would refuse,
// so the user learns it at CreateContainer, with the annotation named.
func checkCPU(c *libvirtxml.DomainCPU, vcpus int) error {
	var errs []error
	errs = append(errs, checkCPUTop(c)...)
	if m := c.Model; m != nil {
		errs = append(errs, checkCPUModel(m)...)
	}
	if t := c.Topology; t != nil {
		errs = appendErr(errs, checkTopology(t, vcpus))
	}
	if ca := c.Cache; ca != nil {
		errs = appendErr(errs, oneOf("cache.mode", ca.Mode, "emulate", "passthrough", "disable"))
		if ca.Mode == "" {
			errs = append(errs, errors.New("cache needs mode (emulate, passthrough or disable)"))
		}
		if ca.Level > 3 {
			errs = append(errs, fmt.Errorf("cache.level %d is not 1, 2 or 3", ca.Level))
		}
	}
	if mp := c.MaxPhysAddr; mp != nil {
		errs = appendErr(errs, oneOf("maxphysaddr.mode", mp.Mode, "emulate", "passthrough"))
		if mp.Mode == "" {
			errs = append(errs, errors.New("maxphysaddr needs mode (emulate or passthrough)"))
		}
		if mp.Limit != 0 {
			errs = append(errs, errors.New("maxphysaddr.limit is not supported by podvisor"))
		}
	}
	errs = append(errs, checkFeatures(c.Features)...)
	if c.Numa != nil {
		errs = append(errs, errors.New("numa is not supported by podvisor"))
	}
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}

func appendErr(errs []error, err error) []error {
	if err != nil {
		return append(errs, err)
	}
	return errs
}

// checkCPUTop checks the <cpu> element's own attributes and the vendor.
func checkCPUTop(c *libvirtxml.DomainCPU) []error {
	var errs []error
	errs = appendErr(errs, oneOf("mode", c.Mode, "custom", "host-model", "host-passthrough", "maximum"))
	errs = appendErr(errs, oneOf("match", c.Match, "minimum", "exact", "strict"))
	errs = appendErr(errs, oneOf("check", c.Check, "none", "partial", "full"))
	errs = appendErr(errs, oneOf("migratable", c.Migratable, "on", "off"))
	if c.DeprecatedFeatures != "" {
		errs = append(errs, errors.New("deprecatedfeatures is not supported by podvisor"))
	}
	if !printable(c.Vendor) {
		errs = append(errs, fmt.Errorf("vendor %q has control characters", c.Vendor))
	}
	noModel := c.Model == nil || c.Model.Value == ""
	if c.Vendor != "" && noModel {
		errs = append(errs, errors.New("vendor needs model.value"))
	}
	if (c.Mode == "custom" || c.Mode == "") && noModel && (c.Mode == "custom" || len(c.Features) > 0 || c.Vendor != "") {
		errs = append(errs, errors.New("mode custom needs model.value (a CPU model name such as Westmere)"))
	}
	return errs
}

func checkCPUModel(m *libvirtxml.DomainCPUModel) []error {
	var errs []error
	errs = appendErr(errs, oneOf("model.fallback", m.Fallback, "allow", "forbid"))
	if !printable(m.Value) {
		errs = append(errs, fmt.Errorf("model.value %q is not a CPU model name", m.Value))
	}
	if m.VendorID != "" && (len(m.VendorID) != 12 || strings.Contains(m.VendorID, ",") || !printable(m.VendorID)) {
		errs = append(errs, fmt.Errorf("model.vendorid %q is not 12 characters without ','", m.VendorID))
	}
	return errs
}

func checkTopology(t *libvirtxml.DomainCPUTopology, vcpus int) error {
	switch {
	case t.Clusters != 0:
		return errors.New("topology.clusters is not supported by podvisor")
	case t.Sockets < 1 || t.Cores < 1 || t.Threads < 1 || t.Dies < 0:
		return errors.New("topology needs sockets, cores and threads of at least 1")
	case t.Sockets > MaxVCPUCount || t.Cores > MaxVCPUCount || t.Threads > MaxVCPUCount || t.Dies > MaxVCPUCount:
		return fmt.Errorf("topology values must not exceed %d", MaxVCPUCount)
	}
	if n := t.Sockets * max(t.Dies, 1) * t.Cores * t.Threads; n != vcpus {
		return fmt.Errorf("topology gives %d vCPUs but %s is %d: they must be equal", n, KeyVCPUCount, vcpus)
	}
	return nil
}

// checkFeatures checks each feature and fills in the policy libvirt
// assumes when it is absent.
func checkFeatures(fs []libvirtxml.DomainCPUFeature) []error {
	var errs []error
	for i := range fs {
		f := &fs[i]
		if !validFeatureName(f.Name) {
			errs = append(errs, fmt.Errorf("features[%d].name %q is not a feature name such as vmx (letters, digits, '-', '_', '.')", i, f.Name))
		}
		// libvirt reads a guest feature without policy as "require"; say so
		// explicitly because its schema wants the attribute.
		if f.Policy == "" {
			f.Policy = "require"
		}
		errs = appendErr(errs, oneOf(fmt.Sprintf("features[%d].policy", i), f.Policy, "force", "require", "optional", "disable", "forbid"))
	}
	return errs
}

// strictUnmarshal decodes YAML (or JSON) into out, refusing unknown fields,
// with errors that name the field in the user's terms rather than Go's.
func strictUnmarshal(doc string, out any) error {
	js, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		return yamlError(err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			got := map[string]string{"array": "list", "object": "mapping", "bool": "boolean"}[te.Value]
			if got == "" {
				got = te.Value
			}
			field := strings.ToLower(te.Field)
			if field == "" {
				return fmt.Errorf("the document is a %s, expected %s", got, jsonKind(te.Type))
			}
			return fmt.Errorf("field %s is a %s, expected %s", field, got, jsonKind(te.Type))
		}
		if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return fmt.Errorf("unknown field %s", msg)
		}
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return t.Kind().String()
}

func validFeatureName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// printable refuses control characters and what XML cannot carry unchanged
// (invalid UTF-8 decodes to U+FFFD).
func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r >= 0x7f && r <= 0x9f || r >= 0xfffd && r <= 0xffff {
			return false
		}
	}
	return true
}
