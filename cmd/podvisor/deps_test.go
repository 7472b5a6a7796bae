package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The daemon must not link client-go, k8s.io/api or k8s.io/apimachinery:
// they doubled the binary (64 MB against 30 MB) and its RSS with it. It
// talks to the API server through runtime/kube/apiclient (docs/design.md).
func TestNoClientGo(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"k8s.io/client-go", "k8s.io/api", "k8s.io/apimachinery"} {
			if dep == banned || strings.HasPrefix(dep, banned+"/") {
				t.Errorf("podvisor links %s", dep)
			}
		}
	}
}
