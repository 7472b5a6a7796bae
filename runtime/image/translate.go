package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// NamedConfig is a translation config with the name of where it came from
// ("file:<name>" or "mapping:<namespace>/<name>"). Err is set instead of
// Config when the config could not be read or is invalid.
type NamedConfig struct {
	Name   string
	Config *Config
	Err    error
	// Origin is who wrote the config: OriginOperator for the directory's
	// files, OriginObject for VirtletImageMappings. A MappingSource that
	// leaves it unset gets its endpoints treated as untranslated names.
	Origin Origin
}

// MappingSource supplies the configs of VirtletImageMapping objects. An
// implementation keeps its own cache up to date (a watch) so that a pull
// does not call the API server.
type MappingSource interface {
	Mappings(ctx context.Context) ([]NamedConfig, error)
}

// Translations turns image names into endpoints using the config files of a
// directory and any MappingSources. It implements Translator.
//
// Precedence, deterministic (Virtlet's depended on map order):
//  1. only configs whose prefix matches apply (an empty prefix matches all);
//  2. an exact `name` rule anywhere beats every `regexp` rule;
//  3. between configs: the longer prefix first, then directory files before
//     VirtletImageMapping objects, then by file name or namespace/name;
//  4. within a config, rules in the order they are listed.
//
// No match: the name itself is the URL.
type Translations struct {
	dir     string
	sources []MappingSource

	mu      sync.Mutex
	dirSig  string
	dirCfgs []NamedConfig
}

// NewTranslations reads configs from dir (may be empty for none) and from
// the sources.
func NewTranslations(dir string, sources ...MappingSource) *Translations {
	return &Translations{dir: dir, sources: sources}
}

// Configs returns every config currently known, in precedence order within
// prefix length, including those that failed to load (with Err set).
func (t *Translations) Configs(ctx context.Context) ([]NamedConfig, error) {
	files, err := t.dirConfigs()
	if err != nil {
		return nil, err
	}
	all := append([]NamedConfig(nil), files...)
	for _, s := range t.sources {
		got, err := s.Mappings(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing VirtletImageMappings: %w", err)
		}
		m := append([]NamedConfig(nil), got...)
		sort.SliceStable(m, func(i, j int) bool { return m[i].Name < m[j].Name })
		all = append(all, m...)
	}
	// Stable: files stay before mappings and names stay sorted within a
	// prefix length.
	sort.SliceStable(all, func(i, j int) bool {
		return prefixLen(all[i]) > prefixLen(all[j])
	})
	return all, nil
}

func prefixLen(c NamedConfig) int {
	if c.Config == nil {
		return -1
	}
	return len(c.Config.Prefix)
}

// Translate implements Translator.
func (t *Translations) Translate(ctx context.Context, name string) (Endpoint, error) {
	if t == nil {
		return Endpoint{URL: name, Source: "no translation configs"}, nil
	}
	cfgs, err := t.Configs(ctx)
	if err != nil {
		return Endpoint{}, fmt.Errorf("translating image name %q: %w", name, err)
	}
	return translate(cfgs, name), nil
}

func translate(cfgs []NamedConfig, name string) Endpoint {
	type cand struct {
		nc   NamedConfig
		rest string
	}
	var cands []cand
	for _, nc := range cfgs {
		if nc.Config == nil {
			continue
		}
		rest := name
		if p := nc.Config.Prefix; p != "" {
			var ok bool
			if rest, ok = strings.CutPrefix(name, p+"/"); !ok {
				continue
			}
		}
		cands = append(cands, cand{nc, rest})
	}
	for _, c := range cands {
		for i, r := range c.nc.Config.Rules {
			if r.Name != "" && r.Name == c.rest {
				return endpoint(c.nc, i, r, r.URL)
			}
		}
	}
	for _, c := range cands {
		for i, r := range c.nc.Config.Rules {
			if r.Regexp == "" {
				continue
			}
			// Validated when parsed; compiling again costs microseconds
			// per pull, nothing next to a download.
			re, err := regexp.Compile(r.Regexp)
			if err != nil {
				continue // refused by Validate; unreachable for parsed configs
			}
			if m := re.FindStringSubmatchIndex(c.rest); m != nil {
				return endpoint(c.nc, i, r, string(re.ExpandString(nil, r.URL, c.rest, m)))
			}
		}
	}
	return Endpoint{URL: name, Source: "no translation rule matched"}
}

func endpoint(nc NamedConfig, i int, r Rule, url string) Endpoint {
	return Endpoint{
		URL:           url,
		Transport:     nc.Config.Transports[r.Transport],
		TransportName: r.Transport,
		Source:        fmt.Sprintf("%s translations[%d]", nc.Name, i),
		Origin:        nc.Origin,
	}
}

// dirConfigs returns the directory's configs, re-reading them only when a
// file's identity, size or time changed. A ConfigMap volume updates by
// swapping a symlink, which changes what the stat of each file follows.
func (t *Translations) dirConfigs() ([]NamedConfig, error) {
	if t.dir == "" {
		return nil, nil
	}
	names, sig, err := dirSignature(t.dir)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if sig == t.dirSig && t.dirCfgs != nil {
		return t.dirCfgs, nil
	}
	cfgs := make([]NamedConfig, 0, len(names))
	for _, n := range names {
		nc := NamedConfig{Name: "file:" + n, Origin: OriginOperator}
		data, err := os.ReadFile(filepath.Join(t.dir, n))
		if err == nil {
			nc.Config, err = ParseConfig(filepath.Join(t.dir, n), data)
		}
		nc.Err = err
		cfgs = append(cfgs, nc)
	}
	t.dirSig, t.dirCfgs = sig, cfgs
	return cfgs, nil
}

// dirSignature lists the regular files of dir (following symlinks, skipping
// hidden entries such as a ConfigMap's ..data) sorted by name, and a string
// that changes when any of them changes.
func dirSignature(dir string) ([]string, string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "absent", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading image translation directory %s: %w", dir, err)
	}
	var names []string
	var sig strings.Builder
	for _, e := range entries { // ReadDir sorts by name
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		st, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		names = append(names, e.Name())
		fmt.Fprintf(&sig, "%s\x00%d\x00%d\x00%s\n", e.Name(), st.Size(), st.ModTime().UnixNano(), fileID(st))
	}
	return names, sig.String(), nil
}
