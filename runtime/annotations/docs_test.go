package annotations

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// docs/annotations.md quotes error messages; each quoted in full must be one
// the code really produces (testdata/errors.golden), and every annotation
// must be documented.
func TestDocsMatchCode(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "annotations.md"))
	if err != nil {
		t.Fatalf("reading the user documentation: %v", err)
	}
	golden, err := os.ReadFile(filepath.Join("testdata", "errors.golden"))
	if err != nil {
		t.Fatal(err)
	}
	quoted := 0
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "annotation Virtlet") && !strings.HasPrefix(line, "container ") || strings.Contains(line, `"VALUE"`) {
			continue
		}
		if strings.HasSuffix(line, "...") {
			line = strings.TrimSuffix(line, "...")
		} else {
			line += "\n"
		}
		if !strings.Contains(string(golden), line) {
			t.Errorf("docs/annotations.md quotes a message the code does not produce:\n%s", line)
		}
		quoted++
	}
	if quoted < 10 {
		t.Errorf("docs/annotations.md quotes only %d error messages", quoted)
	}
	for k := range known {
		if !strings.Contains(string(doc), "| `"+k+"` |") {
			t.Errorf("annotation %s has no row in docs/annotations.md", k)
		}
	}
}
