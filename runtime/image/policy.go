package image

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// What a download may reach. An image name comes from a pod author, and
// the node that downloads it sits inside the cluster network, next to the
// API server, the cloud's metadata service and the node's own loopback
// services: without limits a name or a redirect makes the node fetch any
// of those and store the answer as an image (request forgery). Every check
// of where a download may go is in this file.

// Origin says who wrote the URL of an endpoint, which decides what it may
// name.
type Origin int

const (
	// OriginUntranslated: no translation matched; the image name itself
	// (the pod author's) is the URL.
	OriginUntranslated Origin = iota
	// OriginOperator: a file of the operator's translations directory.
	OriginOperator
	// OriginObject: a VirtletImageMapping object, which any API user
	// allowed to create one wrote.
	OriginObject
)

func (o Origin) String() string {
	switch o {
	case OriginOperator:
		return "the operator's translation files"
	case OriginObject:
		return "a VirtletImageMapping object"
	}
	return "an untranslated image name"
}

// Flag names the refusals point the operator to (cmd/podvisor).
const (
	FlagAllowUntranslated  = "--image-allow-untranslated"
	FlagAllowNetworks      = "--image-download-allow-networks"
	FlagAllowPrivate       = "--image-download-allow-private"
	FlagAllowRedirects     = "--image-download-allow-insecure-redirects"
	FlagMaxSize            = "--image-max-size"
	FlagInsecureRegistries = "--image-insecure-registries"
)

// WithAllowUntranslated lets names that no translation matches be
// downloaded as URLs, as Virtlet did. Default: refused, so that only URLs
// the operator (or a VirtletImageMapping) wrote are ever fetched.
func WithAllowUntranslated(allow bool) Option {
	return func(o *options) { o.allowUntranslated = allow }
}

// WithAllowNetworks lets downloads connect to addresses in these networks
// even when they are loopback, link-local, private or otherwise refused
// (a local mirror, a test server).
func WithAllowNetworks(nets []netip.Prefix) Option {
	return func(o *options) { o.allowNets = append([]netip.Prefix(nil), nets...) }
}

// WithAllowPrivate lets downloads connect to private addresses (RFC 1918,
// RFC 6598 shared space, IPv6 unique local). Default: refused, as the
// cluster's services live there; WithAllowNetworks opens single networks.
func WithAllowPrivate(allow bool) Option {
	return func(o *options) { o.allowPrivate = allow }
}

// WithInsecureRedirects lets downloads follow redirects to plain http on
// another host or port. Default: a redirect must go to https, or stay on
// the scheme, host and port of the request it answers. Redirects to any
// other scheme (file, ftp...) are refused whatever this says.
func WithInsecureRedirects(allow bool) Option {
	return func(o *options) { o.insecureRedirects = allow }
}

// checkEndpoint decides whether the URL of ep may be downloaded at all,
// given who wrote it: file URLs only from the operator's files; untranslated
// names only when the operator allowed them.
func (s *Store) checkEndpoint(name string, ep Endpoint) error {
	if ep.Origin == OriginUntranslated && !s.opts.allowUntranslated {
		return fmt.Errorf("pulling image %q: no image translation matches it (translation files of --image-translations-dir, VirtletImageMappings), "+
			"and podvisor downloads untranslated names only when started with %s: add a translation for it", name, FlagAllowUntranslated)
	}
	u, err := url.Parse(ep.URL)
	if err != nil {
		return fmt.Errorf("pulling image %q: URL %q: %w", name, ep.URL, err)
	}
	if strings.EqualFold(u.Scheme, "file") && ep.Origin != OriginOperator {
		return fmt.Errorf("pulling image %q: file URL %q comes from %s (%s); file URLs are accepted only from the operator's translation files",
			name, ep.URL, ep.Origin, ep.Source)
	}
	return nil
}

// errRefusedAddress is the error of a connection the address policy
// refused; a retry cannot change it.
type errRefusedAddress struct {
	addr netip.Addr
	kind string
}

func (e *errRefusedAddress) Error() string {
	hint := FlagAllowNetworks + " " + netip.PrefixFrom(e.addr, e.addr.BitLen()).String()
	if e.kind == "private" {
		hint = FlagAllowPrivate + " or " + hint
	}
	return fmt.Sprintf("refusing to download from %s: a %s address (the operator can allow it with %s)", e.addr, e.kind, hint)
}

var (
	sharedSpace = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	broadcast   = netip.MustParseAddr("255.255.255.255")
)

// addrKind says why addr is refused by default, or "" when it is not.
func addrKind(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		return "loopback"
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return "link-local"
	case a.IsUnspecified(), thisNetwork.Contains(a):
		return "unspecified"
	case a.IsMulticast(), a.IsInterfaceLocalMulticast(), a == broadcast:
		return "multicast or broadcast"
	case a.IsPrivate(), sharedSpace.Contains(a):
		return "private"
	}
	return ""
}

// checkAddr applies the address policy to one address about to be
// connected to.
func (o *options) checkAddr(a netip.Addr) error {
	a = a.Unmap()
	for _, p := range o.allowNets {
		if p.Contains(a) {
			return nil
		}
	}
	kind := addrKind(a)
	if kind == "" || (kind == "private" && o.allowPrivate) {
		return nil
	}
	return &errRefusedAddress{addr: a, kind: kind}
}

// dialControl checks the address the dialer is about to connect to, after
// name resolution: a host name that resolves (or re-resolves, DNS
// rebinding) to a refused address is caught as well as a literal one.
func (o *options) dialControl(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("refusing to download from %q: not an IP address and port", address)
	}
	return o.checkAddr(ap.Addr())
}

// errRedirectRefused is the error of a redirect the policy refused.
var errRedirectRefused = errors.New("redirect refused")

// checkRedirect applies the redirect policy to req, redirected from the
// requests in via (via[0] is the original).
func (o *options) checkRedirect(req *http.Request, via []*http.Request, maxRedirects int) error {
	if len(via) > maxRedirects {
		return fmt.Errorf("%w: stopped after %d (transport maxRedirects)", errTooManyRedirects, maxRedirects)
	}
	from, to := via[len(via)-1].URL, req.URL
	switch scheme := strings.ToLower(to.Scheme); {
	case scheme != "http" && scheme != "https":
		return fmt.Errorf("%w: %s redirected to %s: only http and https redirects are followed", errRedirectRefused, from.Redacted(), to.Redacted())
	case scheme == "https", o.insecureRedirects, sameOrigin(via[0].URL, to):
		return nil
	}
	return fmt.Errorf("%w: %s redirected to %s: plain http redirects must stay on the host and port of %s (or the operator allows them with %s)",
		errRedirectRefused, from.Redacted(), to.Redacted(), via[0].URL.Redacted(), FlagAllowRedirects)
}

// sameOrigin reports whether a and b have the same scheme, host and port
// (default ports made explicit).
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// newDialer is the dialer of every download connection.
func (o *options) newDialer(d *net.Dialer) *net.Dialer {
	d.Control = o.dialControl
	return d
}
