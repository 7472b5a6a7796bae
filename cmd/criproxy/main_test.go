package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pvversion "github.com/podvisor/podvisor/internal/version"
)

func TestRunRefusesBadFlags(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "proxy.yaml")
	os.WriteFile(cfg, []byte("primary: unix:///c.sock\nruntimes:\n- name: podvisor\n  endpoint: tcp://x\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--runtime", "podvisor"}, "want NAME=ENDPOINT"},
		{[]string{"--handler", "kata-vm"}, "want HANDLER=RUNTIME"},
		{[]string{"--runtime", "podvisor=unix:///p.sock", "--handler", "vm=kata"}, `no runtime named "kata"`},
		{[]string{"--listen", "tcp://127.0.0.1:1"}, `listen: "tcp://127.0.0.1:1" is not accepted`},
		{[]string{"--log-level", "loud"}, `log-level: "loud" is not accepted`},
		{[]string{"--config", cfg}, `runtime podvisor: endpoint "tcp://x" is not accepted`},
		{[]string{"--config", filepath.Join(dir, "missing.yaml")}, "reading config file"},
		{[]string{"extra"}, "takes only flags"},
	} {
		err := run(context.Background(), tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %q: got %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

// TestVersion: --version prints podvisor's version, which the image and
// the daemon report too.
func TestVersion(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	err = run(context.Background(), []string{"--version"})
	os.Stdout = stdout
	w.Close()
	out, _ := io.ReadAll(r)
	if err != nil || string(out) != "criproxy "+pvversion.String()+"\n" {
		t.Errorf("--version: %v, printed %q", err, out)
	}
}
