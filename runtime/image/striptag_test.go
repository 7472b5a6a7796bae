package image

import "testing"

func TestStripTag(t *testing.T) {
	for in, want := range map[string]string{
		"virtlet.cloud/cirros":                    "virtlet.cloud/cirros",
		"virtlet.cloud/cirros:latest":             "virtlet.cloud/cirros",
		"virtlet.cloud/ubuntu/16.04:v1":           "virtlet.cloud/ubuntu/16.04",
		"virtlet.cloud/127.0.0.1:8000/a.qcow2":    "virtlet.cloud/127.0.0.1:8000/a.qcow2",
		"virtlet.cloud/file:///tmp/x.img":         "virtlet.cloud/file:///tmp/x.img",
		"virtlet.cloud/cirros@sha256:abcd":        "virtlet.cloud/cirros@sha256:abcd",
		"virtlet.cloud/cirros:latest@sha256:abcd": "virtlet.cloud/cirros@sha256:abcd",
		"sha256:0123":                             "sha256:0123",
	} {
		if got := stripTag(in); got != want {
			t.Errorf("stripTag(%q) = %q, want %q", in, got, want)
		}
	}
}
