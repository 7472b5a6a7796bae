package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeCPUs makes a sysfs-like CPU directory: cpu0 without an online file
// (the boot CPU), cpu1 online, cpu2 offline.
func fakeCPUs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for cpu, online := range map[string]string{"cpu0": "", "cpu1": "1\n", "cpu2": "0\n"} {
		if err := os.MkdirAll(filepath.Join(dir, cpu), 0o755); err != nil {
			t.Fatal(err)
		}
		if online != "" {
			if err := os.WriteFile(filepath.Join(dir, cpu, "online"), []byte(online), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "cpufreq"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestVCPUs(t *testing.T) {
	a := newAgent()
	if m := call(t, a, `{"execute":"guest-get-vcpus"}`); m["error"] == nil {
		t.Errorf("guest-get-vcpus outside the guest agent: %v, want an error", m)
	}
	a.cpuDir = fakeCPUs(t)
	get := func() string {
		t.Helper()
		m := call(t, a, `{"execute":"guest-get-vcpus"}`)
		b, _ := json.Marshal(m["return"])
		return string(b)
	}
	want := `[{"can-offline":false,"logical-id":0,"online":true},{"can-offline":true,"logical-id":1,"online":true},{"can-offline":true,"logical-id":2,"online":false}]`
	if got := get(); got != want {
		t.Errorf("guest-get-vcpus = %s; want %s", got, want)
	}
	m := call(t, a, `{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":2,"online":true},{"logical-id":1,"online":false}]}}`)
	if n, ok := m["return"].(float64); !ok || n != 2 {
		t.Errorf("guest-set-vcpus = %v; want 2 changed", m)
	}
	for cpu, want := range map[string]string{"cpu1": "0", "cpu2": "1"} {
		if b, _ := os.ReadFile(filepath.Join(a.cpuDir, cpu, "online")); strings.TrimSpace(string(b)) != want {
			t.Errorf("%s online = %q; want %s", cpu, b, want)
		}
	}
	// The first change failing is the error; a later one ends the count.
	for _, tc := range []struct {
		req  string
		want any
	}{
		{`{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":0,"online":false}]}}`, nil},
		{`{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":7,"online":true}]}}`, nil},
		{`{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":1,"online":true},{"logical-id":7,"online":true}]}}`, float64(1)},
		{`{"execute":"guest-set-vcpus","arguments":{"vcpus":[]}}`, nil},
		{`{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":1,"online":true,"bogus":1}]}}`, nil},
	} {
		m := call(t, a, tc.req)
		if tc.want == nil && m["error"] == nil {
			t.Errorf("%s = %v; want an error", tc.req, m)
		}
		if tc.want != nil && m["return"] != tc.want {
			t.Errorf("%s = %v; want %v", tc.req, m, tc.want)
		}
	}
}
