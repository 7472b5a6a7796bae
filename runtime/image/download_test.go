package image

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"testing"
)

func TestAdvertisedSHA256(t *testing.T) {
	sum := sha256.Sum256([]byte("x"))
	b64 := base64.StdEncoding.EncodeToString(sum[:])
	want := hex.EncodeToString(sum[:])
	tests := []struct {
		name   string
		header http.Header
		want   string
	}{
		{"Digest", http.Header{"Digest": {"SHA-256=" + b64}}, want},
		{"Digest among others", http.Header{"Digest": {"MD5=abc, sha-256=" + b64}}, want},
		{"Repr-Digest", http.Header{"Repr-Digest": {"sha-256=:" + b64 + ":"}}, want},
		{"Repr-Digest wins", http.Header{"Repr-Digest": {"sha-256=:" + b64 + ":"}, "Digest": {"SHA-256=AAAA"}}, want},
		{"other algorithm only", http.Header{"Digest": {"MD5=abc"}}, ""},
		{"bad base64", http.Header{"Digest": {"SHA-256=!!!"}}, ""},
		{"wrong length", http.Header{"Repr-Digest": {"sha-256=:AAAA:"}}, ""},
		{"none", http.Header{}, ""},
	}
	for _, tc := range tests {
		if got := advertisedSHA256(tc.header); got != tc.want {
			t.Errorf("%s: advertisedSHA256 = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in         string
		start, tot int64
		ok         bool
	}{
		{"bytes 100-199/1000", 100, 1000, true},
		{"bytes 0-0/*", 0, -1, true},
		{"bytes */1000", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
		{"bytes 1-2", 0, 0, false},
		{"bytes x-2/3", 0, 0, false},
		{"bytes 1-2/y", 0, 0, false},
	}
	for _, tc := range tests {
		start, tot, ok := parseContentRange(tc.in)
		if ok != tc.ok || (ok && (start != tc.start || tot != tc.tot)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, %v", tc.in, start, tot, ok, tc.start, tc.tot, tc.ok)
		}
	}
}
