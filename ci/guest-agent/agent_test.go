package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func call(t *testing.T, a *agent, req string) map[string]any {
	t.Helper()
	out := a.handle([]byte(req))
	if out == nil {
		t.Fatalf("%s: no reply", req)
	}
	if !bytes.HasSuffix(out, []byte("\n")) {
		t.Errorf("%s: reply %q does not end in a newline", req, out)
	}
	var m map[string]any
	if err := json.Unmarshal(bytes.TrimPrefix(out, []byte{0xFF}), &m); err != nil {
		t.Fatalf("%s: reply %q is not JSON: %v", req, out, err)
	}
	return m
}

func TestProtocol(t *testing.T) {
	tests := []struct {
		req  string
		want string // the reply, JSON
	}{
		{`{"execute":"guest-ping"}`, `{"return":{}}`},
		{`{"execute":"guest-sync","arguments":{"id":1234567890123}}`, `{"return":1234567890123}`},
		{`{"execute":"guest-ping","id":"abc"}`, `{"return":{},"id":"abc"}`},
		{`{"execute":"guest-sync"}`, `{"error":{"class":"GenericError","desc":"Parameter 'id' is missing"}}`},
		{`{"execute":"guest-nope"}`, `{"error":{"class":"CommandNotFound","desc":"The command guest-nope has not been found"}}`},
		{`{"execute":"guest-exec","arguments":{}}`, `{"error":{"class":"GenericError","desc":"Parameter 'path' is missing"}}`},
		{`{"execute":"guest-exec-status","arguments":{"pid":999999999}}`, `{"error":{"class":"GenericError","desc":"Invalid parameter 'pid'"}}`},
		{`{"execute":"guest-shutdown","arguments":{"mode":"explode"}}`, `{"error":{"class":"GenericError","desc":"Parameter 'mode' does not accept value 'explode': accepted powerdown, halt, reboot"}}`},
		{`{"arguments":{}}`, `{"error":{"class":"GenericError","desc":"Expected 'execute' in the request"}}`},
	}
	a := newAgent()
	for _, tt := range tests {
		got := call(t, a, tt.req)
		var want map[string]any
		if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
			t.Fatal(err)
		}
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		if !bytes.Equal(gb, wb) {
			t.Errorf("%s:\n got %s\nwant %s", tt.req, gb, wb)
		}
	}
	// Bad JSON and unknown arguments are errors, not crashes.
	for _, req := range []string{`{"execute":`, `{"execute":"guest-exec","arguments":{"path":"true","bogus":1}}`} {
		if m := call(t, a, req); m["error"] == nil {
			t.Errorf("%s: want an error, got %v", req, m)
		}
	}
}

func TestServeDelimitedAndReset(t *testing.T) {
	a := newAgent()
	// A partial request, then 0xFF (flush), then sync-delimited and a ping.
	in := "{\"execute\":\"guest-pi\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":7}}\n\n{\"execute\":\"guest-ping\"}\n"
	var out bytes.Buffer
	if err := a.serve(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	want := "\xff{\"return\":7}\n{\"return\":{}}\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestInfo(t *testing.T) {
	a := newAgent()
	ret := call(t, a, `{"execute":"guest-info"}`)["return"].(map[string]any)
	if ret["version"] != version {
		t.Errorf("version %v", ret["version"])
	}
	names := map[string]bool{}
	for _, c := range ret["supported_commands"].([]any) {
		names[c.(map[string]any)["name"].(string)] = true
	}
	for _, c := range []string{"guest-exec", "guest-exec-status", "guest-sync", "guest-ping", "guest-shutdown", "guest-network-get-interfaces", "guest-get-osinfo"} {
		if !names[c] {
			t.Errorf("guest-info lacks %s: %v", c, names)
		}
	}
	os := call(t, a, `{"execute":"guest-get-osinfo"}`)["return"].(map[string]any)
	if os["kernel-release"] == "" || os["machine"] == "" || os["id"] != "podvisor-test-guest" {
		t.Errorf("guest-get-osinfo = %v", os)
	}
	ifs := call(t, a, `{"execute":"guest-network-get-interfaces"}`)["return"].([]any)
	found := false
	for _, i := range ifs {
		m := i.(map[string]any)
		if m["name"] == "lo" {
			for _, ip := range m["ip-addresses"].([]any) {
				found = found || ip.(map[string]any)["ip-address"] == "127.0.0.1"
			}
		}
	}
	if !found {
		t.Errorf("guest-network-get-interfaces lacks lo with 127.0.0.1: %v", ifs)
	}
}

func TestShutdown(t *testing.T) {
	a := newAgent()
	var got []string
	a.shutdown = func(mode string) error { got = append(got, mode); return nil }
	for _, req := range []string{`{"execute":"guest-shutdown"}`, `{"execute":"guest-shutdown","arguments":{"mode":"reboot"}}`} {
		if out := a.handle([]byte(req)); out != nil {
			t.Errorf("%s: guest-shutdown answers nothing on success, got %q", req, out)
		}
	}
	if strings.Join(got, ",") != "powerdown,reboot" {
		t.Errorf("shutdown modes %v", got)
	}
}

// execWait runs guest-exec and polls guest-exec-status like podvisor does.
func execWait(t *testing.T, a *agent, args string) map[string]any {
	t.Helper()
	r := call(t, a, `{"execute":"guest-exec","arguments":`+args+`}`)
	ret, ok := r["return"].(map[string]any)
	if !ok {
		t.Fatalf("guest-exec %s: %v", args, r)
	}
	pid := int(ret["pid"].(float64))
	deadline := time.Now().Add(time.Minute)
	for {
		st := call(t, a, `{"execute":"guest-exec-status","arguments":{"pid":`+jsonInt(pid)+`}}`)["return"].(map[string]any)
		if st["exited"] == true {
			// Reported once: the PID is then forgotten.
			if again := call(t, a, `{"execute":"guest-exec-status","arguments":{"pid":`+jsonInt(pid)+`}}`); again["error"] == nil {
				t.Errorf("status of a reaped pid: want an error, got %v", again)
			}
			return st
		}
		if len(st) != 1 {
			t.Errorf("status of a running process = %v, want only exited=false", st)
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest-exec %s did not exit", args)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func jsonInt(n int) string { b, _ := json.Marshal(n); return string(b) }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestExec(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "prog")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"out:$1:$FOO\"\necho err >&2\ncat\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := newAgent()
	tests := []struct {
		name, args string
		want       map[string]any
	}{
		{"output, input, env, exit code",
			`{"path":"` + script + `","arg":["a1"],"env":["FOO=bar"],"input-data":"` + b64("from stdin\n") + `","capture-output":true}`,
			map[string]any{"exited": true, "exitcode": 3.0, "out-data": b64("out:a1:bar\nfrom stdin\n"), "err-data": b64("err\n")}},
		{"capture-output as a mode string", `{"path":"` + script + `","capture-output":"separated"}`,
			map[string]any{"exited": true, "exitcode": 3.0, "out-data": b64("out::\n"), "err-data": b64("err\n")}},
		{"no capture", `{"path":"` + script + `"}`, map[string]any{"exited": true, "exitcode": 3.0}},
		{"found in PATH, success", `{"path":"sh","arg":["-c","echo ok"],"capture-output":true}`,
			map[string]any{"exited": true, "exitcode": 0.0, "out-data": b64("ok\n")}},
		{"killed by a signal", `{"path":"sh","arg":["-c","kill -9 $$"],"capture-output":true}`,
			map[string]any{"exited": true, "exitcode": 137.0, "signal": 9.0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := execWait(t, a, tt.args)
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(tt.want)
			if !bytes.Equal(gb, wb) {
				t.Errorf("\n got %s\nwant %s", gb, wb)
			}
		})
	}
	r := call(t, a, `{"execute":"guest-exec","arguments":{"path":"/no/such/program"}}`)
	e, _ := r["error"].(map[string]any)
	if e == nil || !strings.Contains(e["desc"].(string), "/no/such/program") {
		t.Errorf("exec of a missing program: want an error naming it, got %v", r)
	}
}

func TestFindPort(t *testing.T) {
	dir := t.TempDir()
	for name, port := range map[string]string{"vport1p1": "org.qemu.guest_agent.0\n", "vport1p2": "other\n"} {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "name"), []byte(port), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := findPort(dir, channelName); err != nil || got != "/dev/vport1p1" {
		t.Errorf("findPort = %q, %v", got, err)
	}
	if _, err := findPort(dir, "missing"); err == nil {
		t.Error("findPort of a missing name: want an error")
	}
}
