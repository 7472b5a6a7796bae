package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConfigDefaults(t *testing.T) {
	got, err := Config{Primary: "unix:///c.sock", Runtimes: []Runtime{
		{Name: "podvisor", Endpoint: "unix:///p.sock"},
		{Name: "kata", Endpoint: "unix:///k.sock", Handlers: []string{"kata-qemu", "kata-fc"}},
	}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	want := []Runtime{
		{Name: "podvisor", Endpoint: "unix:///p.sock", Handlers: []string{"podvisor"}, TargetRuntime: "virtlet.cloud", KeepImageDomain: &yes},
		{Name: "kata", Endpoint: "unix:///k.sock", Handlers: []string{"kata-qemu", "kata-fc"}, TargetRuntime: "kata", KeepImageDomain: &no},
	}
	if diff := cmp.Diff(want, got.Runtimes); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestConfigErrors(t *testing.T) {
	pv := func(mod func(*Runtime)) Config {
		r := Runtime{Name: "podvisor", Endpoint: "unix:///p.sock"}
		mod(&r)
		return Config{Primary: "unix:///c.sock", Runtimes: []Runtime{r}}
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no primary", Config{}, "primary: no endpoint"},
		{"tcp primary", Config{Primary: "tcp://127.0.0.1:1"}, `endpoint "tcp://127.0.0.1:1" is not accepted`},
		{"bad name", pv(func(r *Runtime) { r.Name = "Pod_Visor" }), `runtime name "Pod_Visor"`},
		{"no endpoint", pv(func(r *Runtime) { r.Endpoint = "" }), "runtime podvisor: no endpoint"},
		{"empty handler", pv(func(r *Runtime) { r.Handlers = []string{""} }), "empty handler is the primary's"},
		{"slash in target", pv(func(r *Runtime) { r.TargetRuntime = "a/b" }), `targetRuntime "a/b" must not contain '/'`},
		{"duplicate name", Config{Primary: "unix:///c.sock", Runtimes: []Runtime{
			{Name: "a", Endpoint: "unix:///a"}, {Name: "a", Endpoint: "unix:///b"}}}, `runtime name "a": given twice`},
		{"duplicate handler", Config{Primary: "unix:///c.sock", Runtimes: []Runtime{
			{Name: "a", Endpoint: "unix:///a", Handlers: []string{"h"}}, {Name: "b", Endpoint: "unix:///b", Handlers: []string{"h"}}}},
			`runtime handler "h": routed to both "a" and "b"`},
		{"duplicate target", Config{Primary: "unix:///c.sock", Runtimes: []Runtime{
			{Name: "a", Endpoint: "unix:///a", TargetRuntime: "virtlet.cloud"}, {Name: "podvisor", Endpoint: "unix:///b"}}},
			`targetRuntime "virtlet.cloud": claimed by both "a" and "podvisor"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cfg.withDefaults()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("listen: unix:///run/x.sock\nprimary: unix:///c.sock\nruntimes:\n- name: podvisor\n  endpoint: unix:///p.sock\n  handlers: [podvisor, vm]\n"), 0o644)
	c, err := LoadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Listen: "unix:///run/x.sock", Primary: "unix:///c.sock", Runtimes: []Runtime{{Name: "podvisor", Endpoint: "unix:///p.sock", Handlers: []string{"podvisor", "vm"}}}}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("LoadConfig (-want +got):\n%s", diff)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("primary: unix:///c.sock\nruntime: []\n"), 0o644)
	if _, err := LoadConfig(bad); err == nil || !strings.Contains(err.Error(), "runtime") {
		t.Errorf("unknown field: got %v, want an error naming it", err)
	}
}

func TestParseRuntimeFlag(t *testing.T) {
	r, err := ParseRuntimeFlag("podvisor=unix:///run/p.sock")
	if err != nil || r.Name != "podvisor" || r.Endpoint != "unix:///run/p.sock" {
		t.Errorf("got %+v, %v", r, err)
	}
	for _, bad := range []string{"podvisor", "=unix:///x", "podvisor="} {
		if _, err := ParseRuntimeFlag(bad); err == nil || !strings.Contains(err.Error(), "NAME=ENDPOINT") {
			t.Errorf("%q: got %v, want a NAME=ENDPOINT error", bad, err)
		}
	}
}
