package cloudinit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/podvisor/podvisor/runtime/errdefs"
)

// DataSource reads the ConfigMaps and Secrets that data source annotations
// name. The runtime passes a Kubernetes client implementation when it has
// one; nil means none is configured.
type DataSource interface {
	ConfigMap(ctx context.Context, namespace, name string) (map[string]string, error)
	Secret(ctx context.Context, namespace, name string) (map[string][]byte, error)
}

// ErrNotFound is wrapped by DataSource implementations of this package when
// the object does not exist.
var ErrNotFound = errdefs.Sentinel(errdefs.ErrNotFound, "not found")

// ParseSourceRef parses an annotation value `configmap/NAME`,
// `secret/NAME` or, when allowKey, `configmap/NAME/KEY` and `secret/NAME/KEY`.
// annotation names the annotation in the error.
func ParseSourceRef(annotation, value string, allowKey bool) (*SourceRef, error) {
	accepted := "configmap/NAME or secret/NAME"
	if allowKey {
		accepted = "configmap/NAME[/KEY] or secret/NAME[/KEY]"
	}
	parts := strings.Split(value, "/")
	if len(parts) < 2 || len(parts) > 3 || (len(parts) == 3 && !allowKey) {
		return nil, fmt.Errorf("annotation %s: bad value %q: accepted %s", annotation, value, accepted)
	}
	kind := SourceKind(strings.ToLower(parts[0]))
	if kind != SourceConfigMap && kind != SourceSecret {
		return nil, fmt.Errorf("annotation %s: bad value %q: kind %q is neither configmap nor secret (accepted %s)", annotation, value, parts[0], accepted)
	}
	for _, p := range parts[1:] {
		if p == "" {
			return nil, fmt.Errorf("annotation %s: bad value %q: empty name or key (accepted %s)", annotation, value, accepted)
		}
	}
	r := &SourceRef{Kind: kind, Name: parts[1]}
	if len(parts) == 3 {
		r.Key = parts[2]
	}
	return r, nil
}

// fetch reads ref's object as a map of byte values. annotation names the
// annotation that referenced it, for errors.
func fetch(ctx context.Context, ds DataSource, in *Input, annotation string, ref *SourceRef) (map[string][]byte, error) {
	if ds == nil {
		return nil, fmt.Errorf("%s: annotation %s=%q needs a Kubernetes client to read the %s, and none is configured",
			in.podRef(), annotation, ref.String(), ref.Kind)
	}
	switch ref.Kind {
	case SourceConfigMap:
		m, err := ds.ConfigMap(ctx, in.PodNamespace, ref.Name)
		if err != nil {
			return nil, fmt.Errorf("%s: annotation %s=%q: reading configmap %s/%s: %w", in.podRef(), annotation, ref.String(), in.PodNamespace, ref.Name, err)
		}
		r := make(map[string][]byte, len(m))
		for k, v := range m {
			r[k] = []byte(v)
		}
		return r, nil
	case SourceSecret:
		m, err := ds.Secret(ctx, in.PodNamespace, ref.Name)
		if err != nil {
			return nil, fmt.Errorf("%s: annotation %s=%q: reading secret %s/%s: %w", in.podRef(), annotation, ref.String(), in.PodNamespace, ref.Name, err)
		}
		return m, nil
	default:
		return nil, fmt.Errorf("%s: annotation %s=%q: kind %q is neither configmap nor secret", in.podRef(), annotation, ref.String(), ref.Kind)
	}
}

// StaticDataSource serves ConfigMaps and Secrets from memory, keyed
// "namespace/name". For tests and for callers that already hold the objects.
type StaticDataSource struct {
	ConfigMaps map[string]map[string]string
	Secrets    map[string]map[string][]byte
}

var _ DataSource = (*StaticDataSource)(nil)

// ConfigMap implements DataSource.
func (s *StaticDataSource) ConfigMap(_ context.Context, namespace, name string) (map[string]string, error) {
	m, ok := s.ConfigMaps[namespace+"/"+name]
	if !ok {
		return nil, fmt.Errorf("configmap %s/%s: %w", namespace, name, ErrNotFound)
	}
	return m, nil
}

// Secret implements DataSource.
func (s *StaticDataSource) Secret(_ context.Context, namespace, name string) (map[string][]byte, error) {
	m, ok := s.Secrets[namespace+"/"+name]
	if !ok {
		return nil, fmt.Errorf("secret %s/%s: %w", namespace, name, ErrNotFound)
	}
	return m, nil
}

// FileDataSource reads objects from a directory tree
// `<Root>/<namespace>/configmap/<name>/<key>` and
// `<Root>/<namespace>/secret/<name>/<key>`, one file per key. It stands in for
// a Kubernetes client on nodes without API access and in tests.
type FileDataSource struct {
	Root string
}

var _ DataSource = (*FileDataSource)(nil)

// ConfigMap implements DataSource.
func (f *FileDataSource) ConfigMap(ctx context.Context, namespace, name string) (map[string]string, error) {
	m, err := f.read(ctx, namespace, string(SourceConfigMap), name)
	if err != nil {
		return nil, err
	}
	r := make(map[string]string, len(m))
	for k, v := range m {
		r[k] = string(v)
	}
	return r, nil
}

// Secret implements DataSource.
func (f *FileDataSource) Secret(ctx context.Context, namespace, name string) (map[string][]byte, error) {
	return f.read(ctx, namespace, string(SourceSecret), name)
}

func (f *FileDataSource) read(ctx context.Context, namespace, kind, name string) (map[string][]byte, error) {
	for _, p := range []string{namespace, name} {
		if p == "" || p == "." || p == ".." || strings.ContainsRune(p, '/') {
			return nil, fmt.Errorf("%s %s/%s: invalid namespace or name", kind, namespace, name)
		}
	}
	dir := filepath.Join(f.Root, namespace, kind, name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s %s/%s (no directory %s): %w", kind, namespace, name, dir, ErrNotFound)
		}
		return nil, fmt.Errorf("reading %s %s/%s: %w", kind, namespace, name, err)
	}
	r := make(map[string][]byte, len(entries))
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// Skip kubelet's atomic-writer bookkeeping (..data, ..<timestamp>).
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s %s/%s key %s: %w", kind, namespace, name, e.Name(), err)
		}
		if !st.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s %s/%s key %s: %w", kind, namespace, name, e.Name(), err)
		}
		r[e.Name()] = data
	}
	return r, nil
}
