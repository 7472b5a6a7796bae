package image

import (
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Registries configures OCI pulls (docs/images.md, "OCI images"): the
// registries reached without TLS verification, the CAs trusted besides the
// system's, and mirrors. The download policy (policy.go) holds for every
// registry connection as for URL downloads.
type Registries struct {
	// Insecure lists registries (host or host:port, as in image names)
	// reached over plain http or over TLS without verifying the
	// certificate. Any other registry is https only, verified.
	Insecure []string `json:"insecure,omitempty"`
	// CAFiles are PEM files of CAs trusted for registries in addition to
	// the system's.
	CAFiles []string `json:"caFiles,omitempty"`
	// Mirrors maps a registry (host[:port], "docker.io" for Docker Hub) to
	// registries tried first, in order, with the same repository; the
	// registry itself is tried last. Names and digests are reported as
	// given, whichever mirror served them.
	Mirrors map[string][]string `json:"mirrors,omitempty"`

	caPEM string // CAFiles read by WithRegistries
}

// WithRegistries sets the registry settings of OCI pulls. It reads the CA
// files; an unreadable one makes NewStore fail.
func WithRegistries(r Registries) Option {
	return func(o *options) {
		var pem strings.Builder
		for _, f := range r.CAFiles {
			data, err := os.ReadFile(f)
			if err != nil {
				o.registriesErr = fmt.Errorf("registry CA file %s: %w", f, err)
				return
			}
			pem.Write(data)
			pem.WriteByte('\n')
		}
		r.caPEM = pem.String()
		if r.caPEM != "" {
			if _, err := parseCertificates([]byte(r.caPEM)); err != nil {
				o.registriesErr = fmt.Errorf("registry CA files %s: %w", strings.Join(r.CAFiles, ", "), err)
				return
			}
		}
		o.registries = r
	}
}

// registryKey is how the settings name a registry.
func registryKey(reg string) string {
	if reg == name.DefaultRegistry {
		return "docker.io"
	}
	return reg
}

func (r Registries) insecure(reg string) bool {
	reg = registryKey(reg)
	for _, h := range r.Insecure {
		if strings.EqualFold(h, reg) {
			return true
		}
	}
	return false
}

// nameOptions are the options to parse ref with: name.Insecure for an
// insecure registry (plain http allowed).
func (r Registries) nameOptions(ref string) []name.Option {
	probe, err := name.ParseReference(ref)
	if err != nil || !r.insecure(probe.Context().RegistryStr()) {
		return nil
	}
	return []name.Option{name.Insecure}
}

// transport is the download profile of registry reg.
func (r Registries) transport(reg string) Transport {
	t := Transport{}
	if r.caPEM != "" || r.insecure(reg) {
		t.TLS = &TLSConfig{Insecure: r.insecure(reg)}
		if r.caPEM != "" {
			t.TLS.Certificates = []TLSCertificate{{Cert: r.caPEM}}
		}
	}
	return t
}

// mirrors returns the registries to try for reg, reg last.
func (r Registries) mirrors(reg string) []string {
	return append(append([]string(nil), r.Mirrors[registryKey(reg)]...), reg)
}

// httpsOnly refuses plain http to a registry not listed insecure:
// go-containerregistry falls back to http for loopback and private
// registries, which would let anyone on the path downgrade the pull.
type httpsOnly struct {
	next http.RoundTripper
	regs Registries
}

func (t httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !t.regs.insecure(req.URL.Host) {
		return nil, permanent(fmt.Errorf("refusing plain http to registry %s: it is not in the insecure registries (%s)", req.URL.Host, FlagInsecureRegistries))
	}
	return t.next.RoundTrip(req)
}
