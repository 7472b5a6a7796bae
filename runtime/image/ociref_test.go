package image

import (
	"strings"
	"testing"
)

func TestOCINames(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct{ in, want string }{
		{"busybox", "docker.io/library/busybox:latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36"},
		{"docker.io/library/busybox", "docker.io/library/busybox:latest"},
		{"quay.io/containerdisks/fedora:41", "quay.io/containerdisks/fedora:41"},
		{"127.0.0.1:5000/disks/cirros", "127.0.0.1:5000/disks/cirros:latest"},
		{"127.0.0.1:5000/disks/cirros@" + d, "127.0.0.1:5000/disks/cirros@" + d},
	} {
		if !isOCIName(tc.in) {
			t.Errorf("isOCIName(%q) = false", tc.in)
		}
		n, err := parseOCIName(tc.in)
		if err != nil {
			t.Errorf("parseOCIName(%q): %v", tc.in, err)
			continue
		}
		if n.String() != tc.want {
			t.Errorf("parseOCIName(%q) = %s, want %s", tc.in, n, tc.want)
		}
	}
	for _, v := range []string{"virtlet.cloud/cirros", "https://example.com/x.img", "sha256:" + strings.Repeat("ab", 32), strings.Repeat("ab", 32)} {
		if isOCIName(v) {
			t.Errorf("isOCIName(%q) = true, want a Virtlet name or an ID", v)
		}
	}
	for _, bad := range []string{"UPPER/case", "a b", "repo@sha256:short", "repo@md5:" + strings.Repeat("a", 32)} {
		if _, err := parseOCIName(bad); err == nil {
			t.Errorf("parseOCIName(%q) accepted", bad)
		}
	}
}

func TestCheckQemuImgInfo(t *testing.T) {
	for _, tc := range []struct{ json, format, want string }{
		{`{"format":"qcow2","virtual-size":1048576}`, "qcow2", ""},
		{`{"format":"raw","virtual-size":4096}`, "raw", ""},
		{`{"format":"raw","virtual-size":4096}`, "qcow2", "says format"},
		{`{"format":"qcow2","virtual-size":1,"backing-filename":"/etc/shadow"}`, "qcow2", "backing file"},
		{`{"format":"qcow2","virtual-size":1,"format-specific":{"type":"qcow2","data":{"data-file":"/dev/sda"}}}`, "qcow2", "external data file"},
		{`not json`, "raw", "reading qemu-img info"},
	} {
		err := checkInfo([]byte(tc.json), tc.format)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("checkInfo(%s, %s) = %v, want %q", tc.json, tc.format, err, tc.want)
		}
	}
}
