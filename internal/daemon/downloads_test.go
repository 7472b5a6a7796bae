package daemon

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidateDownloads(t *testing.T) {
	tests := []struct {
		nets    []string
		size    string
		want    []netip.Prefix
		wantMax int64
		wantErr string
	}{
		{size: "", wantMax: 64 << 30},
		{size: "500Mi", wantMax: 500 << 20},
		{size: "20G", wantMax: 20e9},
		{size: "1048576", wantMax: 1 << 20},
		{size: "0", wantMax: 0},
		{size: "-1", wantErr: `image-max-size: "-1" is not accepted`},
		{size: "lots", wantErr: `image-max-size: "lots" is not accepted`},
		{size: "99999999Ti", wantErr: "image-max-size"},
		{nets: []string{"127.0.0.1/32", " 10.99.0.7/24", "::1"}, wantMax: 64 << 30,
			want: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.99.0.0/24"), netip.MustParsePrefix("::1/128")}},
		{nets: []string{"localhost"}, wantErr: `image-download-allow-networks: "localhost" is not accepted: use CIDRs`},
	}
	for _, tc := range tests {
		c := Config{ImageDownloadAllowNetworks: tc.nets, ImageMaxSize: tc.size}
		err := c.validateDownloads()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v %q: err %v, want %q", tc.nets, tc.size, err, tc.wantErr)
			}
			continue
		}
		if err != nil || c.imageMaxBytes != tc.wantMax || !cmp.Equal(c.imageAllowNets, tc.want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })) {
			t.Errorf("%v %q: %v %d %v; want %v %d", tc.nets, tc.size, c.imageAllowNets, c.imageMaxBytes, err, tc.want, tc.wantMax)
		}
	}
}
