package main

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mkimage runs the command with args and returns the image config's
// "config" object.
func mkimage(t *testing.T, args ...string) map[string]any {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root", "disk")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "disk.img"), []byte("disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "img.tar")
	flag.CommandLine = flag.NewFlagSet("mkimage", flag.ContinueOnError)
	os.Args = append(append([]string{"mkimage", "-o", out, "-tag", "r/x:1"}, args...), filepath.Join(dir, "root"))
	if err := run(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatal("no config in the archive")
		}
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(h.Name) != "." || !strings.HasSuffix(h.Name, ".json") || h.Name == "manifest.json" {
			continue
		}
		var cfg struct {
			Config map[string]any `json:"config"`
		}
		if err := json.NewDecoder(tr).Decode(&cfg); err != nil {
			t.Fatal(err)
		}
		return cfg.Config
	}
}

func TestUser(t *testing.T) {
	if got := mkimage(t, "-user", "www-data:1004")["User"]; got != "www-data:1004" {
		t.Errorf("-user www-data:1004: config User %v", got)
	}
	// Without -user the config has no User key, as before the flag.
	if got, ok := mkimage(t)["User"]; ok {
		t.Errorf("no -user: config User %v", got)
	}
}
