package walls

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const mod = "github.com/podvisor/podvisor"

func m(p string) string { return mod + "/" + p }

// rules are docs/design.md's walls.
var rules = []Rule{{
	Name: "pure packages reach no hypervisor, network, store, lifecycle or gRPC code",
	From: []string{m("runtime/annotations"), m("runtime/domain"), m("runtime/cloudinit"),
		m("runtime/errdefs"), m("runtime/volume")},
	Forbidden: []string{m("runtime/hypervisor/..."), m("runtime/network/..."), m("runtime/store"),
		m("runtime/pod"), m("runtime/cri"), m("fakes/..."), "go.etcd.io/bbolt",
		"google.golang.org/grpc", "libvirt.org/go/libvirt", "github.com/containernetworking/..."},
	Transitive: true,
}, {
	Name: "the lifecycle reaches hypervisors and networks only through its interfaces",
	From: []string{m("runtime/pod")},
	Forbidden: []string{m("runtime/hypervisor/libvirt"), "libvirt.org/go/libvirt", m("fakes/..."),
		m("runtime/network/..."), m("runtime/cri"), m("runtime/image/..."), m("runtime/vmbuild"),
		"github.com/containernetworking/...", "google.golang.org/grpc"},
	Transitive: true,
}, {
	Name: "the lifecycle's adapters see its records in runtime/podtypes, not the lifecycle itself",
	From: []string{m("runtime/network/..."), m("runtime/vmbuild"), m("runtime/volume"), m("fakes/fakenet")},
	Forbidden: []string{m("runtime/pod"), m("runtime/store"), m("runtime/stream"), m("runtime/streamserver"),
		"go.etcd.io/bbolt", "google.golang.org/grpc"},
	Transitive: true,
}, {
	Name:      "fakes only from wiring",
	From:      []string{mod + "/..."},
	Except:    []string{m("internal/daemon"), m("internal/scalebench"), m("cmd/..."), m("fakes/..."), m("ci/...")},
	Forbidden: []string{m("fakes/...")},
}, {
	Name:      "libvirt's cgo binding only in runtime/hypervisor/libvirt",
	From:      []string{mod + "/..."},
	Except:    []string{m("runtime/hypervisor/libvirt")},
	Forbidden: []string{"libvirt.org/go/libvirt"},
}, {
	Name:       "runtime and fakes never reach up into the wiring, commands or manifests",
	From:       []string{m("runtime/..."), m("fakes/...")},
	Forbidden:  []string{m("internal/..."), m("cmd/..."), m("deploy"), m("conformance/...")},
	Transitive: true,
}, {
	Name:       "the daemon links no client-go",
	From:       []string{m("cmd/podvisor"), m("internal/daemon")},
	Forbidden:  []string{"k8s.io/client-go/...", "k8s.io/apimachinery/...", "k8s.io/api/..."},
	Transitive: true,
}}

// moduleGraph runs `go list -deps -json` on the whole module (tests
// excluded: test files may import what they like).
func moduleGraph(t *testing.T) Graph {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Standard,Imports,CgoFiles", mod+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	g := Graph{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p Package
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		g[p.ImportPath] = p
	}
	if _, ok := g[m("runtime/pod")]; !ok {
		t.Fatalf("go list did not list %s: is the module path %s?", m("runtime/pod"), mod)
	}
	return g
}

// statSources stats every Go file and go.mod of the module: go test caches a
// result by the files the test itself touched, and `go list` runs in a
// child process, so without this an import added later would meet a cached
// pass.
func statSources(t *testing.T) {
	t.Helper()
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "_build" || d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, ".go") || d.Name() == "go.mod" {
			_, err = os.Stat(path)
		}
		return err
	})
	if err != nil {
		t.Fatalf("walking the module's sources: %v", err)
	}
}

func TestWalls(t *testing.T) {
	statSources(t)
	g := moduleGraph(t)
	bad := append(Check(g, rules), CgoOutside(g, []string{"libvirt.org/go/libvirt"})...)
	for _, leaf := range []string{m("runtime/podtypes"), m("runtime/errdefs")} {
		for _, imp := range g[leaf].Imports {
			if !g[imp].Standard {
				bad = append(bad, "leaf packages import only the standard library: "+leaf+" -> "+imp)
			}
		}
	}
	if len(bad) > 0 {
		t.Errorf("import walls broken (docs/design.md, Walls):\n%s", strings.Join(bad, "\n"))
	}
}

// TestChecksCanFail feeds graphs that break each kind of rule.
func TestChecksCanFail(t *testing.T) {
	g := Graph{
		m("runtime/domain"):             {ImportPath: m("runtime/domain"), Imports: []string{m("runtime/x")}},
		m("runtime/x"):                  {ImportPath: m("runtime/x"), Imports: []string{"google.golang.org/grpc"}},
		"google.golang.org/grpc":        {ImportPath: "google.golang.org/grpc"},
		m("runtime/cri"):                {ImportPath: m("runtime/cri"), Imports: []string{m("fakes/simhv")}},
		m("fakes/simhv"):                {ImportPath: m("fakes/simhv"), Imports: []string{m("internal/daemon")}},
		m("internal/daemon"):            {ImportPath: m("internal/daemon"), Imports: []string{m("fakes/simhv"), "libvirt.org/go/libvirt"}},
		"libvirt.org/go/libvirt":        {ImportPath: "libvirt.org/go/libvirt", CgoFiles: []string{"connect.go"}},
		m("runtime/hypervisor/libvirt"): {ImportPath: m("runtime/hypervisor/libvirt"), Imports: []string{"libvirt.org/go/libvirt"}},
		"github.com/x/sqlite":           {ImportPath: "github.com/x/sqlite", CgoFiles: []string{"sqlite.go"}},
		"net":                           {ImportPath: "net", Standard: true, CgoFiles: []string{"cgo_unix.go"}},
	}
	want := []string{
		"fakes only from wiring: " + m("runtime/cri") + " -> " + m("fakes/simhv"),
		"libvirt's cgo binding only in runtime/hypervisor/libvirt: " + m("internal/daemon") + " -> libvirt.org/go/libvirt",
		"pure packages reach no hypervisor, network, store, lifecycle or gRPC code: " +
			m("runtime/domain") + " -> " + m("runtime/x") + " -> google.golang.org/grpc",
		"runtime and fakes never reach up into the wiring, commands or manifests: " +
			m("fakes/simhv") + " -> " + m("internal/daemon"),
		"runtime and fakes never reach up into the wiring, commands or manifests: " +
			m("runtime/cri") + " -> " + m("fakes/simhv") + " -> " + m("internal/daemon"),
	}
	if diff := cmp.Diff(want, Check(g, rules)); diff != "" {
		t.Errorf("Check (-want +got):\n%s", diff)
	}
	wantCgo := []string{"cgo only in libvirt.org/go/libvirt: github.com/x/sqlite has cgo files [sqlite.go]"}
	if diff := cmp.Diff(wantCgo, CgoOutside(g, []string{"libvirt.org/go/libvirt"})); diff != "" {
		t.Errorf("CgoOutside (-want +got):\n%s", diff)
	}
}
