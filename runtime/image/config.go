package image

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Config is one image translation config, in Virtlet's format: a file of the
// virtlet-image-translations ConfigMap or the spec of a VirtletImageMapping.
type Config struct {
	// Prefix, when set, makes the config apply only to names "Prefix/rest";
	// rules then match "rest".
	Prefix string `json:"prefix,omitempty"`
	// Rules are tried in order within their kind (exact names, then regexps).
	Rules []Rule `json:"translations,omitempty"`
	// Transports are the transport profiles the rules may name.
	Transports map[string]Transport `json:"transports,omitempty"`
}

// Rule maps a name (exactly) or every name matching a regexp to a URL.
type Rule struct {
	Name      string `json:"name,omitempty"`
	Regexp    string `json:"regexp,omitempty"`
	URL       string `json:"url,omitempty"`
	Transport string `json:"transport,omitempty"`
}

// Transport is a transport profile: how to download from an endpoint.
type Transport struct {
	// TimeoutMS limits, in milliseconds, connecting and waiting for response
	// headers, and any stall of the body. <= 0: the store's defaults.
	TimeoutMS int `json:"timeout,omitempty"`
	// MaxRedirects is how many redirects are followed; nil means
	// DefaultMaxRedirects.
	MaxRedirects *int `json:"maxRedirects,omitempty"`
	// Proxy is an HTTP(S) proxy URL; empty means the environment's.
	Proxy string     `json:"proxy,omitempty"`
	TLS   *TLSConfig `json:"tls,omitempty"`
}

// TLSConfig is a transport's TLS settings.
type TLSConfig struct {
	// Certificates without a key are trusted CAs (added to the system's);
	// with a key they are the client certificate.
	Certificates []TLSCertificate `json:"certificates,omitempty"`
	ServerName   string           `json:"serverName,omitempty"`
	Insecure     bool             `json:"insecure,omitempty"`
}

// TLSCertificate holds PEM data: one or more certificates and an optional key.
type TLSCertificate struct {
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
}

// DefaultMaxRedirects is the number of redirects followed when a transport
// does not set maxRedirects (Go's and so Virtlet's default).
const DefaultMaxRedirects = 10

// ParseConfig decodes and validates a translation config (YAML or JSON).
// source names it in errors. Unknown fields are refused so that a typo does
// not silently disable a rule.
func ParseConfig(source string, data []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("image translation config %s: %w", source, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("image translation config %s: %w", source, err)
	}
	return &c, nil
}

// Validate checks every rule and transport and says which one is wrong.
func (c *Config) Validate() error {
	if strings.HasPrefix(c.Prefix, "/") || strings.HasSuffix(c.Prefix, "/") {
		return fmt.Errorf("prefix %q: must not start or end with '/'", c.Prefix)
	}
	for i, r := range c.Rules {
		switch {
		case r.Name == "" && r.Regexp == "":
			return fmt.Errorf("translations[%d]: needs name or regexp", i)
		case r.Name != "" && r.Regexp != "":
			return fmt.Errorf("translations[%d]: has both name %q and regexp %q, accepted: one of them", i, r.Name, r.Regexp)
		case r.URL == "":
			return fmt.Errorf("translations[%d]: url is empty", i)
		}
		if r.Regexp != "" {
			if _, err := regexp.Compile(r.Regexp); err != nil {
				return fmt.Errorf("translations[%d]: regexp %q: %w", i, r.Regexp, err)
			}
		}
		if r.Transport != "" {
			if _, ok := c.Transports[r.Transport]; !ok {
				return fmt.Errorf("translations[%d]: transport %q is not defined in transports", i, r.Transport)
			}
		}
	}
	for name, t := range c.Transports {
		if t.MaxRedirects != nil && *t.MaxRedirects < 0 {
			return fmt.Errorf("transports.%s.maxRedirects: %d is negative, accepted: 0 or more", name, *t.MaxRedirects)
		}
		if t.Proxy != "" {
			u, err := url.Parse(t.Proxy)
			if err != nil || u.Scheme == "" || u.Host == "" {
				return fmt.Errorf("transports.%s.proxy: %q is not a URL like http://host:port", name, t.Proxy)
			}
		}
		if t.TLS != nil {
			if _, err := t.TLS.build(); err != nil {
				return fmt.Errorf("transports.%s.tls: %w", name, err)
			}
		}
	}
	return nil
}

// build turns the PEM data into a tls.Config. Following Virtlet, certificates
// with a key are client certificates and those without are trusted CAs.
func (t *TLSConfig) build() (*tls.Config, error) {
	cfg := &tls.Config{
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.Insecure, //nolint:gosec // explicitly requested by the config
		MinVersion:         tls.VersionTLS12,
	}
	for i, c := range t.Certificates {
		if strings.TrimSpace(c.Key) != "" {
			pair, err := tls.X509KeyPair([]byte(c.Cert), []byte(c.Key))
			if err != nil {
				return nil, fmt.Errorf("certificates[%d]: client certificate and key: %w", i, err)
			}
			cfg.Certificates = append(cfg.Certificates, pair)
			continue
		}
		certs, err := parseCertificates([]byte(c.Cert))
		if err != nil {
			return nil, fmt.Errorf("certificates[%d].cert: %w", i, err)
		}
		if cfg.RootCAs == nil {
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			cfg.RootCAs = pool
		}
		for _, crt := range certs {
			cfg.RootCAs.AddCert(crt)
		}
	}
	return cfg, nil
}

func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return out, nil
}

// Endpoint is where a name is downloaded from and how.
type Endpoint struct {
	URL string
	// Transport is the profile the rule named (zero value: defaults).
	Transport Transport
	// TransportName and Source say which profile and config were used, for
	// messages.
	TransportName string
	Source        string
	// Origin is who wrote the URL; it decides what the URL may name
	// (policy.go). The zero value, OriginUntranslated, is the least
	// trusted.
	Origin Origin
	// Namespace is set when a tenant's VirtletImageMapping (of that
	// namespace, not the operator's) gave the endpoint: the pulled name is
	// then that namespace's alone (Store.PullIn).
	Namespace string
	// refused says why the rule that matched may not be used (file:// or
	// insecure TLS from a VirtletImageMapping object).
	refused error
	// wrap, when set, wraps the download policy's transport (a registry's
	// authentication, oci.go).
	wrap func(http.RoundTripper) (http.RoundTripper, error)
}

// timeout returns the transport's timeout, or def when unset.
func (t Transport) timeout(def time.Duration) time.Duration {
	if t.TimeoutMS > 0 {
		return time.Duration(t.TimeoutMS) * time.Millisecond
	}
	return def
}

func (t Transport) maxRedirects() int {
	if t.MaxRedirects != nil {
		return *t.MaxRedirects
	}
	return DefaultMaxRedirects
}
