// Package imageserver is an HTTP(S) server of VM images for tests, with
// fault modes per image: cut connections, wrong bytes, slow bodies,
// redirect loops, errors, Range ignored, and client certificates required.
// It listens on 127.0.0.1 only.
package imageserver

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Mode is how the server answers requests for one image. The zero value is
// normal service: full bodies, Range honoured, ETag, Last-Modified and a
// Digest header (RFC 3230, SHA-256).
type Mode struct {
	// Status, when non-zero, answers every request with this status and no
	// image (e.g. 404, 503).
	Status int
	// CutAfter > 0 aborts the connection after that many body bytes of a
	// response, as a flaky link does.
	CutAfter int64
	// CutTimes limits CutAfter to the first N responses (0: every one).
	CutTimes int
	// Corrupt sends bytes that differ from the image, with the headers
	// (ETag, Digest, length) of the real image.
	Corrupt bool
	// ChunkDelay sleeps this long before each ChunkSize bytes (default
	// 64 KiB) of body.
	ChunkDelay time.Duration
	ChunkSize  int
	// RedirectLoop answers with a redirect to the same path, forever.
	RedirectLoop bool
	// IgnoreRange always sends the whole image with 200 and no
	// Accept-Ranges, as some servers do.
	IgnoreRange bool
	// NoDigest omits the Digest header, as most real servers do.
	NoDigest bool
	// Gate, when set, holds every response until the channel is closed, so
	// a test can act while a download is in progress.
	Gate <-chan struct{}
}

// Predefined modes.
var (
	Normal       = Mode{}
	NotFound     = Mode{Status: http.StatusNotFound}
	RedirectLoop = Mode{RedirectLoop: true}
	WrongBytes   = Mode{Corrupt: true}
	IgnoreRange  = Mode{IgnoreRange: true}
)

// Cut returns a mode that aborts every response after n body bytes.
func Cut(n int64) Mode { return Mode{CutAfter: n} }

// Options configure a Server.
type Options struct {
	// ClientCAs, when set, makes StartTLS require a client certificate
	// signed by one of them.
	ClientCAs *x509.CertPool
	// Certificate is the server certificate for StartTLS (required for it).
	Certificate tls.Certificate
}

// Stats counts what the server did for one image path.
type Stats struct {
	Requests      int   // every request
	RangeRequests int   // requests that carried a Range header
	BytesSent     int64 // body bytes written
}

type image struct {
	data    []byte
	etag    string
	digest  string
	modTime time.Time
	mode    Mode
	cuts    int
	stats   Stats
}

// Server serves images added with AddImage at /<name>.
type Server struct {
	opts Options
	srv  *http.Server
	ln   net.Listener
	url  string

	mu     sync.Mutex
	images map[string]*image
}

// New returns a server that is not started yet.
func New(opts Options) *Server {
	s := &Server{opts: opts, images: map[string]*image{}}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serve),
		ReadHeaderTimeout: 10 * time.Second,
		// Handshake failures are what some tests are about: not noise.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	return s
}

// Start serves plain HTTP on 127.0.0.1 and a free port.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("image server: %w", err)
	}
	s.ln, s.url = ln, "http://"+ln.Addr().String()
	go func() { _ = s.srv.Serve(ln) }()
	return nil
}

// StartTLS serves HTTPS with Options.Certificate, requiring client
// certificates when Options.ClientCAs is set.
func (s *Server) StartTLS() error {
	if len(s.opts.Certificate.Certificate) == 0 {
		return fmt.Errorf("image server: StartTLS needs Options.Certificate")
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{s.opts.Certificate}, MinVersion: tls.VersionTLS12}
	if s.opts.ClientCAs != nil {
		cfg.ClientCAs = s.opts.ClientCAs
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("image server: %w", err)
	}
	s.ln, s.url = ln, "https://"+ln.Addr().String()
	go func() { _ = s.srv.Serve(tls.NewListener(ln, cfg)) }()
	return nil
}

// Close stops the server and ends open connections.
func (s *Server) Close() error { return s.srv.Close() }

// URL is the base URL, without a trailing slash.
func (s *Server) URL() string { return s.url }

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// AddImage serves data at /<name> (name may contain '/'), replacing any
// image there.
func (s *Server) AddImage(name string, data []byte) {
	sum := sha256.Sum256(data)
	s.mu.Lock()
	defer s.mu.Unlock()
	name = strings.TrimPrefix(name, "/")
	img := s.images[name]
	if img == nil {
		// Replacing an image keeps its mode and counters.
		img = &image{}
		s.images[name] = img
	}
	img.data = data
	img.etag = `"` + hex.EncodeToString(sum[:]) + `"`
	img.digest = "SHA-256=" + base64.StdEncoding.EncodeToString(sum[:])
	img.modTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
}

// SetMode changes how /<name> is served from the next request on.
func (s *Server) SetMode(name string, m Mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if img := s.images[strings.TrimPrefix(name, "/")]; img != nil {
		img.mode, img.cuts = m, 0
	}
}

// Stats returns the counters of /<name>.
func (s *Server) Stats(name string) Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if img := s.images[strings.TrimPrefix(name, "/")]; img != nil {
		return img.stats
	}
	return Stats{}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	s.mu.Lock()
	img := s.images[name]
	if img == nil {
		s.mu.Unlock()
		http.NotFound(w, r)
		return
	}
	img.stats.Requests++
	if r.Header.Get("Range") != "" {
		img.stats.RangeRequests++
	}
	m := img.mode
	cut := m.CutAfter > 0 && (m.CutTimes == 0 || img.cuts < m.CutTimes)
	if cut {
		img.cuts++
	}
	data, etag, digest, modTime := img.data, img.etag, img.digest, img.modTime
	s.mu.Unlock()

	switch {
	case m.Status != 0:
		http.Error(w, http.StatusText(m.Status), m.Status)
		return
	case m.RedirectLoop:
		http.Redirect(w, r, r.URL.Path, http.StatusFound)
		return
	}
	if m.Corrupt {
		data = bytes.Clone(data)
		for i := 0; i < len(data); i += 4096 {
			data[i] ^= 0xff
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", etag)
	if !m.NoDigest {
		h.Set("Digest", digest)
	}
	if m.Gate != nil {
		select {
		case <-m.Gate:
		case <-r.Context().Done():
			return
		}
	}
	out := &countingWriter{ResponseWriter: w, s: s, name: name, mode: m, cut: cut, r: r}
	if m.IgnoreRange {
		h.Set("Accept-Ranges", "none")
		h.Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
		_, _ = out.Write(data)
		return
	}
	http.ServeContent(out, r, name, modTime, bytes.NewReader(data))
}

// countingWriter counts body bytes and applies the cut and slow modes.
type countingWriter struct {
	http.ResponseWriter
	s    *Server
	name string
	mode Mode
	cut  bool
	r    *http.Request
	sent int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	chunk := c.mode.ChunkSize
	if chunk <= 0 {
		chunk = 64 << 10
	}
	if c.mode.ChunkDelay == 0 {
		chunk = len(p)
	}
	if c.mode.ChunkDelay > 0 && c.sent == 0 {
		c.Flush() // headers now, so that only the body is slow
	}
	total := 0
	for len(p) > 0 {
		n := min(chunk, len(p))
		if c.cut {
			left := c.mode.CutAfter - c.sent
			if left <= 0 {
				c.abort()
			}
			n = int(min(int64(n), left))
		}
		if c.mode.ChunkDelay > 0 {
			t := time.NewTimer(c.mode.ChunkDelay)
			select {
			case <-c.r.Context().Done():
				t.Stop()
				return total, c.r.Context().Err()
			case <-t.C:
			}
		}
		// Count before writing: a client may see the bytes, finish and read
		// Stats before Write returns. Unsent bytes are taken back below.
		c.count(int64(n))
		m, err := c.ResponseWriter.Write(p[:n])
		c.count(int64(m - n))
		c.sent += int64(m)
		total += m
		if err != nil {
			return total, err
		}
		if c.mode.ChunkDelay > 0 {
			c.Flush()
		}
		p = p[m:]
	}
	return total, nil
}

func (c *countingWriter) count(n int64) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if img := c.s.images[c.name]; img != nil {
		img.stats.BytesSent += n
	}
}

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// abort sends what was written and drops the connection mid-body.
func (c *countingWriter) abort() {
	c.Flush()
	panic(http.ErrAbortHandler)
}
