package cloudinit

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Merge deep-merges overlay into base with Virtlet's rules and returns the
// result; neither argument is modified. Maps merge key by key, lists append
// (base first), anything else is replaced by overlay. Both arguments are
// expected in the shape YAML/JSON decoding gives (map[string]any, []any,
// scalars); other map and slice types are treated as scalars.
func Merge(base, overlay any) any {
	switch o := overlay.(type) {
	case map[string]any:
		b, ok := base.(map[string]any)
		if !ok {
			return deepCopy(o)
		}
		r := make(map[string]any, len(b)+len(o))
		for k, v := range b {
			r[k] = deepCopy(v)
		}
		for k, v := range o {
			if bv, found := b[k]; found {
				r[k] = Merge(bv, v)
			} else {
				r[k] = deepCopy(v)
			}
		}
		return r
	case []any:
		b, ok := base.([]any)
		if !ok {
			return deepCopy(o)
		}
		r := make([]any, 0, len(b)+len(o))
		for _, v := range b {
			r = append(r, deepCopy(v))
		}
		for _, v := range o {
			r = append(r, deepCopy(v))
		}
		return r
	default:
		return overlay
	}
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		r := make(map[string]any, len(t))
		for k, e := range t {
			r[k] = deepCopy(e)
		}
		return r
	case []any:
		r := make([]any, len(t))
		for i, e := range t {
			r[i] = deepCopy(e)
		}
		return r
	default:
		return v
	}
}

// normalize turns any JSON-marshalable value into the canonical decoded
// shape (map[string]any, []any, json.Number, string, bool, nil) so that Merge
// sees the same types whatever the caller built, and the result is a copy.
func normalize(what string, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%s cannot be encoded as JSON: %w", what, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var r any
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%s cannot be decoded from JSON: %w", what, err)
	}
	return r, nil
}

func normalizeMap(what string, m map[string]any) (map[string]any, error) {
	if m == nil {
		return nil, nil
	}
	v, err := normalize(what, m)
	if err != nil {
		return nil, err
	}
	r, _ := v.(map[string]any)
	return r, nil
}
