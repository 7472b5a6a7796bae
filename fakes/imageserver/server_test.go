package imageserver

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func startServer(t *testing.T, opts Options, useTLS bool) *Server {
	t.Helper()
	s := New(opts)
	start := s.Start
	if useTLS {
		start = s.StartTLS
	}
	if err := start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Fatalf("listens on %s, want 127.0.0.1 only", s.Addr())
	}
	return s
}

func get(t *testing.T, c *http.Client, url, rng string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func TestModes(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320000 bytes
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		name      string
		mode      Mode
		rng       string
		wantCode  int
		wantBody  []byte
		wantErr   error
		wantBytes int64
	}{
		{name: "normal", mode: Normal, wantCode: 200, wantBody: data},
		{name: "range", mode: Normal, rng: "bytes=100-", wantCode: 206, wantBody: data[100:]},
		{name: "range ignored", mode: IgnoreRange, rng: "bytes=100-", wantCode: 200, wantBody: data},
		{name: "404", mode: NotFound, wantCode: 404},
		{name: "redirect loop", mode: RedirectLoop, wantCode: 302},
		{name: "cut", mode: Cut(1000), wantCode: 200, wantErr: io.ErrUnexpectedEOF, wantBytes: 1000},
		{name: "cut range", mode: Cut(1000), rng: "bytes=5000-", wantCode: 206, wantErr: io.ErrUnexpectedEOF, wantBytes: 1000},
		{name: "slow", mode: Mode{ChunkDelay: time.Millisecond, ChunkSize: 100000}, wantCode: 200, wantBody: data},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Options{}, false)
			s.AddImage("dir/img.qcow2", data)
			s.SetMode("dir/img.qcow2", tc.mode)
			resp, body, err := get(t, noRedirect, s.URL()+"/dir/img.qcow2", tc.rng)
			if resp == nil {
				t.Fatalf("request failed: %v", err)
			}
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantCode)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("body error %v, want %v", err, tc.wantErr)
				}
				if int64(len(body)) != tc.wantBytes {
					t.Fatalf("got %d bytes before the cut, want %d", len(body), tc.wantBytes)
				}
			} else if err != nil {
				t.Fatalf("reading body: %v", err)
			}
			if tc.wantBody != nil && !bytes.Equal(body, tc.wantBody) {
				t.Fatalf("body of %d bytes differs from the expected %d", len(body), len(tc.wantBody))
			}
			st := s.Stats("dir/img.qcow2")
			if st.Requests != 1 {
				t.Errorf("Requests = %d, want 1", st.Requests)
			}
			if want := map[bool]int{true: 1, false: 0}[tc.rng != ""]; st.RangeRequests != want {
				t.Errorf("RangeRequests = %d, want %d", st.RangeRequests, want)
			}
		})
	}
}

func TestWrongBytesKeepsHeaders(t *testing.T) {
	data := bytes.Repeat([]byte{7}, 10000)
	s := startServer(t, Options{}, false)
	s.AddImage("a", data)
	resp, good, err := get(t, http.DefaultClient, s.URL()+"/a", "")
	if err != nil {
		t.Fatal(err)
	}
	s.SetMode("a", WrongBytes)
	resp2, bad, err := get(t, http.DefaultClient, s.URL()+"/a", "")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(good, bad) || len(good) != len(bad) {
		t.Fatalf("wrong-bytes body should differ with the same length: %d vs %d", len(good), len(bad))
	}
	for _, h := range []string{"ETag", "Digest"} {
		if resp.Header.Get(h) == "" || resp.Header.Get(h) != resp2.Header.Get(h) {
			t.Errorf("header %s: %q vs %q, want equal and set", h, resp.Header.Get(h), resp2.Header.Get(h))
		}
	}
}

func TestCutTimes(t *testing.T) {
	data := bytes.Repeat([]byte{1}, 5000)
	s := startServer(t, Options{}, false)
	s.AddImage("a", data)
	s.SetMode("a", Mode{CutAfter: 10, CutTimes: 1})
	if _, _, err := get(t, http.DefaultClient, s.URL()+"/a", ""); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("first request: %v, want a cut", err)
	}
	if _, body, err := get(t, http.DefaultClient, s.URL()+"/a", ""); err != nil || len(body) != len(data) {
		t.Fatalf("second request: %d bytes, %v; want the whole image", len(body), err)
	}
}

func TestClientCertificateRequired(t *testing.T) {
	certs, err := GenerateCerts()
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := certs.Server.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	clientCert, err := certs.Client.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, Options{Certificate: serverCert, ClientCAs: certs.Pool}, true)
	s.AddImage("a", []byte("image"))

	without := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.Pool}}}
	if _, _, err := get(t, without, s.URL()+"/a", ""); err == nil {
		t.Fatal("request without a client certificate succeeded")
	}
	with := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.Pool, Certificates: []tls.Certificate{clientCert}}}}
	resp, body, err := get(t, with, s.URL()+"/a", "")
	if err != nil || resp.StatusCode != 200 || string(body) != "image" {
		t.Fatalf("with a client certificate: %v, %v, %q", err, resp, body)
	}
}

func TestStartTLSNeedsCertificate(t *testing.T) {
	if err := New(Options{}).StartTLS(); err == nil || !strings.Contains(err.Error(), "Certificate") {
		t.Fatalf("StartTLS without a certificate: %v, want an error naming Options.Certificate", err)
	}
}
