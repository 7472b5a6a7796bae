package stream

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLogWriterFormats(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	const stamp = "2026-01-02T03:04:05.000000006Z"
	tests := []struct {
		name   string
		writes []string
		want   []string
	}{
		{"lines", []string{"a\nb\n"}, []string{"F a", "F b"}},
		{"crlf", []string{"boot\r\nok\r\n"}, []string{"F boot", "F ok"}},
		{"crlf split", []string{"boot\r", "\nnext\n"}, []string{"F boot", "F next"}},
		{"partial prompt", []string{"login: "}, []string{"P login: "}},
		{"empty line kept", []string{"\n"}, []string{"F "}},
		{"partial then rest", []string{"ab", "c\n"}, []string{"P ab", "F c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "logs", "vm_0.log")
			w, err := OpenLog(path, func() time.Time { return ts })
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			w.Close()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, l := range tc.want {
				want = append(want, stamp+" stdout "+l)
			}
			got := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("log lines (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLogWriterReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vm.log")
	w, err := OpenLog(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write([]byte("one\n"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("two\n"))
	data, _ := os.ReadFile(path)
	if !strings.HasSuffix(string(data), " stdout F two\n") || strings.Contains(string(data), "one") {
		t.Errorf("after reopen the log holds %q, want only the line written after rotation", data)
	}
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, err := w.Write([]byte("y")); err == nil {
		t.Error("Write after Close succeeded")
	}
}
