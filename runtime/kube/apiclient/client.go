package apiclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Timeouts for a node agent talking to its cluster's API server.
const (
	dialTimeout           = 10 * time.Second
	tlsHandshakeTimeout   = 10 * time.Second
	responseHeaderTimeout = 30 * time.Second
	// requestTimeout bounds a whole GET (and a list) unless ctx ends first.
	// Watches have none: they last as long as the server keeps them.
	requestTimeout = 30 * time.Second
	// http2PingAfter sends an HTTP/2 ping on a connection that has been
	// silent that long, so a dead connection under a quiet watch is found.
	http2PingAfter = 30 * time.Second
)

// ErrNotFound is matched (errors.Is) by the error of a GET answered 404.
var ErrNotFound = errors.New("not found")

// StatusError is a non-2xx answer of the API server (or an ERROR event of
// a watch), with the API's Status message when there was one.
type StatusError struct {
	Code    int    // HTTP status code
	Reason  string // Status reason, e.g. "Forbidden"; may be empty
	Message string // Status message, or the start of a body that was no Status
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("%d %s", e.Code, http.StatusText(e.Code))
	if e.Reason != "" && e.Reason != strings.ReplaceAll(http.StatusText(e.Code), " ", "") {
		s += " (" + e.Reason + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is makes errors.Is(err, ErrNotFound) true for a 404.
func (e *StatusError) Is(target error) bool {
	return target == ErrNotFound && e.Code == http.StatusNotFound
}

// status is the API's metav1.Status, as far as errors need it.
type status struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
	Code    int    `json:"code"`
}

// Client makes GET requests to one API server. It is safe for concurrent
// use.
type Client struct {
	base      *url.URL
	http      *http.Client
	userAgent string
	token     *tokenSource // nil: no bearer token
	username  string
	password  string
}

// New returns a Client for cfg. It reads the token file, and the client
// certificate files, once now so that a bad configuration fails here.
func New(cfg *Config) (*Client, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes API client for %s: %w", cfg.Server, err)
	}
	return c, nil
}

func newClient(cfg *Config) (*Client, error) {
	base, err := url.Parse(cfg.Server)
	if err != nil || base.Scheme != "https" && base.Scheme != "http" || base.Host == "" {
		return nil, fmt.Errorf("server %q is not an http(s)://host[:port] URL", cfg.Server)
	}
	base.Path = strings.TrimSuffix(base.Path, "/")
	base.RawPath = ""
	if base.RawQuery != "" || base.Fragment != "" {
		return nil, fmt.Errorf("server %q has a query or fragment", cfg.Server)
	}

	tlsCfg, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base:      base,
		userAgent: cfg.UserAgent,
		username:  cfg.Username,
		password:  cfg.Password,
	}
	if c.userAgent == "" {
		c.userAgent = "podvisor"
	}
	if (cfg.Token != "" || cfg.TokenFile != "") && (cfg.Username != "" || cfg.Password != "") {
		return nil, errors.New("a bearer token and username/password are both set; only one is allowed")
	}
	if cfg.Token != "" || cfg.TokenFile != "" {
		c.token = &tokenSource{static: cfg.Token, path: cfg.TokenFile, now: time.Now}
		if _, err := c.token.get(); err != nil {
			return nil, err
		}
	}
	c.http = &http.Client{
		Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			DialContext: (&net.Dialer{
				Timeout:   dialTimeout,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			TLSClientConfig:       tlsCfg,
			TLSHandshakeTimeout:   tlsHandshakeTimeout,
			ResponseHeaderTimeout: responseHeaderTimeout,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
			HTTP2:                 &http.HTTP2Config{SendPingTimeout: http2PingAfter},
		},
		// Following redirects would send credentials elsewhere: the API
		// server does not redirect GETs, so a redirect is an error.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

func tlsConfig(cfg *Config) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         cfg.TLSServerName,
		InsecureSkipVerify: cfg.InsecureSkipTLSVerify,
	}
	if len(cfg.CAData) > 0 {
		if cfg.InsecureSkipTLSVerify {
			return nil, errors.New("a CA and insecure-skip-tls-verify are both set; only one is allowed")
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.CAData) {
			return nil, errors.New("CA data holds no PEM certificate")
		}
		tc.RootCAs = pool
	}
	dataSet := len(cfg.ClientCertData) > 0 || len(cfg.ClientKeyData) > 0
	filesSet := cfg.ClientCertFile != "" || cfg.ClientKeyFile != ""
	switch {
	case dataSet && filesSet:
		return nil, errors.New("client certificate: give the certificate and key both as data or both as files")
	case dataSet:
		if len(cfg.ClientCertData) == 0 || len(cfg.ClientKeyData) == 0 {
			return nil, errors.New("client certificate: both a certificate and a key are needed")
		}
		cert, err := tls.X509KeyPair(cfg.ClientCertData, cfg.ClientKeyData)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	case filesSet:
		if cfg.ClientCertFile == "" || cfg.ClientKeyFile == "" {
			return nil, errors.New("client certificate: both a certificate and a key file are needed")
		}
		cf := &certFiles{certPath: cfg.ClientCertFile, keyPath: cfg.ClientKeyFile}
		if _, err := cf.get(); err != nil {
			return nil, err
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cf.get() }
	}
	return tc, nil
}

// url returns the URL of path (which may carry a query) on the server,
// with query added.
func (c *Client) url(path string, query url.Values) (*url.URL, error) {
	ref, err := url.Parse(path)
	if err != nil {
		return nil, err
	}
	if ref.Scheme != "" || ref.Host != "" || !strings.HasPrefix(ref.Path, "/") {
		return nil, fmt.Errorf("%q is not an absolute path", path)
	}
	u := *c.base
	u.Path = c.base.Path + ref.Path
	q := ref.Query()
	for k, vs := range query {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	return &u, nil
}

// get sends a GET and returns the response if its status is 2xx; the
// caller closes its body. Any other status is a *StatusError.
func (c *Client) get(ctx context.Context, u *url.URL) (*http.Response, error) {
	return c.do(ctx, http.MethodGet, u, nil, "")
}

// do sends one request (body of type contentType, if any) with the
// client's credentials and returns the response if its status is 2xx; the
// caller closes its body. Any other status is a *StatusError.
func (c *Client) do(ctx context.Context, method string, u *url.URL, body []byte, contentType string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != nil {
		tok, err := c.token.get()
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	} else if c.username != "" || c.password != "" {
		req.SetBasicAuth(c.username, c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the caller names the URL
		}
		return nil, err
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, statusError(resp)
}

// statusError makes the error of a non-2xx response from its Status body.
func statusError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &StatusError{Code: resp.StatusCode}
	var st status
	if json.Unmarshal(body, &st) == nil && st.Kind == "Status" {
		e.Reason, e.Message = st.Reason, st.Message
		return e
	}
	msg := string(bytes.TrimSpace(body))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	e.Message = strings.Join(strings.Fields(msg), " ")
	return e
}

// Get decodes the JSON object at path (e.g.
// /api/v1/namespaces/NS/configmaps/NAME) into into. A 404 matches
// ErrNotFound; other non-2xx answers are a *StatusError. It gives up after
// 30 s if ctx has not ended before.
func (c *Client) Get(ctx context.Context, path string, into any) error {
	u, err := c.url(path, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := c.get(ctx, u)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		return fmt.Errorf("GET %s: decoding the response: %w", u, err)
	}
	return nil
}

// MergePatch applies patch, marshalled to JSON, as a JSON merge patch
// (RFC 7386, application/merge-patch+json) to the object at path, e.g.
// /api/v1/nodes/NAME, and decodes the object the server returns into into
// (nil: discarded). Errors are those of Get. It gives up after 30 s if ctx
// has not ended before.
func (c *Client) MergePatch(ctx context.Context, path string, patch, into any) error {
	u, err := c.url(path, nil)
	if err != nil {
		return fmt.Errorf("PATCH %s: %w", path, err)
	}
	body, err := json.Marshal(patch)
	if err != nil {
		return fmt.Errorf("PATCH %s: encoding the patch: %w", u, err)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := c.do(ctx, http.MethodPatch, u, body, "application/merge-patch+json")
	if err != nil {
		return fmt.Errorf("PATCH %s: %w", u, err)
	}
	defer resp.Body.Close()
	if into == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		return fmt.Errorf("PATCH %s: decoding the response: %w", u, err)
	}
	return nil
}
