package cloudinit

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

func TestMerge(t *testing.T) {
	tests := []struct {
		name, base, overlay, want string
	}{
		{"maps merge", "{a: 1, b: {x: 1}}", "{b: {y: 2}, c: 3}", "{a: 1, b: {x: 1, y: 2}, c: 3}"},
		{"lists append", "{l: [1, 2]}", "{l: [3]}", "{l: [1, 2, 3]}"},
		{"scalars replace", "{s: a, n: 1}", "{s: b, n: 2}", "{s: b, n: 2}"},
		{"null replaces", "{s: a}", "{s: null}", "{s: null}"},
		{"type change replaces", "{s: [1]}", "{s: {k: v}}", "{s: {k: v}}"},
		{"list replaced by scalar", "{s: [1]}", "{s: x}", "{s: x}"},
		{"deep lists append", "{a: {b: {l: [x]}}}", "{a: {b: {l: [y]}}}", "{a: {b: {l: [x, y]}}}"},
		{"nil base", "null", "{a: 1}", "{a: 1}"},
		{"nil overlay", "{a: 1}", "null", "null"},
		{"users example", "{users: [{name: a}]}", "{users: [{name: b}], ssh_pwauth: true}",
			"{users: [{name: a}, {name: b}], ssh_pwauth: true}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, o, w := parseAny(t, tc.base), parseAny(t, tc.overlay), parseAny(t, tc.want)
			bCopy, oCopy := parseAny(t, tc.base), parseAny(t, tc.overlay)
			got := Merge(b, o)
			if diff := cmp.Diff(w, got); diff != "" {
				t.Errorf("Merge(%s, %s) (-want +got):\n%s", tc.base, tc.overlay, diff)
			}
			if !cmp.Equal(b, bCopy) || !cmp.Equal(o, oCopy) {
				t.Errorf("Merge modified its arguments")
			}
		})
	}
}

// The result must not share lists or maps with the arguments: appending to
// a merged list later must not show up in the base.
func TestMergeResultIsACopy(t *testing.T) {
	inner := []any{"x"}
	b := map[string]any{"a": map[string]any{"l": inner}}
	r := Merge(b, map[string]any{"c": 1}).(map[string]any)
	r["a"].(map[string]any)["l"].([]any)[0] = "changed"
	if inner[0] != "x" {
		t.Errorf("changing the result changed the base")
	}
}

func parseAny(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad test YAML %q: %v", s, err)
	}
	return v
}

// FuzzMerge: no panic, the result marshals to YAML that parses back, every
// key of both maps survives, and lists grow by exactly the overlay's length.
func FuzzMerge(f *testing.F) {
	f.Add([]byte("{a: 1}"), []byte("{b: 2}"))
	f.Add([]byte("users: [{name: a}]\nruncmd: [x]"), []byte("users: [{name: b}]\nruncmd: {x: 1}"))
	f.Add([]byte("[1, 2]"), []byte("[3]"))
	f.Add([]byte("a: {b: {c: [1]}}"), []byte("a: {b: {c: [2], d: null}}"))
	f.Add([]byte("x"), []byte("{y: [1, {z: 2}]}"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var base, overlay any
		if yaml.Unmarshal(a, &base) != nil || yaml.Unmarshal(b, &overlay) != nil {
			return
		}
		r := Merge(base, overlay)
		out, err := yaml.Marshal(r)
		if err != nil {
			t.Fatalf("result does not marshal: %v", err)
		}
		var back any
		if err := yaml.Unmarshal(out, &back); err != nil {
			t.Fatalf("result is not valid YAML: %v\n%s", err, out)
		}
		if bm, ok := base.(map[string]any); ok {
			if om, ok := overlay.(map[string]any); ok {
				rm := r.(map[string]any)
				for k := range bm {
					if _, ok := rm[k]; !ok {
						t.Fatalf("base key %q lost", k)
					}
				}
				for k := range om {
					if _, ok := rm[k]; !ok {
						t.Fatalf("overlay key %q lost", k)
					}
				}
			}
		}
		// The same inputs through Generate: base as the source object,
		// overlay as VirtletCloudInitUserData. user-data must stay valid.
		if om, ok := overlay.(map[string]any); ok {
			src := map[string]string{}
			if bm, ok := base.(map[string]any); ok {
				for k, v := range bm {
					y, err := yaml.Marshal(v)
					if err != nil {
						t.Fatalf("marshal base value: %v", err)
					}
					src[k] = string(y)
				}
			}
			ds := &StaticDataSource{ConfigMaps: map[string]map[string]string{"ns/src": src}}
			in := Input{PodName: "vm", PodNamespace: "ns", UserData: om,
				UserDataSource: &SourceRef{Kind: SourceConfigMap, Name: "src"},
				Env:            []EnvVar{{Name: "A", Value: "1"}}}
			c, err := Generate(context.Background(), in, ds)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			ud, _ := c.File(PathNoCloudUserData)
			if !strings.HasPrefix(string(ud), "#cloud-config\n") {
				t.Fatalf("user-data lacks the #cloud-config header:\n%s", ud)
			}
			var u map[string]any
			if err := yaml.Unmarshal(ud, &u); err != nil {
				t.Fatalf("user-data is not a YAML map: %v\n%s", err, ud)
			}
		}
		if bl, ok := base.([]any); ok {
			if ol, ok := overlay.([]any); ok {
				if got := len(r.([]any)); got != len(bl)+len(ol) {
					t.Fatalf("merged list has %d entries, want %d", got, len(bl)+len(ol))
				}
			}
		}
	})
}
