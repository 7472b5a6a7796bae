package pod

import (
	"errors"
	"strings"
	"testing"

	"github.com/podvisor/podvisor/runtime/errdefs"
)

func TestValidateSandboxConfigSysctls(t *testing.T) {
	t.Parallel()
	ok := SandboxConfig{Name: "n", UID: "u", Namespace: "ns"}
	tests := []struct {
		name    string
		sysctls map[string]string
		want    string // "" = valid
	}{
		{"none", nil, ""},
		{"safe", map[string]string{"kernel.shm_rmid_forced": "1", "net.ipv4.ip_local_port_range": "1024 65000"}, ""},
		{"slashes", map[string]string{"net/ipv4/conf/eth0/forwarding": "1"}, ""},
		{"dashes and tab", map[string]string{"net.ipv4.conf.my-if.rp_filter": "0", "net.ipv4.tcp_rmem": "4096\t87380\t6291456"}, ""},
		{"uppercase", map[string]string{"Kernel.shmmax": "1"}, `linux.sysctls["Kernel.shmmax"]: bad name: accepted dot- or slash-separated segments of a-z, 0-9, _ and -`},
		{"empty segment", map[string]string{"kernel..shmmax": "1"}, `linux.sysctls["kernel..shmmax"]: bad name`},
		{"leading dot", map[string]string{".kernel": "1"}, `linux.sysctls[".kernel"]: bad name`},
		{"trailing slash", map[string]string{"kernel/": "1"}, `linux.sysctls["kernel/"]: bad name`},
		{"shell in name", map[string]string{"kernel.x;reboot": "1"}, `linux.sysctls["kernel.x;reboot"]: bad name`},
		{"equals in name", map[string]string{"kernel.x=1": "1"}, `bad name`},
		{"empty name", map[string]string{"": "1"}, `linux.sysctls[""]: bad name`},
		{"long name", map[string]string{strings.Repeat("a", 254): "1"}, `at most 253 characters`},
		{"newline in value", map[string]string{"kernel.msgmax": "1\nkernel.panic=1"}, `linux.sysctls["kernel.msgmax"]: bad value "1\nkernel.panic=1": accepted printable text on one line`},
		{"control char", map[string]string{"kernel.msgmax": "1\x00"}, `bad value "1\x00"`},
		{"invalid utf-8", map[string]string{"kernel.msgmax": "\xff"}, `bad value`},
		{"empty value", map[string]string{"kernel.msgmax": ""}, `linux.sysctls["kernel.msgmax"]: bad value "": accepted printable text on one line (tabs allowed), 1 to 4096 bytes`},
		{"long value", map[string]string{"kernel.msgmax": strings.Repeat("1", 4097)}, `bad value of 4097 bytes`},
		{"first bad in sorted order", map[string]string{"b.x": "\n", "a.x": "\n"}, `linux.sysctls["a.x"]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			cfg.Sysctls = tc.sysctls
			err := validateSandboxConfig(cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("valid sysctls refused: %v", err)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want InvalidArgument containing %q", err, tc.want)
			}
		})
	}
}
