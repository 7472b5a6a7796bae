package processtests

import (
	"os"
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
