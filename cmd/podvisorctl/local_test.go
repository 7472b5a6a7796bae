package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podvisor/podvisor/deploy"
	pvversion "github.com/podvisor/podvisor/internal/version"
	"github.com/podvisor/podvisor/runtime/domain"
)

// TestDomainNameMatchesPodvisor: podvisorctl names a pod's domain as
// podvisor does.
func TestDomainNameMatchesPodvisor(t *testing.T) {
	for _, id := range []string{vmID, strings.ToUpper(vmID), "0123456789abcdef", "0123456789abcde", "not-hex-at-all-but-long", "", "3f2a9c1d-5e6b-7a8c-9d0e-1f2a3b4c5d6e"} {
		if got, want := domainName(id), domain.NameFor(id); got != want {
			t.Errorf("domainName(%q) = %q, podvisor names it %q", id, got, want)
		}
	}
}

// TestVersionMatchesDaemon: podvisorctl's version is the daemon's: both
// come from internal/version (the daemon's source is read: importing
// internal/daemon would link libvirt).
func TestVersionMatchesDaemon(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", "..", "internal", "daemon", "daemon.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var init string
	ast.Inspect(f, func(n ast.Node) bool {
		if vs, ok := n.(*ast.ValueSpec); ok && len(vs.Names) == 1 && vs.Names[0].Name == "Version" && len(vs.Values) == 1 {
			if call, ok := vs.Values[0].(*ast.CallExpr); ok {
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
					if x, ok := sel.X.(*ast.Ident); ok {
						init = x.Name + "." + sel.Sel.Name
					}
				}
			}
		}
		return true
	})
	if init != "version.String" {
		t.Fatalf("internal/daemon's Version is initialised by %q, want version.String (internal/version)", init)
	}
	if version != pvversion.String() {
		t.Errorf("podvisorctl version %q, internal/version's %q", version, pvversion.String())
	}
}

// TestGen: gen prints deploy.Render's stream for its flags, and needs no
// kubectl.
func TestGen(t *testing.T) {
	tests := []struct {
		args []string
		opts deploy.Options
	}{
		{nil, deploy.Options{}},
		{[]string{"--image", "registry.example.com/pv:v1"}, deploy.Options{Image: "registry.example.com/pv:v1"}},
		{[]string{"--tag", "v0.2.0"}, deploy.Options{Image: "podvisor/podvisor:v0.2.0"}},
		{[]string{"--image", "localhost:5000/pv:old", "--tag", "new"}, deploy.Options{Image: "localhost:5000/pv:new"}},
		{[]string{"--image", "localhost:5000/pv", "--tag", "new"}, deploy.Options{Image: "localhost:5000/pv:new"}},
		{[]string{"--podvisor-namespace", "podvisor-system"}, deploy.Options{Namespace: "podvisor-system"}},
		{[]string{"--crd"}, deploy.Options{CRDsOnly: true}},
	}
	for _, tc := range tests {
		f := newFake(t)
		r := f.run(append([]string{"gen"}, tc.args...)...)
		want, err := deploy.Render(tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		if r.code != 0 || r.stdout != string(want) {
			t.Errorf("gen %v: exit %d, stderr %q; stdout differs from Render(%+v):\n%s", tc.args, r.code, r.stderr, tc.opts, cmp.Diff(string(want), r.stdout))
		}
		if len(f.calls()) != 0 {
			t.Errorf("gen %v ran %v", tc.args, f.calls())
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--image", "Not An Image"}, `--image: image "Not An Image" is not an image reference`},
		{[]string{"--tag", "-x"}, `--tag "-x" is not a tag`},
		{[]string{"--image", "pv@sha256:" + strings.Repeat("a", 64), "--tag", "v1"}, "names a digest; give either a tag or a digest"},
		{[]string{"--podvisor-namespace", "Bad_NS"}, `--podvisor-namespace: namespace "Bad_NS" is not a valid name`},
		{[]string{"extra"}, `podvisorctl gen takes no arguments, got ["extra"]`},
	} {
		f := newFake(t)
		r := f.run(append([]string{"gen"}, tc.args...)...)
		if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("gen %v: exit %d, stdout %d bytes, stderr %q; want an error containing %q", tc.args, r.code, len(r.stdout), r.stderr, tc.want)
		}
	}
}

func TestInstall(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	selfData, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	f := newFake(t)
	dir := t.TempDir()
	t.Setenv("PATH", f.dir+string(filepath.ListSeparator)+dir)
	dst := filepath.Join(dir, pluginName)

	r := f.run("install", "--dir", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "installed "+dst+" (a copy of ") || r.stderr != "" {
		t.Fatalf("install: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if got, err := os.ReadFile(dst); err != nil || string(got) != string(selfData) {
		t.Errorf("%s is not a copy of podvisorctl (%v)", dst, err)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("%s: %v, mode %v, want 0755", dst, err, fi.Mode())
	}
	// Again: replaced.
	if r := f.run("install", "--dir", dir); r.code != 0 || !strings.Contains(r.stdout, "installed "+dst) {
		t.Errorf("second install: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// As a link, then the link is recognised.
	if r := f.run("install", "--dir", dir, "--symlink"); r.code != 0 || !strings.Contains(r.stdout, "a symbolic link to "+self) {
		t.Errorf("install --symlink: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if target, err := os.Readlink(dst); err != nil || target != self {
		t.Errorf("%s -> %q (%v), want a link to %s", dst, target, err, self)
	}
	if r := f.run("install", "--dir", dir, "--symlink"); r.code != 0 || !strings.Contains(r.stdout, dst+" is already podvisorctl") {
		t.Errorf("install --symlink again: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// No leftovers.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%s holds %d entries, want kubectl-podvisor alone", dir, len(entries))
	}

	// A directory not on PATH: installed, with a warning.
	other := t.TempDir()
	r = f.run("install", "--dir", other)
	if r.code != 0 || !strings.Contains(r.stderr, "warning: "+other+" is not on your PATH, so kubectl will not find the plugin") {
		t.Errorf("install off PATH: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// Not a directory.
	r = f.run("install", "--dir", filepath.Join(other, "nope"))
	if r.code != 1 || !strings.Contains(r.stderr, "nope: not a directory") {
		t.Errorf("install into a missing dir: exit %d\n%s", r.code, r.stderr)
	}
	if len(f.calls()) != 0 {
		t.Errorf("install ran %v", f.calls())
	}
}

// TestInstallDefaultDir: without --dir, next to podvisorctl itself; when
// podvisorctl runs as kubectl-podvisor, that is itself and nothing happens.
func TestInstallDefaultDir(t *testing.T) {
	f := newFake(t)
	dir := t.TempDir()
	exe := filepath.Join(dir, pluginName)
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := &app{stdout: new(strings.Builder), stderr: new(strings.Builder), getenv: func(string) string { return dir },
		executable: func() (string, error) { return exe, nil }}
	if err := a.install("", false); err != nil {
		t.Fatal(err)
	}
	if out := a.stdout.(*strings.Builder).String(); !strings.Contains(out, exe+" is already podvisorctl") {
		t.Errorf("install as kubectl-podvisor: %q", out)
	}
	// podvisorctl next to it: the plugin is written beside it.
	exe2 := filepath.Join(dir, "podvisorctl")
	if err := os.WriteFile(exe2, []byte("#!/bin/sh\necho v2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a.executable = func() (string, error) { return exe2, nil }
	if err := a.install("", false); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(exe); string(b) != "#!/bin/sh\necho v2\n" {
		t.Errorf("kubectl-podvisor not replaced by podvisorctl: %q", b)
	}
	_ = f
}
