package walls

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSecurityDocNamesRealTests: every test docs/security.md names as the
// proof of a defence exists in the tree, so the page cannot drift into
// naming tests that were renamed or removed.
func TestSecurityDocNamesRealTests(t *testing.T) {
	root := moduleRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile("`(Test[A-Za-z0-9_]+)`").FindAllStringSubmatch(string(doc), -1)
	if len(names) < 10 {
		t.Fatalf("docs/security.md names %d tests; want every defence's", len(names))
	}
	out, err := exec.Command("git", "-C", root, "grep", "-h", "-o", "-E", `^func Test[A-Za-z0-9_]+\(`, "--", "*_test.go").Output()
	if err != nil {
		t.Fatalf("git grep: %v", err)
	}
	defined := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		defined[strings.TrimSuffix(strings.TrimPrefix(l, "func "), "(")] = true
	}
	for _, n := range names {
		if !defined[n[1]] {
			t.Errorf("docs/security.md names %s, which no test file defines", n[1])
		}
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}
