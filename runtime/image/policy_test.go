package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
)

var loopbackAllowed = WithAllowNetworks([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})

// policyStore is a store with the default download policy, except for the
// options given: retrying forever within a minute's give-up bound, so a
// refusal that is retried shows as a slow failure.
func policyStore(t *testing.T, tr Translator, opts ...Option) *Store {
	t.Helper()
	forever := WithBackOff(func() backoff.BackOff { return backoff.NewConstantBackOff(10 * time.Millisecond) })
	s, err := NewStore(t.TempDir(), tr, append([]Option{forever, WithGiveUpAfter(time.Minute)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pullQuickly pulls name and fails the test when that takes long: every
// refusal must be immediate, not a give-up after retries.
func pullQuickly(t *testing.T, s *Store, name string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ref, err := s.Pull(ctx, name)
	if ctx.Err() != nil {
		t.Fatalf("Pull(%q) ran into the test's deadline: %v", name, err)
	}
	return ref, err
}

func TestUntranslatedNamesRefused(t *testing.T) {
	srv := startServer(t)
	data := fakeQcow2(4096, 1<<30, 50)
	srv.AddImage("img", data)
	name := srv.URL() + "/img"
	dir := t.TempDir()
	conf := "translations:\n- name: known\n  url: " + srv.URL() + "/img\n"
	if err := os.WriteFile(filepath.Join(dir, "t.yaml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	tr := NewTranslations(dir)

	s := policyStore(t, tr, loopbackAllowed)
	_, err := pullQuickly(t, s, "virtlet.cloud/"+name)
	wantErrContains(t, err, `pulling image "virtlet.cloud/`+name+`"`, "no image translation matches it", "--image-allow-untranslated")
	if n := srv.Stats("img").Requests; n != 0 {
		t.Errorf("%d requests for a refused name, want 0", n)
	}
	assertNothingVisible(t, s, name)
	if _, err := pullQuickly(t, s, "known"); err != nil {
		t.Errorf("translated name: %v", err)
	}

	allowed := policyStore(t, tr, loopbackAllowed, WithAllowUntranslated(true))
	if ref, err := pullQuickly(t, allowed, name); err != nil || ref != "sha256:"+digestOf(data) {
		t.Errorf("with WithAllowUntranslated: %s, %v", ref, err)
	}
}

func TestFileURLsOnlyFromOperatorFiles(t *testing.T) {
	file := filepath.Join(t.TempDir(), "disk.qcow2")
	data := fakeQcow2(4096, 1<<30, 51)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		origin  Origin
		wantErr string
	}{
		{OriginOperator, ""},
		{OriginObject, "comes from a VirtletImageMapping object"},
		{OriginUntranslated, "comes from an untranslated image name"},
	} {
		t.Run(tc.origin.String(), func(t *testing.T) {
			tr := translatorFunc(func(context.Context, string) (Endpoint, error) {
				return Endpoint{URL: "file://" + file, Origin: tc.origin, Source: "test"}, nil
			})
			// Untranslated names allowed: the file rule holds anyway.
			s := policyStore(t, tr, WithAllowUntranslated(true))
			_, err := pullQuickly(t, s, "disk")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErrContains(t, err, tc.wantErr, "file URLs are accepted only from the operator's translation files")
			assertNothingVisible(t, s, "disk")
		})
	}
	// The name itself as a file URL, the case of finding 1.
	s := policyStore(t, nil, WithAllowUntranslated(true))
	_, err := pullQuickly(t, s, "file://"+file)
	wantErrContains(t, err, "file URLs are accepted only from the operator's translation files")
}

// redirector answers every request with a redirect to target.
func redirector(t *testing.T, target string, tls bool) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		http.Redirect(w, r, target, http.StatusFound)
	})
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv, &n
}

// trusting is a transport profile that trusts srv's certificate.
func trusting(srv *httptest.Server) Transport {
	c := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	return Transport{TLS: &TLSConfig{Certificates: []TLSCertificate{{Cert: c}}}}
}

func TestRedirectPolicy(t *testing.T) {
	data := fakeQcow2(4096, 1<<30, 52)
	// The image, on its own port, over http and https.
	var served atomic.Int32
	serve := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		_, _ = w.Write(data)
	})
	plain := httptest.NewServer(serve)
	t.Cleanup(plain.Close)
	secure := httptest.NewTLSServer(serve)
	t.Cleanup(secure.Close)

	tests := []struct {
		name     string
		from     bool // the redirecting server is https
		to       string
		opts     []Option
		wantErr  []string
		wantHits int32 // requests the image server gets
	}{
		{name: "https to plain http elsewhere (finding 1)", from: true, to: plain.URL + "/img",
			wantErr: []string{"redirect refused", "plain http redirects must stay on the host and port", "--image-download-allow-insecure-redirects"}},
		{name: "http to http on another port", to: plain.URL + "/img",
			wantErr: []string{"redirect refused", "plain http redirects must stay on the host and port"}},
		{name: "to a file", from: true, to: "file:///etc/passwd",
			wantErr: []string{"redirect refused", "file:///etc/passwd", "only http and https redirects are followed"}},
		{name: "to ftp", to: "ftp://127.0.0.1/img", wantErr: []string{"only http and https redirects are followed"}},
		{name: "to https elsewhere", to: secure.URL + "/img", wantHits: 1},
		{name: "http elsewhere when allowed", to: plain.URL + "/img", opts: []Option{WithInsecureRedirects(true)}, wantHits: 1},
		{name: "file even when insecure redirects are allowed", to: "file:///etc/passwd", opts: []Option{WithInsecureRedirects(true)},
			wantErr: []string{"only http and https redirects are followed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			served.Store(0)
			red, hits := redirector(t, tc.to, tc.from)
			ep := Endpoint{URL: red.URL + "/img", Transport: trusting(secure)}
			if tc.from {
				ep.Transport = trusting(red)
			}
			if strings.HasPrefix(tc.to, secure.URL) {
				// Both servers are httptest's: the same certificate.
				ep.Transport = trusting(secure)
			}
			s := policyStore(t, staticTranslator{"img": ep}, append([]Option{loopbackAllowed}, tc.opts...)...)
			ref, err := pullQuickly(t, s, "img")
			if got := served.Load(); got != tc.wantHits {
				t.Errorf("image server got %d requests, want %d", got, tc.wantHits)
			}
			if tc.wantErr == nil {
				if err != nil || ref != "sha256:"+digestOf(data) {
					t.Fatalf("Pull = %s, %v", ref, err)
				}
				return
			}
			wantErrContains(t, err, tc.wantErr...)
			if n := hits.Load(); n != 1 {
				t.Errorf("%d requests to the redirecting server, want 1: a refused redirect is not retried", n)
			}
			assertNothingVisible(t, s, "img")
		})
	}
	// A redirect within the same origin is followed whatever the scheme.
	same := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/old" {
			http.Redirect(w, r, "/img", http.StatusMovedPermanently)
			return
		}
		_, _ = w.Write(data)
	}))
	t.Cleanup(same.Close)
	s := policyStore(t, staticTranslator{"img": {URL: same.URL + "/old"}}, loopbackAllowed)
	if _, err := pullQuickly(t, s, "img"); err != nil {
		t.Errorf("same-origin redirect: %v", err)
	}
}

func TestAddressPolicy(t *testing.T) {
	tests := []struct {
		addr    string
		private bool
		allow   string
		want    string // refusal kind, "" allowed
	}{
		{addr: "127.0.0.1", want: "loopback"},
		{addr: "127.8.9.10", want: "loopback"},
		{addr: "::1", want: "loopback"},
		{addr: "::ffff:127.0.0.1", want: "loopback"},
		{addr: "169.254.169.254", want: "link-local"},
		{addr: "fe80::1", want: "link-local"},
		{addr: "0.0.0.0", want: "unspecified"},
		{addr: "0.1.2.3", want: "unspecified"},
		{addr: "::", want: "unspecified"},
		{addr: "224.0.0.1", want: "link-local"},
		{addr: "239.1.2.3", want: "multicast or broadcast"},
		{addr: "255.255.255.255", want: "multicast or broadcast"},
		{addr: "ff02::1", want: "link-local"},
		{addr: "ff0e::1", want: "multicast or broadcast"},
		{addr: "10.96.0.1", want: "private"},
		{addr: "172.16.0.1", want: "private"},
		{addr: "192.168.1.1", want: "private"},
		{addr: "100.64.0.1", want: "private"},
		{addr: "fd00::1", want: "private"},
		{addr: "10.96.0.1", private: true},
		{addr: "169.254.169.254", private: true, want: "link-local"},
		{addr: "127.0.0.1", allow: "127.0.0.1/32"},
		{addr: "::ffff:127.0.0.1", allow: "127.0.0.1/32"},
		{addr: "127.0.0.2", allow: "127.0.0.1/32", want: "loopback"},
		{addr: "10.99.0.1", allow: "10.99.0.0/24"},
		{addr: "8.8.8.8"},
		{addr: "2001:4860::8888"},
		{addr: "151.101.1.1", allow: "127.0.0.1/32"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s private=%v allow=%s", tc.addr, tc.private, tc.allow), func(t *testing.T) {
			o := options{allowPrivate: tc.private}
			if tc.allow != "" {
				o.allowNets = []netip.Prefix{netip.MustParsePrefix(tc.allow)}
			}
			err := o.dialControl("tcp", netip.AddrPortFrom(netip.MustParseAddr(tc.addr), 80).String(), nil)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Errorf("allowed, want refused as %s", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), "a "+tc.want+" address"):
				t.Errorf("error %q, want one saying a %s address", err, tc.want)
			}
		})
	}
}

func TestDialRefusesLoopback(t *testing.T) {
	srv := startServer(t)
	data := fakeQcow2(4096, 1<<30, 53)
	srv.AddImage("img", data)
	port := srv.URL()[strings.LastIndex(srv.URL(), ":")+1:]
	for _, u := range []string{
		srv.URL() + "/img",
		// A name that resolves to loopback is caught after resolution,
		// as is one whose DNS answer changes between checks (rebinding).
		"http://localhost:" + port + "/img",
	} {
		s := policyStore(t, staticTranslator{"img": {URL: u}})
		_, err := pullQuickly(t, s, "img")
		wantErrContains(t, err, "refusing to download from", "a loopback address", "--image-download-allow-networks")
		assertNothingVisible(t, s, "img")
	}
	if n := srv.Stats("img").Requests; n != 0 {
		t.Errorf("%d requests reached the loopback server, want 0", n)
	}
	s := policyStore(t, staticTranslator{"img": {URL: srv.URL() + "/img"}},
		WithAllowNetworks([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}))
	if ref, err := pullQuickly(t, s, "img"); err != nil || ref != "sha256:"+digestOf(data) {
		t.Errorf("allowed network: %s, %v", ref, err)
	}
}

// streamer serves n bytes of data without a Content-Length, flushing as
// it goes, as a server generating a body does.
func streamer(t *testing.T, data []byte) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for b := data; len(b) > 0; {
			n := min(len(b), 64<<10)
			if _, err := w.Write(b[:n]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			b = b[n:]
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestMaxImageSize(t *testing.T) {
	data := fakeQcow2(3<<20, 1<<30, 54)
	chunked := streamer(t, data)
	announced := startServer(t)
	announced.AddImage("img", data)
	for _, u := range []string{chunked.URL + "/img", announced.URL() + "/img"} {
		s := policyStore(t, staticTranslator{"img": {URL: u}}, loopbackAllowed, WithMaxImageSize(1<<20))
		_, err := pullQuickly(t, s, "img")
		wantErrContains(t, err, "larger than the maximum image size of 1048576 bytes", "--image-max-size")
		assertNothingVisible(t, s, "img")
	}
	s := policyStore(t, staticTranslator{"img": {URL: chunked.URL + "/img"}}, loopbackAllowed, WithMaxImageSize(3<<20))
	if _, err := pullQuickly(t, s, "img"); err != nil {
		t.Errorf("an image of exactly the limit: %v", err)
	}
}

// fakeDisk makes the store's file system look like one of size bytes with
// free bytes available, less what downloads wrote since.
func fakeDisk(t *testing.T, free, size uint64) {
	orig, origEvery := freeSpace, spaceCheckEvery
	t.Cleanup(func() { freeSpace, spaceCheckEvery = orig, origEvery })
	spaceCheckEvery = 64 << 10
	freeSpace = func(dir string) (uint64, uint64, error) {
		var used uint64
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					used += uint64(info.Size())
				}
			}
			return nil
		})
		return free - min(used, free), size, nil
	}
}

func TestFreeSpaceWithoutContentLength(t *testing.T) {
	data := fakeQcow2(4<<20, 1<<30, 55)
	srv := streamer(t, data)
	// 3 MiB free on a 20 MiB file system: the reserve is 1 MiB, so the
	// download must stop before 2 MiB.
	fakeDisk(t, 3<<20, 20<<20)
	s := policyStore(t, staticTranslator{"img": {URL: srv.URL + "/img"}}, loopbackAllowed)
	_, err := pullQuickly(t, s, "img")
	wantErrContains(t, err, "stopped after", "downloads leave 1048576 free for the node")
	assertNothingVisible(t, s, "img")
}

// gzipServer serves data gzip-encoded. With always it encodes whatever the
// request asked for, byte ranges included (of the encoded stream, as a
// server with precompressed files does), and cuts the first response
// half-way; otherwise it encodes only when asked and serves ranges of the
// file itself.
func gzipServer(t *testing.T, data []byte, always bool) (*httptest.Server, *atomic.Int32) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(data)
	_ = zw.Close()
	gz := buf.Bytes()
	var asked, cut atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			asked.Add(1)
		}
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Accept-Ranges", "bytes")
		body := data
		if always || strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			body = gz
		}
		start := 0
		if rng := r.Header.Get("Range"); rng != "" {
			start, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rng, "bytes="), "-"))
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(body)-1, len(body)))
			w.Header().Set("Content-Length", strconv.Itoa(len(body)-start))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		if cut.Add(1) == 1 {
			_, _ = w.Write(body[start : start+len(body)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		_, _ = w.Write(body[start:])
	}))
	t.Cleanup(srv.Close)
	return srv, &asked
}

func TestGzipEncoding(t *testing.T) {
	// Compressible: a qcow2 header and zeros, as real images mostly are.
	data := make([]byte, 4<<20)
	copy(data, fakeQcow2(4096, 1<<30, 56))

	t.Run("encoded when asked: never asked, sizes and ranges of the file", func(t *testing.T) {
		srv, asked := gzipServer(t, data, false)
		s := policyStore(t, staticTranslator{"img": {URL: srv.URL + "/img"}}, loopbackAllowed)
		// Pinned, so that wrong bytes cannot be stored.
		ref, err := pullQuickly(t, s, "img@sha256:"+digestOf(data))
		if err != nil || ref != "sha256:"+digestOf(data) {
			t.Fatalf("resumed pull = %s, %v", ref, err)
		}
		if n := asked.Load(); n != 0 {
			t.Errorf("%d requests asked for gzip, want none", n)
		}
		// The free-space check sees the file's length (finding 2: with
		// transparent gzip it saw none and was skipped).
		fakeDisk(t, 1<<20, 1<<40)
		s = policyStore(t, staticTranslator{"img": {URL: srv.URL + "/img"}}, loopbackAllowed)
		_, err = pullQuickly(t, s, "img")
		wantErrContains(t, err, "needs 4194304 more bytes")
	})
	t.Run("encoded whatever the request: refused", func(t *testing.T) {
		srv, _ := gzipServer(t, data, true)
		s := policyStore(t, staticTranslator{"img": {URL: srv.URL + "/img"}}, loopbackAllowed)
		ref, err := pullQuickly(t, s, "img")
		if err == nil {
			t.Fatalf("stored %s (the image is sha256:%s)", ref, digestOf(data))
		}
		wantErrContains(t, err, `Content-Encoding "gzip", which podvisor does not decode`)
		assertNothingVisible(t, s, "img")
	})
}
