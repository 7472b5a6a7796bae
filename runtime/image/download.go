package image

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// errPermanent marks download errors that a retry cannot fix.
type errPermanent struct{ err error }

func (e *errPermanent) Error() string { return e.err.Error() }
func (e *errPermanent) Unwrap() error { return e.err }

func permanent(err error) error { return &errPermanent{err} }

func isPermanent(err error) bool {
	var p *errPermanent
	return errors.As(err, &p)
}

// errTooManyRedirects is returned by CheckRedirect; a loop never heals.
var errTooManyRedirects = errors.New("too many redirects")

// download is one transfer into a temporary file of the store, resumed and
// retried until it completes, fails permanently or the context ends.
type download struct {
	s    *Store
	ep   Endpoint
	url  string
	want string // expected hex digest, "" when not pinned

	f        *os.File
	metaPath string // description of the partial download
	h        hash.Hash
	written  int64
	synced   int64 // bytes fsynced and recorded in metaPath
	best     int64 // most bytes ever held, to tell progress from a restart
	// unchecked is how much was written since the free space was checked.
	unchecked int64
	// progress, when set, is called each time best grows.
	progress func()
	// resumedFrom is how much a previous, interrupted pull left.
	resumedFrom int64
	complete    bool // every byte received; only verification remains

	validator    string // ETag or Last-Modified of the first response
	total        int64  // full length, -1 unknown
	serverDigest string // hex sha256 the server advertised, "" none
	attempts     int
}

// result of a finished download: the temp file holding the content.
type fetched struct {
	tmp  string
	hex  string
	size int64
	// manifest is set for an OCI pull: the commit records it as giving
	// the disk, with its config (oci.go).
	manifest *manifestRecord
}

// fetch downloads ep into a temp file under tmp/ and verifies it. An
// interrupted transfer that can be resumed is kept for the next pull (see
// partial.go); anything else that fails is deleted.
func (s *Store) fetch(ctx context.Context, ep Endpoint, want string) (*fetched, error) {
	d := &download{s: s, ep: ep, url: ep.URL, want: want, h: sha256.New(), total: -1}
	path := filepath.Join(s.tmpDir(), partialPrefix+partialKey(flightKey(ep.URL, want)))
	if err := d.openPartial(path); err != nil {
		if d.f != nil {
			d.f.Close()
			d.dropPartial()
		}
		return nil, err
	}
	if d.resumedFrom > 0 {
		s.opts.logger.Info("resuming interrupted image download", "url", ep.URL, "have", d.resumedFrom)
	}
	res, err := d.run(ctx)
	if err == nil {
		// The content goes under data/ by name of its hash: it must be
		// on disk before that name exists.
		if serr := d.f.Sync(); serr != nil {
			err = fmt.Errorf("syncing %s: %w", d.f.Name(), serr)
		}
	}
	keep := err != nil && !d.complete && !isPermanent(err) && d.written > 0 && d.validator != ""
	if keep {
		if cerr := d.checkpoint(); cerr != nil {
			keep = false
		}
	}
	if cerr := d.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("writing %s: %w", d.f.Name(), cerr)
	}
	switch {
	case err == nil:
		_ = os.Remove(d.metaPath)
	case keep:
		s.opts.logger.Info("kept interrupted image download for the next pull", "url", ep.URL, "have", d.written)
	default:
		d.dropPartial()
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (d *download) run(ctx context.Context) (*fetched, error) {
	u, err := url.Parse(d.url)
	if err != nil {
		return nil, fmt.Errorf("image URL %q: %w", d.url, err)
	}
	switch u.Scheme {
	case "file":
		err = d.copyFile(ctx, u)
	case "http", "https":
		err = d.retryHTTP(ctx, u)
	default:
		return nil, fmt.Errorf("image URL %q: scheme %q is not supported (accepted: http, https, file)", d.url, u.Scheme)
	}
	if err != nil {
		return nil, err
	}
	d.complete = true
	got := hex.EncodeToString(d.h.Sum(nil))
	if d.want != "" && got != d.want {
		return nil, fmt.Errorf("downloaded %s: content has digest sha256:%s but the name pins sha256:%s", d.url, got, d.want)
	}
	if d.serverDigest != "" && got != d.serverDigest {
		return nil, fmt.Errorf("downloaded %s: content has digest sha256:%s but the server's digest header says sha256:%s", d.url, got, d.serverDigest)
	}
	return &fetched{tmp: d.f.Name(), hex: got, size: d.written}, nil
}

func (d *download) copyFile(ctx context.Context, u *url.URL) error {
	if u.Host != "" && u.Host != "localhost" {
		return fmt.Errorf("image URL %q: file URLs must name a local path (file:///path)", d.url)
	}
	src, err := os.Open(u.Path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", d.url, err)
	}
	defer src.Close()
	_, err = d.copy(ctx, src)
	if err != nil {
		return fmt.Errorf("copying %s: %w", d.url, err)
	}
	return nil
}

// copy appends r to the temp file and the hash, checking ctx between chunks.
func (d *download) copy(ctx context.Context, r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, rerr := r.Read(buf)
		if m > 0 {
			if err := d.checkSize(d.written + int64(m)); err != nil {
				return n, err
			}
			if d.unchecked += int64(m); d.unchecked >= spaceCheckEvery {
				d.unchecked = 0
				if err := d.checkSpace(0); err != nil {
					return n, err
				}
			}
			if _, err := d.f.Write(buf[:m]); err != nil {
				return n, permanent(fmt.Errorf("writing %s: %w", d.f.Name(), err))
			}
			d.h.Write(buf[:m])
			n += int64(m)
			d.written += int64(m)
			if d.written > d.best {
				d.best = d.written
				if d.progress != nil {
					d.progress()
				}
			}
			if d.written-d.synced >= syncEvery {
				if err := d.checkpoint(); err != nil {
					return n, permanent(err)
				}
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

func (d *download) restart() error {
	if _, err := d.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := d.f.Truncate(0); err != nil {
		return err
	}
	d.h.Reset()
	d.written, d.synced = 0, 0
	if d.metaPath != "" {
		_ = os.Remove(d.metaPath)
	}
	return nil
}

// errGaveUp is the cause with which the give-up bound cuts a download.
var errGaveUp = errors.New("no progress within the give-up bound")

func (d *download) retryHTTP(ctx context.Context, u *url.URL) error {
	client, err := d.s.httpClient(d.ep)
	if err != nil {
		return fmt.Errorf("transport %q for %s: %w", d.ep.TransportName, d.url, err)
	}
	defer client.CloseIdleConnections()
	// bounded ends when the callers give up or, with cause errGaveUp, when
	// nothing new arrived for the give-up bound.
	bounded, cut := context.WithCancelCause(ctx)
	defer cut(nil)
	if limit := d.s.opts.giveUpAfter; limit > 0 {
		t := time.AfterFunc(limit, func() { cut(errGaveUp) })
		defer t.Stop()
		d.progress = func() { t.Reset(limit) }
		defer func() { d.progress = nil }()
	}
	b := d.s.opts.backOff()
	b.Reset()
	var last error // of the last attempt that ended by itself
	for {
		d.attempts++
		before := d.best
		err := d.attemptHTTP(bounded, client)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("downloading %s: %w (%v)", d.url, ctx.Err(), err)
		}
		if bounded.Err() != nil {
			return d.gaveUp(last, err)
		}
		if isPermanent(err) {
			return fmt.Errorf("downloading %s: %w", d.url, err)
		}
		last = err
		if d.best > before {
			// The transfer advanced past anything held before: a flaky
			// link that keeps delivering is never given up on.
			b.Reset()
		}
		wait := b.NextBackOff()
		if wait == backoff.Stop {
			return fmt.Errorf("downloading %s: giving up after %d attempts, %d bytes received: %w", d.url, d.attempts, d.written, err)
		}
		d.s.opts.logger.Warn("image download interrupted, retrying", "url", d.url, "attempt", d.attempts, "have", d.written, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-bounded.Done():
			t.Stop()
			if ctx.Err() != nil {
				return fmt.Errorf("downloading %s: %w (%v)", d.url, ctx.Err(), err)
			}
			return d.gaveUp(last, nil)
		case <-t.C:
		}
	}
}

// gaveUp is the error of a download cut by the give-up bound: it says why
// with the error of the last attempt that ended by itself, or, when none
// did, with cutErr, the error of the attempt the bound interrupted. That
// one is not wrapped: it is a context error, and the caller did not cancel
// anything.
func (d *download) gaveUp(last, cutErr error) error {
	msg := fmt.Sprintf("downloading %s: giving up after %v without progress (%d attempts, %d bytes received)",
		d.url, d.s.opts.giveUpAfter, d.attempts, d.written)
	switch {
	case last != nil:
		return fmt.Errorf("%s: %w", msg, last)
	case cutErr != nil:
		return fmt.Errorf("%s: %v", msg, cutErr)
	}
	return errors.New(msg)
}

// attemptHTTP makes one request, resuming from d.written when the server
// can prove (ETag or Last-Modified via If-Range) that the content is the same.
func (d *download) attemptHTTP(ctx context.Context, client *http.Client) error {
	reqCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, d.url, nil)
	if err != nil {
		return permanent(err)
	}
	resuming := d.written > 0 && d.validator != ""
	if d.written > 0 && !resuming {
		if err := d.restart(); err != nil {
			return permanent(fmt.Errorf("rewinding %s: %w", d.f.Name(), err))
		}
	}
	if resuming {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", d.written))
		req.Header.Set("If-Range", d.validator)
	}
	resp, err := client.Do(req)
	if err != nil {
		return classifyTransportError(err)
	}
	defer resp.Body.Close()

	if err := d.accept(resp, resuming); err != nil {
		return err
	}

	// Stall detection: a body that delivers nothing for the timeout is cut
	// so that the retry can resume it.
	stall := d.ep.Transport.timeout(d.s.opts.stallTimeout)
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(min(stall/4+time.Millisecond, time.Second))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if now.UnixNano()-last.Load() > int64(stall) {
					cancel(fmt.Errorf("no data received for %v (transport timeout)", stall))
					return
				}
			}
		}
	}()
	_, err = d.copy(ctx, readerFunc(func(p []byte) (int, error) {
		n, err := resp.Body.Read(p)
		if n > 0 {
			last.Store(time.Now().UnixNano())
		}
		return n, err
	}))
	if err != nil {
		if cause := context.Cause(reqCtx); cause != nil && ctx.Err() == nil {
			err = cause
		}
		return fmt.Errorf("receiving %s after %d bytes: %w", d.url, d.written, err)
	}
	if d.total >= 0 && d.written != d.total {
		return fmt.Errorf("receiving %s: connection closed after %d of %d bytes", d.url, d.written, d.total)
	}
	return nil
}

// accept checks a response before its body is read: the status (a 206 must
// be the range asked for), the encoding, the announced size and whether it
// fits.
func (d *download) accept(resp *http.Response, resuming bool) error {
	switch {
	case resp.StatusCode == http.StatusOK:
		if d.written > 0 {
			// Range ignored or content changed: start over.
			if err := d.restart(); err != nil {
				return permanent(fmt.Errorf("rewinding %s: %w", d.f.Name(), err))
			}
		}
		d.noteRepresentation(resp)
		d.total = resp.ContentLength
	case resp.StatusCode == http.StatusPartialContent && resuming:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != d.written {
			// Not the range asked for: drop what we have and retry whole.
			err := fmt.Errorf("server answered Range bytes=%d- with Content-Range %q", d.written, resp.Header.Get("Content-Range"))
			_ = d.restart()
			d.validator = ""
			return err
		}
		if total >= 0 {
			d.total = total
		}
	default:
		err := fmt.Errorf("GET %s: HTTP %s", d.url, resp.Status)
		if retryableStatus(resp.StatusCode) {
			return err
		}
		return permanent(err)
	}

	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		// Decoding would make sizes and byte ranges those of another
		// stream than the one resumed; storing the encoded bytes would
		// store something else than the image.
		return permanent(fmt.Errorf("GET %s: the server sent the image with Content-Encoding %q, which podvisor does not decode: serve the image file as it is", d.url, ce))
	}
	if d.total > 0 {
		if err := d.checkSize(d.total); err != nil {
			return err
		}
		if err := d.checkSpace(d.total - d.written); err != nil {
			return err
		}
	}
	return nil
}

// freeSpace reports the bytes available to unprivileged writers on the file
// system of path and its size; a variable so tests can pretend a disk is
// full.
var freeSpace = func(path string) (free, size uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// spaceCheckEvery is how many bytes a download writes between checks of
// the free space (a variable for tests).
var spaceCheckEvery int64 = 16 << 20

// maxReserve bounds the space a download leaves free for the node's other
// users (kubelet, logs, VM overlays): 5% of the file system, at most this.
const maxReserve = 1 << 30

// checkSpace fails when the rest of the image (need bytes more, 0 when
// unknown) would leave the store's file system with less than the
// reserve: at once when the length is known, instead of after hours of
// transfer, and as the bytes arrive when it is not, so that a server that
// sends no length cannot fill the disk.
func (d *download) checkSpace(need int64) error {
	free, size, err := freeSpace(d.s.tmpDir())
	if err != nil {
		return nil // unknown: let the writes tell
	}
	reserve := min(size/20, maxReserve)
	if need < 0 {
		need = 0
	}
	if uint64(need)+reserve <= free {
		return nil
	}
	if need == 0 {
		return permanent(fmt.Errorf("%s: stopped after %d bytes: the image store's file system has %d bytes free, and downloads leave %d free for the node",
			d.url, d.written, free, reserve))
	}
	return permanent(fmt.Errorf("%s needs %d more bytes but the image store's file system has %d free (downloads leave %d free for the node)", d.url, need, free, reserve))
}

// DefaultMaxImageSize is the largest image file a download may bring
// unless WithMaxImageSize says otherwise: 64 GiB, above any cloud image
// (they are a few GiB, the disks they boot grow later).
const DefaultMaxImageSize = 64 << 30

// WithMaxImageSize sets the largest image file (bytes) a download may
// bring; the limit holds for the bytes as they arrive, whatever the server
// announced. n <= 0: no limit.
func WithMaxImageSize(n int64) Option {
	return func(o *options) { o.maxSize = n }
}

// checkSize refuses a download that is or would grow larger than the limit.
func (d *download) checkSize(size int64) error {
	if max := d.s.opts.maxSize; max > 0 && size > max {
		return permanent(fmt.Errorf("%s is larger than the maximum image size of %d bytes (the operator can raise it with %s)", d.url, max, FlagMaxSize))
	}
	return nil
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// noteRepresentation records what identifies the content, for If-Range and
// for verification.
func (d *download) noteRepresentation(resp *http.Response) {
	d.validator = ""
	if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		d.validator = et
	} else if lm := resp.Header.Get("Last-Modified"); lm != "" {
		d.validator = lm
	}
	if resp.Header.Get("Accept-Ranges") == "none" {
		d.validator = ""
	}
	d.serverDigest = advertisedSHA256(resp.Header)
}

// advertisedSHA256 reads a SHA-256 from Repr-Digest (RFC 9530) or Digest
// (RFC 3230) headers, returning it as hex, or "".
func advertisedSHA256(h http.Header) string {
	for _, v := range h.Values("Repr-Digest") {
		for _, part := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && strings.EqualFold(k, "sha-256") {
				if b, err := base64.StdEncoding.DecodeString(strings.Trim(val, ":")); err == nil && len(b) == sha256.Size {
					return hex.EncodeToString(b)
				}
			}
		}
	}
	for _, v := range h.Values("Digest") {
		for _, part := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && strings.EqualFold(k, "sha-256") {
				if b, err := base64.StdEncoding.DecodeString(val); err == nil && len(b) == sha256.Size {
					return hex.EncodeToString(b)
				}
			}
		}
	}
	return ""
}

// parseContentRange parses "bytes start-end/total" (total may be "*").
func parseContentRange(v string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	s, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, total, true
}

func retryableStatus(code int) bool {
	return code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests
}

// classifyTransportError makes certificate problems, redirect loops and
// refusals of the download policy permanent: retrying them only delays the error.
func classifyTransportError(err error) error {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var rh tls.RecordHeaderError
	var ra *errRefusedAddress
	switch {
	case errors.Is(err, errTooManyRedirects), errors.Is(err, errRedirectRefused), errors.As(err, &ra),
		errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci):
		return permanent(err)
	case errors.As(err, &rh), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return permanent(fmt.Errorf("%w (is the server speaking plain HTTP on an https URL?)", err))
	case strings.Contains(err.Error(), "remote error: tls:"):
		// The server refused the handshake (e.g. no or wrong client
		// certificate); the transport profile must change first.
		return permanent(err)
	}
	return err
}

// httpClient builds a client for one endpoint's transport profile.
func (s *Store) httpClient(ep Endpoint) (*http.Client, error) {
	t := ep.Transport
	timeout := t.timeout(s.opts.connectTimeout)
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           s.opts.newDialer(&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
		// The bytes stored, counted, checked against free space and
		// resumed by range are those of the file: no transparent gzip.
		DisableCompression: true,
	}
	if t.Proxy != "" {
		pu, err := url.Parse(t.Proxy)
		if err != nil {
			return nil, fmt.Errorf("proxy %q: %w", t.Proxy, err)
		}
		tr.Proxy = http.ProxyURL(pu)
	}
	if t.TLS != nil {
		cfg, err := t.TLS.build()
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		tr.TLSClientConfig = cfg
	}
	maxRedirects := t.maxRedirects()
	var rt http.RoundTripper = tr
	if ep.wrap != nil {
		var err error
		if rt, err = ep.wrap(tr); err != nil {
			return nil, err
		}
	}
	return &http.Client{
		Transport: rt,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			return s.opts.checkRedirect(req, via, maxRedirects)
		},
	}, nil
}
