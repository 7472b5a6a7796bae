package apiclient

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The package exists to keep k8s.io/* out of the daemon: only the
// standard library and these modules may be linked in.
func TestDependencies(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := []string{
		"github.com/podvisor/podvisor/runtime/kube/apiclient",
		"github.com/podvisor/podvisor/runtime/errdefs", // error kinds; standard library only
		"github.com/cenkalti/backoff/v4",
		"sigs.k8s.io/yaml",
		"go.yaml.in/yaml/v2", // sigs.k8s.io/yaml's parser
	}
	for _, dep := range strings.Fields(string(out)) {
		if !slices.Contains(allowed, dep) {
			t.Errorf("apiclient depends on %s; allowed: the standard library and %q", dep, allowed)
		}
	}
}
