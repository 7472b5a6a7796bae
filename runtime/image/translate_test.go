package image

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// virtletExample is the shape of Virtlet's documented
// virtlet-image-translations ConfigMap file.
const virtletExample = `
translations:
  - name: cirros
    url: https://download.cirros-cloud.net/0.3.5/cirros-0.3.5-x86_64-disk.img
  - regexp: 'centos/(\d+)-(\d+)'
    url: 'https://cloud.centos.org/centos/$1/images/CentOS-$1-x86_64-GenericCloud-$2.qcow2'
  - name: fedora
    url: https://dl.fedoraproject.org/fedora.qcow2
    transport: my-server
transports:
  my-server:
    timeout: 1000
    maxRedirects: 1
    proxy: http://proxy.example:3128
    tls:
      serverName: images.example
      insecure: true
`

func TestParseVirtletConfig(t *testing.T) {
	c, err := ParseConfig("example", []byte(virtletExample))
	if err != nil {
		t.Fatal(err)
	}
	one := 1
	want := &Config{
		Rules: []Rule{
			{Name: "cirros", URL: "https://download.cirros-cloud.net/0.3.5/cirros-0.3.5-x86_64-disk.img"},
			{Regexp: `centos/(\d+)-(\d+)`, URL: "https://cloud.centos.org/centos/$1/images/CentOS-$1-x86_64-GenericCloud-$2.qcow2"},
			{Name: "fedora", URL: "https://dl.fedoraproject.org/fedora.qcow2", Transport: "my-server"},
		},
		Transports: map[string]Transport{"my-server": {
			TimeoutMS: 1000, MaxRedirects: &one, Proxy: "http://proxy.example:3128",
			TLS: &TLSConfig{ServerName: "images.example", Insecure: true},
		}},
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("ParseConfig (-want +got):\n%s", diff)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct{ name, yaml, wantErr string }{
		{"typo", "translations:\n- nmae: x\n  url: y\n", `unknown field "nmae"`},
		{"neither", "translations:\n- url: y\n", "translations[0]: needs name or regexp"},
		{"both", "translations:\n- name: a\n  regexp: b\n  url: y\n", `translations[0]: has both name "a" and regexp "b"`},
		{"no url", "translations:\n- name: a\n", "translations[0]: url is empty"},
		{"bad regexp", "translations:\n- regexp: '('\n  url: y\n", `translations[0]: regexp "(":`},
		{"undefined transport", "translations:\n- name: a\n  url: y\n  transport: t\n", `transport "t" is not defined`},
		{"negative redirects", "transports:\n  t:\n    maxRedirects: -1\n", "transports.t.maxRedirects: -1 is negative"},
		{"bad proxy", "transports:\n  t:\n    proxy: 'not a url'\n", `transports.t.proxy: "not a url" is not a URL`},
		{"bad CA", "transports:\n  t:\n    tls:\n      certificates:\n      - cert: junk\n", "transports.t.tls: certificates[0].cert: no PEM CERTIFICATE block"},
		{"bad client pair", "transports:\n  t:\n    tls:\n      certificates:\n      - cert: junk\n        key: junk\n", "transports.t.tls: certificates[0]: client certificate and key"},
		{"prefix slash", "prefix: /a\n", `prefix "/a": must not start or end with '/'`},
		{"not yaml", "translations: [", "image translation config src:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("src", []byte(tc.yaml))
			wantErrContains(t, err, "image translation config src", tc.wantErr)
		})
	}
}

// staticMappings is a MappingSource for tests.
type staticMappings []NamedConfig

func (m staticMappings) Mappings(context.Context) ([]NamedConfig, error) { return m, nil }

func mustConfig(t *testing.T, y string) *Config {
	t.Helper()
	c, err := ParseConfig("test", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPrecedence pins down the documented order (docs/images.md).
func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "b-file"), `
translations:
- name: both
  url: http://b-file/both
- regexp: '^re-(.*)$'
  url: http://b-file/$1
- name: dup
  url: http://b-file/dup-first
- name: dup
  url: http://b-file/dup-second
`)
	writeFile(t, filepath.Join(dir, "a-file"), `
translations:
- name: both
  url: http://a-file/both
- regexp: '^ex(act)$'
  url: http://a-file/regexp-$1
`)
	writeFile(t, filepath.Join(dir, "prefixed"), `
prefix: team
translations:
- regexp: '(.*)'
  url: http://prefixed/$1
- name: both
  url: http://prefixed/both
`)
	writeFile(t, filepath.Join(dir, "deeper"), `
prefix: team/x
translations:
- regexp: '(.*)'
  url: http://deeper/$1
`)
	writeFile(t, filepath.Join(dir, ".hidden"), "translations: [{name: both, url: http://hidden}]")
	tr := NewTranslations(dir, staticMappings{
		{Name: "mapping:kube-system/z", Config: mustConfig(t, `
translations:
- name: exact
  url: http://mapping/exact
- name: both
  url: http://mapping/both
- name: onlymapping
  url: http://mapping/only
`)},
		{Name: "mapping:kube-system/a", Config: mustConfig(t, `
translations:
- name: onlymapping
  url: http://mapping-a/only
`)},
	})
	tests := []struct{ name, url, source string }{
		// Files sort by name: a-file before b-file.
		{"both", "http://a-file/both", "file:a-file translations[0]"},
		// Exact names beat regexps, even from a later source.
		{"exact", "http://mapping/exact", "mapping:kube-system/z translations[0]"},
		// Within a config, the first of two rules wins.
		{"dup", "http://b-file/dup-first", "file:b-file translations[2]"},
		{"re-thing", "http://b-file/thing", "file:b-file translations[1]"},
		// Mappings sort by namespace/name.
		{"onlymapping", "http://mapping-a/only", "mapping:kube-system/a translations[0]"},
		// A prefix applies to "prefix/rest" and matches rest; its exact rule
		// beats its own earlier regexp.
		{"team/both", "http://prefixed/both", "file:prefixed translations[1]"},
		{"team/other", "http://prefixed/other", "file:prefixed translations[0]"},
		// The longer prefix goes first.
		{"team/x/y", "http://deeper/y", "file:deeper translations[0]"},
		// No match: the name is the URL.
		{"http://host/img.qcow2", "http://host/img.qcow2", "no translation rule matched"},
	}
	for _, tc := range tests {
		ep, err := tr.Translate(context.Background(), tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if ep.URL != tc.url {
			t.Errorf("Translate(%q) = %s, want %s", tc.name, ep.URL, tc.url)
		}
		if ep.Source != tc.source {
			t.Errorf("Translate(%q) source = %q, want %q", tc.name, ep.Source, tc.source)
		}
	}
}

func TestTransportOfRule(t *testing.T) {
	tr := NewTranslations("", staticMappings{{Name: "m", Config: mustConfig(t, virtletExample)}})
	ep, err := tr.Translate(context.Background(), "fedora")
	if err != nil {
		t.Fatal(err)
	}
	if ep.TransportName != "my-server" || ep.Transport.TimeoutMS != 1000 || ep.Transport.maxRedirects() != 1 {
		t.Errorf("endpoint %+v: want transport my-server with its settings", ep)
	}
	ep, _ = tr.Translate(context.Background(), "centos/7-1802")
	if want := "https://cloud.centos.org/centos/7/images/CentOS-7-x86_64-GenericCloud-1802.qcow2"; ep.URL != want {
		t.Errorf("regexp expansion = %s, want %s", ep.URL, want)
	}
	if ep.Transport.maxRedirects() != DefaultMaxRedirects {
		t.Errorf("rule without transport: maxRedirects %d, want %d", ep.Transport.maxRedirects(), DefaultMaxRedirects)
	}
}

// TestDirectoryReload: configs are re-read when a file changes (including a
// ConfigMap-style symlink swap), and not when nothing changed.
func TestDirectoryReload(t *testing.T) {
	dir := t.TempDir()
	// A ConfigMap volume: key -> ..data/key, ..data -> ..2024_a
	v1 := filepath.Join(dir, "..v1")
	if err := os.Mkdir(v1, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(v1, "images.yaml"), "translations: [{name: img, url: http://one/img}]")
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/images.yaml", filepath.Join(dir, "images.yaml")); err != nil {
		t.Fatal(err)
	}
	tr := NewTranslations(dir)
	translate := func() string {
		ep, err := tr.Translate(context.Background(), "img")
		if err != nil {
			t.Fatal(err)
		}
		return ep.URL
	}
	if got := translate(); got != "http://one/img" {
		t.Fatalf("first translation = %s", got)
	}
	cfgs := tr.dirCfgs
	if got := translate(); got != "http://one/img" {
		t.Fatalf("second translation = %s", got)
	}
	if &tr.dirCfgs[0] != &cfgs[0] {
		t.Error("configs were re-read although nothing changed")
	}

	// Kubelet's update: write ..v2, swap ..data atomically.
	v2 := filepath.Join(dir, "..v2")
	if err := os.Mkdir(v2, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(v2, "images.yaml"), "translations: [{name: img, url: http://two/img}]")
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if got := translate(); got != "http://two/img" {
		t.Errorf("after the ConfigMap update: %s, want http://two/img", got)
	}

	// A broken file is reported and does not hide the others.
	writeFile(t, filepath.Join(dir, "broken.yaml"), "translations: [{name: x}]")
	if got := translate(); got != "http://two/img" {
		t.Errorf("with a broken neighbour: %s, want http://two/img", got)
	}
	all, err := tr.Configs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var errs []string
	for _, c := range all {
		if c.Err != nil {
			errs = append(errs, c.Name+": "+c.Err.Error())
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0], "file:broken.yaml") || !strings.Contains(errs[0], "url is empty") {
		t.Errorf("load errors %q, want one for broken.yaml naming the empty url", errs)
	}
	// A missing directory means no configs, not an error.
	if _, err := NewTranslations(filepath.Join(dir, "absent")).Translate(context.Background(), "x"); err != nil {
		t.Errorf("missing directory: %v", err)
	}
}

// TestTranslationGolden records the endpoint of many names against the
// Virtlet example, to catch any change of behaviour.
func TestTranslationGolden(t *testing.T) {
	tr := NewTranslations("", staticMappings{{Name: "mapping:kube-system/example", Config: mustConfig(t, virtletExample)}})
	var b strings.Builder
	for _, name := range []string{"cirros", "centos/7-1802", "xcentos/7-1802y", "fedora", "download.cirros-cloud.net/0.4.0/cirros.img", "Cirros"} {
		ep, err := tr.Translate(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(name + " -> " + ep.URL + " [" + ep.Source + "; transport " + ep.TransportName + "]\n")
	}
	golden := filepath.Join("testdata", "translations.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, golden, b.String())
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./runtime/image/ -update)", err)
	}
	if diff := cmp.Diff(string(want), b.String()); diff != "" {
		t.Errorf("translations (-want +got):\n%s", diff)
	}
}

// TestOrigins: endpoints say who wrote them (policy.go decides with it).
func TestOrigins(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), "translations:\n- name: fromfile\n  url: file:///x\n")
	m := staticMappings{{Name: "mapping:ns/m", Origin: OriginObject, Config: mustConfig(t, "translations:\n- name: fromobject\n  url: http://x/y\n")}}
	tr := NewTranslations(dir, m)
	for name, want := range map[string]Origin{"fromfile": OriginOperator, "fromobject": OriginObject, "other": OriginUntranslated} {
		ep, err := tr.Translate(context.Background(), name)
		if err != nil || ep.Origin != want {
			t.Errorf("Translate(%s) = %+v, %v; want Origin %v", name, ep, err, want)
		}
	}
}
