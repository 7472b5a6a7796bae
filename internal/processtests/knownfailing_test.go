package processtests

import (
	"os"
	"testing"
)

// knownFailing skips a test that failed on the merged main and is not fixed
// yet, saying why, unless PODVISOR_KNOWN_FAILING=1 asks to run it
// (docs/design.md). Each use is an open defect, named in the session note.
func knownFailing(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("PODVISOR_KNOWN_FAILING") != "1" {
		t.Skipf("known failing, not yet fixed: %s (PODVISOR_KNOWN_FAILING=1 runs it)", why)
	}
}
