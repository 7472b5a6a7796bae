package image

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// OCI pulls: a KubeVirt containerDisk (one disk file under /disk/, qcow2
// or raw) from any registry. The manifest is read with
// go-containerregistry; each layer blob is downloaded by the store's own
// resumable, verified download (download.go) through the registry's
// authenticating transport, so that the address policy, the size limit
// and resumption hold as for URL downloads. The disk is extracted once
// per manifest digest (manifests/<hex> links to its data, configs/<hex>
// keeps what the CRI reports of its config: ociconfig.go) and every name
// that reaches that digest links to it.

// Auth is a pull's registry credential, the CRI's AuthConfig.
type Auth struct {
	Username, Password string
	// Auth is base64 of "username:password".
	Auth          string
	IdentityToken string
	RegistryToken string
}

func (a *Auth) authenticator() authn.Authenticator {
	if a == nil || *a == (Auth{}) {
		return authn.Anonymous
	}
	return authn.FromConfig(authn.AuthConfig{
		Username: a.Username, Password: a.Password, Auth: a.Auth,
		IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken,
	})
}

func (s *Store) manifestsDir() string { return filepath.Join(s.dir, "manifests") }

// readManifest returns the data hex the disk of manifest digest mhex was
// extracted to, if that data is present.
func (s *Store) readManifest(mhex string) (string, bool) { return s.readLinkIn(s.manifestsDir(), mhex) }

// registryClient is how one pull reaches one registry.
type registryClient struct {
	s        *Store
	reg      name.Registry
	repoName name.Repository
	auth     authn.Authenticator
}

// baseTransport is the download policy's transport for the registry, with
// plain http refused unless the registry is insecure.
func (c registryClient) baseTransport() (http.RoundTripper, error) {
	client, err := c.s.httpClient(Endpoint{Transport: c.s.opts.registries.transport(c.reg.RegistryStr())})
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", c.reg.RegistryStr(), err)
	}
	return httpsOnly{next: client.Transport, regs: c.s.opts.registries}, nil
}

func (c registryClient) options(ctx context.Context) ([]remote.Option, error) {
	base, err := c.baseTransport()
	if err != nil {
		return nil, err
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(base),
		remote.WithAuth(c.auth),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
	}, nil
}

// PullImage is the CRI's PullImage: an OCI reference is pulled from its
// registry with auth; any other name goes through translation (PullIn).
func (s *Store) PullImage(ctx context.Context, namespace, nameOrRef string, auth *Auth) (string, error) {
	if !isOCIName(nameOrRef) {
		return s.PullIn(ctx, namespace, nameOrRef)
	}
	ref, err := s.pullOCI(ctx, nameOrRef, auth)
	if err != nil {
		return "", fmt.Errorf("pulling image %q: %w", nameOrRef, err)
	}
	return ref, nil
}

func (s *Store) pullOCI(ctx context.Context, given string, auth *Auth) (string, error) {
	n, err := parseOCIName(given, s.opts.registries.nameOptions(given)...)
	if err != nil {
		return "", err
	}
	if n.digest != "" {
		// By digest, content present: nothing to ask the registry.
		if ref, ok, err := s.linkManifest(n, n.digest); err != nil || ok {
			return ref, err
		}
	}
	desc, c, err := s.resolveOCI(ctx, n, auth)
	if err != nil {
		return "", err
	}
	digest := desc.Digest.String()
	if ref, ok, err := s.linkManifest(n, digest); err != nil || ok {
		return ref, err
	}
	img, err := desc.Image()
	if err != nil {
		return "", fmt.Errorf("reading the image manifest of %s: %w", digest, err)
	}
	links, err := ociLinks(n, digest)
	if err != nil {
		return "", err
	}
	mhex := strings.TrimPrefix(digest, "sha256:")
	hex, err := s.sharedWork(ctx, "oci\x00"+digest, links, func(fctx context.Context) (*fetched, error) {
		config, err := s.fetchConfig(fctx, c, img)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		res, err := s.extractDisk(fctx, c, n, img)
		if err != nil {
			return nil, err
		}
		res.manifest = &manifestRecord{hex: mhex, config: config}
		return res, nil
	})
	if err != nil {
		return "", err
	}
	return "sha256:" + hex, nil
}

// manifestRecord is what the commit of an OCI pull records besides the
// disk: the manifest digest (hex) that gave it and its config.
type manifestRecord struct {
	hex    string
	config configRecord
}

// commitManifest records m as giving the disk hex: its config first (a
// config record without its manifest is collected; a manifest without
// its record would report no user). Called with s.mu held.
func (s *Store) commitManifest(m *manifestRecord, hex string) error {
	if err := s.writeConfigRecord(m.hex, m.config); err != nil {
		return err
	}
	return s.writeManifestLink(m.hex, hex)
}

// ociLinks are the links a pull of n that reached manifest digest writes:
// the name as given and repo@digest.
func ociLinks(n ociName, digest string) ([]string, error) {
	var out []string
	for _, r := range []string{n.String(), n.digestName(digest)} {
		l, err := ociLink(r)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// linkManifest links n's names to the disk of digest when it was
// extracted before.
func (s *Store) linkManifest(n ociName, digest string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.readManifest(strings.TrimPrefix(digest, "sha256:"))
	if !ok {
		return "", false, nil
	}
	links, err := ociLinks(n, digest)
	if err != nil {
		return "", false, err
	}
	for _, l := range links {
		if err := s.writeLink(l, h); err != nil {
			return "", false, err
		}
	}
	return "sha256:" + h, true, nil
}

// writeManifestLink atomically points manifests/<mhex> at data/<hex>.
// Called with s.mu held.
func (s *Store) writeManifestLink(mhex, hex string) error {
	tmp := filepath.Join(s.tmpDir(), "manifest-"+mhex[:12]+"-"+hex[:12])
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Join("..", "data", hex), tmp); err != nil {
		return fmt.Errorf("recording manifest sha256:%s: %w", mhex, err)
	}
	if err := os.Rename(tmp, filepath.Join(s.manifestsDir(), mhex)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("recording manifest sha256:%s: %w", mhex, err)
	}
	return nil
}

// resolveOCI asks the registry (its mirrors first) what n names. A digest
// that differs from the one n pins is refused (go-containerregistry checks
// the manifest it fetched by digest against it).
func (s *Store) resolveOCI(ctx context.Context, n ociName, auth *Auth) (*remote.Descriptor, registryClient, error) {
	var errs []error
	for _, reg := range s.opts.registries.mirrors(n.ref.Context().RegistryStr()) {
		ref, err := onRegistry(n.ref, reg, s.opts.registries)
		if err != nil {
			return nil, registryClient{}, err
		}
		c := registryClient{s: s, reg: ref.Context().Registry, auth: auth.authenticator()}
		opts, err := c.options(ctx)
		if err != nil {
			return nil, registryClient{}, err
		}
		desc, err := remote.Get(ref, opts...)
		if err == nil {
			if n.digest != "" && desc.Digest.String() != n.digest {
				return nil, c, fmt.Errorf("registry %s: manifest has digest %s, the name pins %s", reg, desc.Digest, n.digest)
			}
			return desc, c.withRepo(ref.Context()), nil
		}
		errs = append(errs, fmt.Errorf("registry %s: %w", reg, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, registryClient{}, errors.Join(errs...)
}

// onRegistry is ref with its registry replaced by reg (a mirror).
func onRegistry(ref name.Reference, reg string, regs Registries) (name.Reference, error) {
	if reg == ref.Context().RegistryStr() {
		return ref, nil
	}
	var opts []name.Option
	if regs.insecure(reg) {
		opts = append(opts, name.Insecure)
	}
	repo := reg + "/" + ref.Context().RepositoryStr()
	s := repo + ":" + ref.Identifier()
	if strings.HasPrefix(ref.Identifier(), "sha256:") {
		s = repo + "@" + ref.Identifier()
	}
	r, err := name.ParseReference(s, opts...)
	if err != nil {
		return nil, fmt.Errorf("mirror %s of %s: %w", reg, ref.Context().RegistryStr(), err)
	}
	return r, nil
}

func (c registryClient) withRepo(r name.Repository) registryClient {
	c.reg = r.Registry
	c.repoName = r
	return c
}

// blobEndpoint is the download of blob digest of c's repository through
// the registry's authenticating transport.
func (c registryClient) blobEndpoint(ctx context.Context, digest string) Endpoint {
	scheme := "https"
	if c.s.opts.registries.insecure(c.reg.RegistryStr()) {
		scheme = "http"
	}
	return Endpoint{
		URL:           fmt.Sprintf("%s://%s/v2/%s/blobs/%s", scheme, c.reg.RegistryStr(), c.repoName.RepositoryStr(), digest),
		Transport:     c.s.opts.registries.transport(c.reg.RegistryStr()),
		TransportName: "registry " + c.reg.RegistryStr(),
		Source:        "registry " + c.reg.RegistryStr(),
		wrap: func(base http.RoundTripper) (http.RoundTripper, error) {
			return transport.NewWithContext(ctx, c.reg, c.auth, httpsOnly{next: base, regs: c.s.opts.registries},
				[]string{c.repoName.Scope(transport.PullScope)})
		},
	}
}

// collectManifests deletes the manifest records whose disk is gone.
// Called with s.mu held.
func (s *Store) collectManifests() error {
	entries, err := os.ReadDir(s.manifestsDir())
	if err != nil {
		return fmt.Errorf("collecting manifests: %w", err)
	}
	for _, e := range entries {
		if _, ok := s.readManifest(e.Name()); ok {
			continue
		}
		if err := os.Remove(filepath.Join(s.manifestsDir(), e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("collecting manifest %s: %w", e.Name(), err)
		}
	}
	return nil
}
