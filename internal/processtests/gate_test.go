package processtests

import (
	"os"
	"os/exec"
	"testing"
)

// gate skips the test unless env is 1: the Makefile target that builds
// what the test needs sets it.
func gate(t *testing.T, env string) {
	t.Helper()
	if os.Getenv(env) != "1" {
		t.Skipf("%s=1 is not set (make crictl-sim sets it, after make build)", env)
	}
}

// crictlPath is crictl's path from CRICTL, which the Makefile targets set
// (make tools installs crictl); the streaming verbs (attach, exec) go
// through it, the CRI's own client for them.
func crictlPath(t *testing.T) string {
	t.Helper()
	crictl := os.Getenv("CRICTL")
	if crictl == "" {
		t.Fatal("CRICTL (the path of crictl) is not set: the Makefile's targets set it")
	}
	if _, err := exec.LookPath(crictl); err != nil {
		t.Fatalf("crictl: %v (make tools installs it)", err)
	}
	return crictl
}
