package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzNetworkConfig: no input may panic the parsers the guest runs at boot.
func FuzzNetworkConfig(f *testing.F) {
	for _, dir := range []string{"network_v1", "network_v2", "network_multi_v1", "network_multi_v2"} {
		if b, err := os.ReadFile(filepath.Join(golden, dir, "network-config")); err == nil {
			f.Add(b)
		}
	}
	for _, dir := range []string{"network_configdrive", "network_multi_configdrive"} {
		if b, err := os.ReadFile(filepath.Join(golden, dir, "openstack", "latest", "network_data.json")); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("a: [x,,y]\n- 'q\n\"k\": v\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseNoCloud(string(b))
		_, _ = parseNetworkData(b)
		// guest-exec would run the input's programs: only the parsing of
		// requests is fuzzed (shutdown is disabled outside the agent anyway).
		var req request
		if json.Unmarshal(bytes.TrimSpace(b), &req) != nil || !strings.HasPrefix(req.Execute, "guest-exec") {
			_ = newAgent().handle(b)
		}
	})
}
