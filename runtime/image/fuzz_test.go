package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseName: no name panics, and every accepted name stays inside
// links/ as a single path element.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{"cirros", "virtlet.cloud/a/b", "..", "a/../b", "x@sha256:" + strings.Repeat("a", 64), "/abs", "a%b", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, err := parseName(name)
		if err != nil {
			if !strings.Contains(err.Error(), "image name") {
				t.Fatalf("error %q does not name the field", err)
			}
			return
		}
		if n.link == "" || n.link == "." || n.link == ".." || strings.ContainsAny(n.link, "/\x00") {
			t.Fatalf("name %q gives link %q, which is not one safe path element", name, n.link)
		}
		if filepath.Base(n.link) != n.link {
			t.Fatalf("link %q is not a base name", n.link)
		}
	})
}

// FuzzVirtualSize: no header panics; an accepted image has a sane size.
func FuzzVirtualSize(f *testing.F) {
	f.Add(header(3, 1<<30, 0, 0, 104))
	f.Add(header(2, 1<<20, 0, 0, 72))
	f.Add([]byte("KDMV"))
	f.Add([]byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "img")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		size, format, err := VirtualSize(p)
		if err != nil {
			return
		}
		if size < 0 || (format != FormatQCOW2 && format != FormatRaw) {
			t.Fatalf("VirtualSize = %d, %q", size, format)
		}
	})
}
