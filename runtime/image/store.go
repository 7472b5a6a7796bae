// Package image turns image names into local VM disk images: translation of
// names to URLs (Virtlet's config format), a content-addressed store with
// resumable verified downloads, and qcow2 root overlays backed by the images.
//
// Layout of a store directory:
//
//	data/<sha256 hex>     each image content once, read-only
//	links/<name, / as %>  symlink to ../data/<hex>, one per name pulled
//	manifests/<hex>       symlink to ../data/<hex>: the disk an OCI manifest gave
//	configs/<hex>         what is kept of that manifest's config (ociconfig.go)
//	tmp/                  downloads in progress or interrupted (resumable)
package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/podvisor/podvisor/runtime/errdefs"
)

// CRIPrefix is the image name prefix Virtlet manifests use; Pull and the
// lookups accept names with or without it.
const CRIPrefix = "virtlet.cloud/"

// ErrNotFound is returned (wrapped) by Resolve for an image not in the store.
var ErrNotFound = errdefs.Sentinel(errdefs.ErrNotFound, "image not found")

// ErrInUse is returned (wrapped) by Remove for an image a container uses.
var ErrInUse = errdefs.Sentinel(errdefs.ErrFailedPrecondition, "image is in use")

// Translator turns an image name (without CRIPrefix and digest) into an
// endpoint. *Translations implements it.
type Translator interface {
	Translate(ctx context.Context, name string) (Endpoint, error)
}

// Image describes a stored image.
type Image struct {
	Ref         string   // "sha256:<hex>"
	Size        int64    // bytes of the image file
	RepoTags    []string // names pulled without a digest, as given (sorted)
	RepoDigests []string // "<name>@sha256:<hex>" for every name (sorted)
	// OCITags and OCIDigests are the OCI references pulled (ociref.go), as
	// the CRI reports them: repo:tag as given, repo@<manifest digest>.
	OCITags    []string
	OCIDigests []string
	// User is the OCI image config's User ("1002", "www-data:1004"; the
	// CRI's Uid or Username): "" for an image downloaded from a URL, one
	// pulled before podvisor kept it, or one disk pulled under manifests
	// that disagree (ociconfig.go).
	User string
	Path string // the image file, to back overlays
}

// FsUsage is the store's use of its file system.
type FsUsage struct {
	Timestamp  time.Time
	Mountpoint string // the store directory
	UsedBytes  uint64 // allocated blocks, so sparse images count as stored
	InodesUsed uint64
}

type options struct {
	defaultScheme  string
	backOff        func() backoff.BackOff
	connectTimeout time.Duration
	stallTimeout   time.Duration
	partialTTL     time.Duration
	giveUpAfter    time.Duration
	logger         *slog.Logger

	// Download policy (policy.go).
	allowUntranslated bool
	allowPrivate      bool
	allowNets         []netip.Prefix
	insecureRedirects bool
	maxSize           int64

	// OCI pulls (registries.go).
	registries    Registries
	registriesErr error
	checkDisk     func(ctx context.Context, path, format string) error
}

// Option configures a Store.
type Option func(*options)

// WithDefaultScheme sets the scheme put before URLs that have none
// (Virtlet's --image-download-protocol; default "https").
func WithDefaultScheme(scheme string) Option {
	return func(o *options) { o.defaultScheme = scheme }
}

// WithBackOff sets the retry policy of one download; it is Reset whenever a
// retry gets further than any attempt before, and a policy that returns
// backoff.Stop ends the download. Default: exponential from 1 s to 1 min
// between attempts, never stopping by itself (WithGiveUpAfter bounds it).
func WithBackOff(f func() backoff.BackOff) Option {
	return func(o *options) { o.backOff = f }
}

// DefaultGiveUpAfter is how long a download may go without progress before
// it fails, unless WithGiveUpAfter says otherwise.
const DefaultGiveUpAfter = 5 * time.Minute

// WithGiveUpAfter bounds how long one download may go without progress,
// attempts and the waits between them included: when no byte beyond the
// most it ever held arrives for d, the attempt in progress is cut and the
// pull fails (a host that cannot be reached fails after d). A transfer
// that keeps delivering, however slowly or often cut, is never given up
// on. d <= 0 removes the bound (only the back-off policy or the callers
// end the retries). Default: DefaultGiveUpAfter.
func WithGiveUpAfter(d time.Duration) Option {
	return func(o *options) { o.giveUpAfter = d }
}

// WithTimeouts sets the defaults for transports without a timeout: connect
// (dial, TLS handshake, response headers) and stall (no body data).
// Defaults: 30 s and 60 s.
func WithTimeouts(connect, stall time.Duration) Option {
	return func(o *options) { o.connectTimeout, o.stallTimeout = connect, stall }
}

// WithPartialTTL sets how long an interrupted download is kept for a later
// pull to resume (default 24 h).
func WithPartialTTL(d time.Duration) Option {
	return func(o *options) { o.partialTTL = d }
}

// WithLogger sets where retries and cleanups are logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// Store is a content-addressed image store. It is safe for concurrent use.
type Store struct {
	dir  string
	tr   Translator
	opts options

	// mu serialises changes of data/ and links/ so that GC and Remove never
	// see a half-committed pull.
	mu    sync.Mutex
	inUse func() map[string]bool

	flightsMu sync.Mutex
	flights   map[string]*flight
	// heldTmp are names under tmp/ (cleanTmp keys) an OCI pull is using.
	heldTmp map[string]int
}

// NewStore opens (creating if needed) a store in dir. tr may be nil: names
// are then URLs. Leftover partial downloads are deleted.
func NewStore(dir string, tr Translator, opts ...Option) (*Store, error) {
	o := options{
		defaultScheme:  "https",
		connectTimeout: 30 * time.Second,
		stallTimeout:   60 * time.Second,
		partialTTL:     24 * time.Hour,
		giveUpAfter:    DefaultGiveUpAfter,
		maxSize:        DefaultMaxImageSize,
		logger:         slog.New(slog.DiscardHandler),
		backOff: func() backoff.BackOff {
			b := backoff.NewExponentialBackOff()
			b.InitialInterval = time.Second
			b.MaxInterval = time.Minute
			b.MaxElapsedTime = 0 // the give-up bound decides
			return b
		},
	}
	for _, f := range opts {
		f(&o)
	}
	if o.registriesErr != nil {
		return nil, fmt.Errorf("opening image store %s: %w", dir, o.registriesErr)
	}
	if o.checkDisk == nil {
		o.checkDisk = checkQemuImgInfo
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("opening image store %s: %w", dir, err)
	}
	s := &Store{dir: abs, tr: tr, opts: o, flights: map[string]*flight{}, heldTmp: map[string]int{}}
	// Other local users get nothing (issue 18): 0700 directories, also
	// when an older version left them 0755, and 0400 images (QEMU runs as
	// root; docs/images.md).
	for _, d := range []string{s.dir, s.dataDir(), s.linksDir(), s.tmpDir(), s.manifestsDir(), s.configsDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("opening image store %s: %w", dir, err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("opening image store %s: %w", dir, err)
		}
	}
	if err := tightenData(s.dataDir()); err != nil {
		return nil, fmt.Errorf("opening image store %s: %w", dir, err)
	}
	if err := cleanTmp(s.tmpDir(), o.partialTTL, nil); err != nil {
		return nil, fmt.Errorf("opening image store %s: cleaning tmp: %w", dir, err)
	}
	return s, nil
}

// dataMode is the mode of stored images: read-only, for root (podvisor and
// QEMU) only.
const dataMode = 0o400

// tightenData gives images stored by older versions (0444) dataMode.
func tightenData(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.Mode().Perm() == dataMode {
			continue
		}
		if err := os.Chmod(filepath.Join(dir, e.Name()), dataMode); err != nil {
			return err
		}
	}
	return nil
}

// SetInUse installs the hook that says which image refs ("sha256:<hex>")
// containers use; Remove and GC never delete those. The hook is called with
// the store locked: it must not call the Store.
func (s *Store) SetInUse(f func() map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inUse = f
}

func (s *Store) dataDir() string  { return filepath.Join(s.dir, "data") }
func (s *Store) linksDir() string { return filepath.Join(s.dir, "links") }
func (s *Store) tmpDir() string   { return filepath.Join(s.dir, "tmp") }

var hexDigest = regexp.MustCompile(`^[0-9a-f]{64}$`)

// imageName is a validated name: base is what translation sees, pin the
// pinned hex digest or "", link the file name under links/.
type imageName struct {
	full, base, pin, link string
}

// stripTag removes a tag such as ":latest", which kubelet adds to every image
// name without one. VM images are named by URL or translation name, not by
// tag, so Virtlet ignored tags too. A colon before the last '/' (a port, a
// URL scheme) or in a digest is kept.
func stripTag(name string) string {
	if strings.HasPrefix(name, "sha256:") {
		return name // an image ref, not a name
	}
	if i := strings.Index(name, "@"); i >= 0 {
		return stripTag(name[:i]) + name[i:]
	}
	slash := strings.LastIndex(name, "/")
	if c := strings.LastIndex(name, ":"); c > slash {
		return name[:c]
	}
	return name
}

// parseName validates a name as kubelet or a user gives it.
func parseName(name string) (imageName, error) {
	n := stripTag(strings.TrimPrefix(name, CRIPrefix))
	bad := func(why string) (imageName, error) {
		return imageName{}, fmt.Errorf("image name %q: %s", name, why)
	}
	switch {
	case n == "":
		return bad("is empty")
	case strings.ContainsRune(n, 0):
		return bad("contains a NUL byte")
	case strings.HasPrefix(n, "/"):
		return bad("is an absolute path; use a file:///path URL")
	case strings.ContainsRune(n, '%'):
		return bad("contains '%', which the store uses for '/'; use a translation rule for such URLs")
	}
	base, pin := n, ""
	if i := strings.LastIndex(n, "@"); i >= 0 {
		if d, ok := strings.CutPrefix(n[i+1:], "sha256:"); ok {
			if !hexDigest.MatchString(d) {
				return bad("digest must be sha256: followed by 64 lowercase hex digits")
			}
			base, pin = n[:i], d
			if base == "" {
				return bad("has a digest but no name")
			}
		}
	}
	for _, seg := range strings.Split(base, "/") {
		if seg == "." || seg == ".." {
			return bad("contains a '.' or '..' path segment")
		}
	}
	link := strings.ReplaceAll(n, "/", "%")
	if len(link) > 255 {
		return bad(fmt.Sprintf("is %d bytes long, at most 255 accepted", len(link)))
	}
	return imageName{full: n, base: base, pin: pin, link: link}, nil
}

// parseRef recognises "sha256:<hex>" and bare hex refs.
func parseRef(s string) (string, bool) {
	h := strings.TrimPrefix(s, "sha256:")
	if hexDigest.MatchString(h) {
		return h, true
	}
	return "", false
}

// Pull makes the named image present and returns its ref "sha256:<hex>".
// A name already pulled is not downloaded again; a pinned name whose
// content is present needs no download at all. Concurrent pulls of one URL
// share one download, which is cancelled only when every caller gave up.
func (s *Store) Pull(ctx context.Context, name string) (ref string, err error) {
	return s.PullIn(ctx, "", name)
}

// PullIn is Pull for a pod of namespace ("": none, the operator's
// translations only). A name a tenant's VirtletImageMapping translated is
// stored under a name of that namespace alone (scopedLink): Status and
// List do not show it under the name, so kubelet pulls it again, through
// the translations of its own namespace, for another namespace's pod.
func (s *Store) PullIn(ctx context.Context, namespace, name string) (ref string, err error) {
	if h, ok := parseRef(strings.TrimPrefix(name, CRIPrefix)); ok {
		// A bare ref names content, not a place to download it from.
		if s.hasData(h) {
			return "sha256:" + h, nil
		}
		return "", fmt.Errorf("pulling image %q: a bare digest can only name an image already in the store; use <name>@sha256:<hex> to download and verify one", name)
	}
	n, err := parseName(name)
	if err != nil {
		return "", err
	}
	var ep Endpoint
	if namespace != "" {
		// Which names a pull may use depends on what translates it.
		if ep, err = s.translate(ctx, namespace, n.base); err != nil {
			return "", err
		}
		if n.link, err = scopedLink(ep.Namespace, n.link); err != nil {
			return "", fmt.Errorf("image name %q: %w", name, err)
		}
	}
	if ref, ok, err := s.pullFromStore(n); err != nil || ok {
		return ref, err
	}
	if namespace == "" {
		if ep, err = s.translate(ctx, "", n.base); err != nil {
			return "", err
		}
	}
	if !strings.Contains(ep.URL, "://") {
		ep.URL = s.opts.defaultScheme + "://" + ep.URL
	}
	if err := s.checkEndpoint(name, ep); err != nil {
		return "", err
	}
	hex, err := s.shared(ctx, n, ep)
	if err != nil {
		src := ""
		if ep.Source != "" {
			src = " (" + ep.Source + ")"
		}
		return "", fmt.Errorf("pulling image %q%s: %w", name, src, err)
	}
	return "sha256:" + hex, nil
}

// pullFromStore answers a pull without the network when it can.
func (s *Store) pullFromStore(n imageName) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := s.readLink(n.link); ok {
		return "sha256:" + h, true, nil
	}
	if n.pin != "" && s.hasData(n.pin) {
		if err := s.writeLink(n.link, n.pin); err != nil {
			return "", false, err
		}
		return "sha256:" + n.pin, true, nil
	}
	return "", false, nil
}

type flight struct {
	done    chan struct{}
	hex     string
	err     error
	links   map[string]bool
	waiters int
	cancel  context.CancelFunc
}

func (s *Store) shared(ctx context.Context, n imageName, ep Endpoint) (string, error) {
	return s.sharedWork(ctx, flightKey(ep.URL, n.pin), []string{n.link}, func(fctx context.Context) (*fetched, error) {
		res, err := s.fetch(fctx, ep, n.pin)
		if err == nil {
			if verr := checkDownloaded(res); verr != nil {
				err = fmt.Errorf("downloaded %s: %w", ep.URL, verr)
				_ = os.Remove(res.tmp)
			}
		}
		return res, err
	})
}

// sharedWork runs work once for every concurrent caller of key and
// commits its result under the links of every caller; work is cancelled
// only when every caller gave up.
func (s *Store) sharedWork(ctx context.Context, key string, links []string, work func(context.Context) (*fetched, error)) (string, error) {
	s.flightsMu.Lock()
	f := s.flights[key]
	if f == nil {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{done: make(chan struct{}), links: map[string]bool{}, cancel: cancel}
		s.flights[key] = f
		go s.runFlight(fctx, key, f, work)
	}
	for _, l := range links {
		f.links[l] = true
	}
	f.waiters++
	s.flightsMu.Unlock()

	select {
	case <-f.done:
		return f.hex, f.err
	case <-ctx.Done():
		s.flightsMu.Lock()
		f.waiters--
		if f.waiters == 0 {
			f.cancel()
		}
		s.flightsMu.Unlock()
		return "", ctx.Err()
	}
}

func (s *Store) runFlight(ctx context.Context, key string, f *flight, work func(context.Context) (*fetched, error)) {
	defer f.cancel()
	res, err := work(ctx)
	s.mu.Lock()
	s.flightsMu.Lock()
	delete(s.flights, key)
	links := f.links
	s.flightsMu.Unlock()
	if err == nil {
		err = s.commit(res, links)
	}
	s.mu.Unlock()
	if err == nil {
		f.hex = res.hex
	}
	f.err = err
	close(f.done)
}

// checkDownloaded refuses content that cannot be a VM disk: nothing, an
// HTML page (a portal or error page served with 200), or an image VirtualSize
// refuses (backing files, foreign formats).
func checkDownloaded(res *fetched) error {
	if res.size == 0 {
		return errors.New("the content is empty, not a disk image")
	}
	f, err := os.Open(res.tmp)
	if err != nil {
		return err
	}
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	f.Close()
	start := strings.ToLower(strings.TrimLeft(string(head[:n]), " \t\r\n\ufeff"))
	if strings.HasPrefix(start, "<!doctype html") || strings.HasPrefix(start, "<html") {
		return errors.New("the content is an HTML page, not a disk image")
	}
	_, _, err = VirtualSize(res.tmp)
	return err
}

// commit moves a verified download into data/ and links every name to it.
// Called with s.mu held.
func (s *Store) commit(res *fetched, links map[string]bool) error {
	dst := filepath.Join(s.dataDir(), res.hex)
	if s.hasData(res.hex) {
		_ = os.Remove(res.tmp)
	} else {
		if err := os.Chmod(res.tmp, dataMode); err != nil {
			_ = os.Remove(res.tmp)
			return fmt.Errorf("storing image sha256:%s: %w", res.hex, err)
		}
		if err := os.Rename(res.tmp, dst); err != nil {
			_ = os.Remove(res.tmp)
			return fmt.Errorf("storing image sha256:%s: %w", res.hex, err)
		}
	}
	if res.manifest != nil {
		if err := s.commitManifest(res.manifest, res.hex); err != nil {
			return err
		}
	}
	for l := range links {
		if err := s.writeLink(l, res.hex); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) hasData(hex string) bool {
	st, err := os.Stat(filepath.Join(s.dataDir(), hex))
	return err == nil && st.Mode().IsRegular()
}

// readLink returns the hex a link points to, if the link and its data exist.
func (s *Store) readLink(link string) (string, bool) { return s.readLinkIn(s.linksDir(), link) }

// readLinkIn returns the hex dir/name points to, if it and its data exist.
func (s *Store) readLinkIn(dir, name string) (string, bool) {
	t, err := os.Readlink(filepath.Join(dir, name))
	if err != nil {
		return "", false
	}
	h := filepath.Base(t)
	if !hexDigest.MatchString(h) || !s.hasData(h) {
		return "", false
	}
	return h, true
}

// writeLink atomically points links/<link> at data/<hex>.
func (s *Store) writeLink(link, hex string) error {
	tmp := filepath.Join(s.tmpDir(), fmt.Sprintf("link-%d-%s", time.Now().UnixNano(), hex[:12]))
	if err := os.Symlink(filepath.Join("..", "data", hex), tmp); err != nil {
		return fmt.Errorf("linking image %s: %w", link, err)
	}
	if err := os.Rename(tmp, filepath.Join(s.linksDir(), link)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("linking image %s: %w", link, err)
	}
	return nil
}

// linksByHex maps each image's hex to the link names (under links/) that
// point to it.
func (s *Store) linksByHex() (map[string][]string, error) {
	return symlinksByTarget(s.linksDir(), func(string) bool { return true })
}

// symlinksByTarget maps the base name each symlink of dir points to (an
// image's hex) to the names of the links, for the names keep accepts.
func symlinksByTarget(dir string, keep func(name string) bool) (map[string][]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	m := map[string][]string{}
	for _, e := range entries {
		if !keep(e.Name()) {
			continue
		}
		t, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		h := filepath.Base(t)
		m[h] = append(m[h], e.Name())
	}
	return m, nil
}

// describe is the image hex with its names (links) and its manifests
// (manifestsByHex). Called with s.mu held.
func (s *Store) describe(hex string, names, manifests []string) (*Image, error) {
	p := filepath.Join(s.dataDir(), hex)
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading image sha256:%s: %w", hex, err)
	}
	img := &Image{Ref: "sha256:" + hex, Size: st.Size(), Path: p, RepoTags: []string{}, RepoDigests: []string{}, User: s.userOf(manifests)}
	seen := map[string]bool{}
	for _, link := range names {
		if o, ok := ociNameOfLink(link); ok {
			if strings.Contains(o, "@sha256:") {
				img.OCIDigests = append(img.OCIDigests, o)
			} else {
				img.OCITags = append(img.OCITags, o)
			}
			continue
		}
		if strings.HasPrefix(link, "%") {
			continue // a tenant's name (scopedLink), not shown under it
		}
		n := strings.ReplaceAll(link, "%", "/")
		base := n
		if i := strings.LastIndex(n, "@sha256:"); i >= 0 {
			base = n[:i]
		} else {
			img.RepoTags = append(img.RepoTags, n)
		}
		if d := base + "@sha256:" + hex; !seen[d] {
			seen[d] = true
			img.RepoDigests = append(img.RepoDigests, d)
		}
	}
	sort.Strings(img.RepoTags)
	sort.Strings(img.RepoDigests)
	sort.Strings(img.OCITags)
	sort.Strings(img.OCIDigests)
	return img, nil
}

// List returns every stored image, sorted by ref.
func (s *Store) List(ctx context.Context) ([]Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries, err := os.ReadDir(s.dataDir())
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	links, err := s.linksByHex()
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	manifests, err := s.manifestsByHex()
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	var out []Image
	for _, e := range entries {
		if !hexDigest.MatchString(e.Name()) {
			continue
		}
		img, err := s.describe(e.Name(), links[e.Name()], manifests[e.Name()])
		if err != nil {
			return nil, fmt.Errorf("listing images: %w", err)
		}
		if img != nil {
			out = append(out, *img)
		}
	}
	return out, nil
}

// lookup finds the hex of a name or ref; ok is false when absent.
func (s *Store) lookup(nameOrRef string) (string, bool, error) {
	if h, ok := parseRef(strings.TrimPrefix(nameOrRef, CRIPrefix)); ok {
		return h, s.hasData(h), nil
	}
	if h, ok, done := s.lookupOCI(nameOrRef); done {
		return h, ok, nil
	}
	n, err := parseName(nameOrRef)
	if err != nil {
		return "", false, err
	}
	if h, ok := s.readLink(n.link); ok {
		return h, true, nil
	}
	if n.pin != "" && s.hasData(n.pin) {
		return n.pin, true, nil
	}
	return "", false, nil
}

// Status describes an image by name or ref; (nil, nil) when absent, as CRI
// wants.
func (s *Store) Status(ctx context.Context, nameOrRef string) (*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok, err := s.lookup(nameOrRef)
	if err != nil || !ok {
		return nil, err
	}
	links, err := s.linksByHex()
	if err != nil {
		return nil, err
	}
	manifests, err := s.manifestsByHex()
	if err != nil {
		return nil, err
	}
	return s.describe(h, links[h], manifests[h])
}

// Resolve returns the local file and ref of a pulled image, for a VM's
// overlay. A missing image is an error wrapping ErrNotFound.
func (s *Store) Resolve(ctx context.Context, nameOrRef string) (path, ref string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok, err := s.lookup(nameOrRef)
	if err != nil {
		return "", "", err
	}
	if !ok {
		return "", "", fmt.Errorf("resolving image %q: %w (pull it first)", nameOrRef, ErrNotFound)
	}
	return filepath.Join(s.dataDir(), h), "sha256:" + h, nil
}

// Remove deletes an image by ref, or one name of it.
//
// Given a ref ("sha256:<hex>", the image ID kubelet's image GC passes) it
// removes every name and the content; an image a container uses is kept
// whole and the error wraps ErrInUse.
//
// Given a name it removes that name only. The content goes too when no
// other name points to it and no container uses it; otherwise it stays,
// listed under its other names or, with none left, by its ref alone until
// removed by ref.
//
// A missing image or name is not an error.
func (s *Store) Remove(ctx context.Context, nameOrRef string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := parseRef(strings.TrimPrefix(nameOrRef, CRIPrefix)); ok {
		return s.removeRef(nameOrRef, h)
	}
	h, found, err := s.lookup(nameOrRef)
	if err != nil {
		return err
	}
	link, err := s.linkOf(nameOrRef)
	if err != nil {
		return err
	}
	// The link goes even when its content is missing (a dangling link).
	if err := os.Remove(filepath.Join(s.linksDir(), link)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing image %q: %w", nameOrRef, err)
	}
	if !found {
		return nil
	}
	links, err := s.linksByHex()
	if err != nil {
		return fmt.Errorf("removing image %q: %w", nameOrRef, err)
	}
	if len(links[h]) > 0 || s.usedLocked()["sha256:"+h] {
		return nil
	}
	if err := os.Remove(filepath.Join(s.dataDir(), h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing image %q (sha256:%s): %w", nameOrRef, h, err)
	}
	if err := s.forgetManifests(h); err != nil {
		return fmt.Errorf("removing image %q (sha256:%s): %w", nameOrRef, h, err)
	}
	return nil
}

// removeRef removes the content h and every name of it. Called with s.mu
// held.
func (s *Store) removeRef(ref, h string) error {
	if !s.hasData(h) {
		return nil
	}
	if s.usedLocked()["sha256:"+h] {
		return fmt.Errorf("removing image %q: %w by a container", ref, ErrInUse)
	}
	links, err := s.linksByHex()
	if err != nil {
		return fmt.Errorf("removing image %q: %w", ref, err)
	}
	for _, link := range links[h] {
		if err := os.Remove(filepath.Join(s.linksDir(), link)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing image %q: name %s: %w", ref, strings.ReplaceAll(link, "%", "/"), err)
		}
	}
	if err := os.Remove(filepath.Join(s.dataDir(), h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing image %q: %w", ref, err)
	}
	if err := s.forgetManifests(h); err != nil {
		return fmt.Errorf("removing image %q: %w", ref, err)
	}
	return nil
}

func (s *Store) usedLocked() map[string]bool {
	if s.inUse == nil {
		return nil
	}
	return s.inUse()
}

// GC deletes content no name points to and no container uses, links whose
// content is gone, and interrupted downloads older than the partial TTL. It returns the refs it deleted. (Unused images
// that still have names are removed by kubelet's image GC through Remove.)
func (s *Store) GC(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	used := s.usedLocked()
	entries, err := os.ReadDir(s.linksDir())
	if err != nil {
		return nil, fmt.Errorf("collecting images: %w", err)
	}
	linked := map[string]bool{}
	for _, e := range entries {
		if h, ok := s.readLink(e.Name()); ok {
			linked[h] = true
			continue
		}
		if err := os.Remove(filepath.Join(s.linksDir(), e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("collecting dangling link %s: %w", e.Name(), err)
		}
	}
	data, err := os.ReadDir(s.dataDir())
	if err != nil {
		return nil, fmt.Errorf("collecting images: %w", err)
	}
	var removed []string
	for _, e := range data {
		h := e.Name()
		if !hexDigest.MatchString(h) || linked[h] || used["sha256:"+h] {
			continue
		}
		if err := os.Remove(filepath.Join(s.dataDir(), h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("collecting image sha256:%s: %w", h, err)
		}
		removed = append(removed, "sha256:"+h)
		s.opts.logger.Info("collected unreferenced image", "ref", "sha256:"+h)
	}
	if err := s.collectManifests(); err != nil {
		return removed, err
	}
	if err := s.collectConfigs(); err != nil {
		return removed, err
	}
	s.flightsMu.Lock()
	active := map[string]bool{}
	for k := range s.flights {
		active[partialKey(k)] = true
	}
	for k := range s.heldTmp {
		active[k] = true
	}
	s.flightsMu.Unlock()
	if err := cleanTmp(s.tmpDir(), s.opts.partialTTL, active); err != nil {
		return removed, fmt.Errorf("collecting stale downloads: %w", err)
	}
	return removed, nil
}

// FsInfo reports the bytes and inodes the store uses.
func (s *Store) FsInfo(ctx context.Context) (FsUsage, error) {
	u := FsUsage{Timestamp: time.Now(), Mountpoint: s.dir}
	err := filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		u.InodesUsed++
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			u.UsedBytes += uint64(st.Blocks) * 512
		}
		return nil
	})
	if err != nil {
		return FsUsage{}, fmt.Errorf("measuring image store %s: %w", s.dir, err)
	}
	return u, nil
}

// fileID identifies a file's inode, so a replaced file is noticed even when
// its size and time match.
func fileID(fi fs.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	}
	return ""
}

// holdTmp keeps GC from deleting tmp/ names (cleanTmp keys) in use.
func (s *Store) holdTmp(keys ...string) {
	s.flightsMu.Lock()
	defer s.flightsMu.Unlock()
	for _, k := range keys {
		s.heldTmp[k]++
	}
}

// releaseTmp ends holdTmp.
func (s *Store) releaseTmp(keys ...string) {
	s.flightsMu.Lock()
	defer s.flightsMu.Unlock()
	for _, k := range keys {
		if s.heldTmp[k]--; s.heldTmp[k] <= 0 {
			delete(s.heldTmp, k)
		}
	}
}
