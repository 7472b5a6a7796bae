package apiclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// whoami answers every request with the client certificate's common name
// and the protocol.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	cn := ""
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		cn = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	_ = json.NewEncoder(w).Encode(map[string]string{"cn": cn, "proto": r.Proto})
})

type whoamiResp struct{ CN, Proto string }

func TestTLS(t *testing.T) {
	ca := newCA(t, "cluster CA")
	otherCA := newCA(t, "other CA")
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	srvCert, srvKey := ca.issue(t, "apiserver", "127.0.0.1")
	namedCert, namedKey := ca.issue(t, "apiserver", "kubernetes.default.svc")
	clientCert, clientKey := ca.issue(t, "system:node:n1")
	strangerCert, strangerKey := otherCA.issue(t, "stranger")

	dir := t.TempDir()
	certFile := writeFile(t, dir, "client.crt", clientCert)
	keyFile := writeFile(t, dir, "client.key", clientKey)

	srv, srvLog := newTLSServer(t, whoami, srvCert, srvKey, pool)
	named, _ := newTLSServer(t, whoami, namedCert, namedKey, pool)
	anyClient, _ := newTLSServer(t, whoami, srvCert, srvKey, nil)

	// With TLS 1.3 the server's refusal of a client reaches the client
	// after its side of the handshake, so the client's error varies
	// ("certificate required", a reset connection, ...): the server's log
	// says why.
	const rejected = "client didn't provide a certificate"
	tests := []struct {
		name    string
		srv     *httptest.Server
		cfg     Config
		wantCN  string
		wantErr string // or rejected
	}{
		{name: "CA and client certificate data", srv: srv,
			cfg: Config{CAData: ca.pem, ClientCertData: clientCert, ClientKeyData: clientKey}, wantCN: "system:node:n1"},
		{name: "client certificate files", srv: srv,
			cfg: Config{CAData: ca.pem, ClientCertFile: certFile, ClientKeyFile: keyFile}, wantCN: "system:node:n1"},
		{name: "insecure-skip-tls-verify", srv: srv,
			cfg: Config{InsecureSkipTLSVerify: true, ClientCertData: clientCert, ClientKeyData: clientKey}, wantCN: "system:node:n1"},
		{name: "no client certificate", srv: srv,
			cfg: Config{CAData: ca.pem}, wantErr: rejected},
		// Go does not even offer a certificate that the server's list of
		// acceptable CAs rules out.
		{name: "client certificate of another CA", srv: srv,
			cfg: Config{CAData: ca.pem, ClientCertData: strangerCert, ClientKeyData: strangerKey}, wantErr: rejected},
		{name: "server of another CA", srv: srv,
			cfg: Config{CAData: otherCA.pem, ClientCertData: clientCert, ClientKeyData: clientKey}, wantErr: "certificate signed by unknown authority"},
		{name: "system roots do not know the cluster CA", srv: anyClient,
			cfg: Config{}, wantErr: "certificate signed by unknown authority"},
		{name: "tls-server-name", srv: named,
			cfg: Config{CAData: ca.pem, TLSServerName: "kubernetes.default.svc", ClientCertData: clientCert, ClientKeyData: clientKey}, wantCN: "system:node:n1"},
		{name: "server certificate not for the address", srv: named,
			cfg: Config{CAData: ca.pem, ClientCertData: clientCert, ClientKeyData: clientKey}, wantErr: "x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Server = tt.srv.URL
			c := newTestClient(t, &tt.cfg)
			refusals := strings.Count(srvLog.String(), rejected)
			var got whoamiResp
			err := c.Get(t.Context(), "/whoami", &got)
			if tt.wantErr == rejected {
				if err == nil {
					t.Fatal("no error, want the server to refuse the client")
				}
				waitFor(t, func() string { return "server log: " + srvLog.String() }, func() bool {
					return strings.Count(srvLog.String(), rejected) > refusals
				})
			} else if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if tt.wantErr != "" {
				if !strings.HasPrefix(err.Error(), "GET "+tt.srv.URL+"/whoami: ") {
					t.Errorf("error %q does not name the request", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.CN != tt.wantCN || got.Proto != "HTTP/2.0" {
				t.Errorf("server saw client %q over %s, want %q over HTTP/2.0", got.CN, got.Proto, tt.wantCN)
			}
		})
	}
}

func TestTLSMinVersion(t *testing.T) {
	ca := newCA(t, "CA")
	cert, key := ca.issue(t, "apiserver", "127.0.0.1")
	srv, _ := newTLSServer(t, whoami, cert, key, nil, func(c *tls.Config) { c.MaxVersion = tls.VersionTLS11 })
	c := newTestClient(t, &Config{Server: srv.URL, CAData: ca.pem})
	err := c.Get(t.Context(), "/", &whoamiResp{})
	if err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("error %v, want a protocol version error against a TLS 1.1 server", err)
	}
}

// The kubelet rotates its client certificate by replacing the files; a
// new connection uses the new one.
func TestClientCertFileRotation(t *testing.T) {
	ca := newCA(t, "CA")
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	srvCert, srvKey := ca.issue(t, "apiserver", "127.0.0.1")
	srv, _ := newTLSServer(t, whoami, srvCert, srvKey, pool)

	dir := t.TempDir()
	cert1, key1 := ca.issue(t, "old")
	certFile := writeFile(t, dir, "current.crt", cert1)
	keyFile := writeFile(t, dir, "current.key", key1)
	c := newTestClient(t, &Config{Server: srv.URL, CAData: ca.pem, ClientCertFile: certFile, ClientKeyFile: keyFile})
	cn := func() string {
		t.Helper()
		c.http.CloseIdleConnections() // a new handshake
		var got whoamiResp
		if err := c.Get(t.Context(), "/", &got); err != nil {
			t.Fatal(err)
		}
		return got.CN
	}
	if got := cn(); got != "old" {
		t.Fatalf("CN %q, want old", got)
	}

	// Half-way through a rotation (new certificate, old key) the old
	// pair is still used.
	cert2, key2 := ca.issue(t, "new")
	later := time.Now().Add(time.Hour)
	writeFile(t, dir, "current.crt", cert2)
	if err := os.Chtimes(certFile, later, later); err != nil {
		t.Fatal(err)
	}
	if got := cn(); got != "old" {
		t.Fatalf("mid-rotation: CN %q, want old", got)
	}
	writeFile(t, dir, "current.key", key2)
	if err := os.Chtimes(keyFile, later, later); err != nil {
		t.Fatal(err)
	}
	if got := cn(); got != "new" {
		t.Fatalf("after rotation: CN %q, want new", got)
	}
}

// authServer records the Authorization header of each request.
func authServer(t *testing.T) (*httptest.Server, func() string) {
	t.Helper()
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Authorization")
		_, _ = w.Write([]byte("{}"))
	}))
	t.Cleanup(srv.Close)
	return srv, func() string {
		t.Helper()
		c := <-got
		return c
	}
}

func TestAuthHeaders(t *testing.T) {
	srv, seen := authServer(t)
	dir := t.TempDir()
	tokenFile := writeFile(t, dir, "token", []byte("  from-file\n"))
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "none", want: ""},
		{name: "token", cfg: Config{Token: "abc"}, want: "Bearer abc"},
		{name: "token file, trimmed", cfg: Config{TokenFile: tokenFile}, want: "Bearer from-file"},
		{name: "token file wins over token", cfg: Config{Token: "abc", TokenFile: tokenFile}, want: "Bearer from-file"},
		{name: "token while the token file is missing", cfg: Config{Token: "abc", TokenFile: filepath.Join(dir, "nope")}, want: "Bearer abc"},
		{name: "basic", cfg: Config{Username: "admin", Password: "pw"}, want: "Basic YWRtaW46cHc="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Server = srv.URL
			c := newTestClient(t, &tt.cfg)
			if err := c.Get(t.Context(), "/", &struct{}{}); err != nil {
				t.Fatal(err)
			}
			if got := seen(); got != tt.want {
				t.Errorf("Authorization %q, want %q", got, tt.want)
			}
		})
	}
}

// A service-account token file is read again when it changes, and at
// least every minute.
func TestTokenFileRotation(t *testing.T) {
	srv, seen := authServer(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	// write sets the file's content and modification time.
	write := func(tok string, mtime time.Time) {
		t.Helper()
		writeFile(t, dir, "token", []byte(tok))
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	write("token-1", base)

	c := newTestClient(t, &Config{Server: srv.URL, TokenFile: path})
	now := time.Now()
	c.token.now = func() time.Time { return now }
	get := func() string {
		t.Helper()
		if err := c.Get(t.Context(), "/", &struct{}{}); err != nil {
			t.Fatal(err)
		}
		return seen()
	}

	steps := []struct {
		name    string
		change  func()
		advance time.Duration
		want    string
	}{
		{name: "first", want: "Bearer token-1"},
		{name: "rewritten: new mtime", change: func() { write("token-2", base.Add(time.Second)) }, want: "Bearer token-2"},
		{name: "replaced by a rename (new inode), same size and mtime", change: func() {
			tmp := filepath.Join(dir, "tmp")
			writeFile(t, dir, "tmp", []byte("token-3"))
			if err := os.Chtimes(tmp, base.Add(time.Second), base.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}, want: "Bearer token-3"},
		{name: "changed in place, same size and mtime: not seen yet", change: func() { write("token-4", base.Add(time.Second)) }, advance: 59 * time.Second, want: "Bearer token-3"},
		{name: "a minute after the last read", advance: 2 * time.Second, want: "Bearer token-4"},
		{name: "removed: the last token is kept", change: func() {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, advance: 2 * time.Minute, want: "Bearer token-4"},
		{name: "back", change: func() { write("token-5", base.Add(2*time.Second)) }, want: "Bearer token-5"},
	}
	for _, s := range steps {
		if s.change != nil {
			s.change()
		}
		now = now.Add(s.advance)
		if got := get(); got != s.want {
			t.Fatalf("%s: Authorization %q, want %q", s.name, got, s.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	ca := newCA(t, "CA")
	cert, _ := ca.issue(t, "client")
	dir := t.TempDir()
	certFile := writeFile(t, dir, "c.crt", cert)
	empty := writeFile(t, dir, "empty", []byte("\n"))
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "no scheme", cfg: Config{Server: "10.0.0.1:6443"}, wantErr: "is not an http(s)://host[:port] URL"},
		{name: "no host", cfg: Config{Server: "https://"}, wantErr: "is not an http(s)://host[:port] URL"},
		{name: "query", cfg: Config{Server: "https://h/?a=b"}, wantErr: "has a query or fragment"},
		{name: "CA not PEM", cfg: Config{Server: "https://h", CAData: []byte("nope")}, wantErr: "CA data holds no PEM certificate"},
		{name: "CA and insecure", cfg: Config{Server: "https://h", CAData: ca.pem, InsecureSkipTLSVerify: true}, wantErr: "a CA and insecure-skip-tls-verify are both set"},
		{name: "certificate without key", cfg: Config{Server: "https://h", ClientCertData: cert}, wantErr: "both a certificate and a key are needed"},
		{name: "key of another certificate", cfg: Config{Server: "https://h", ClientCertData: cert, ClientKeyData: ca.pem}, wantErr: "client certificate: "},
		{name: "certificate file without key file", cfg: Config{Server: "https://h", ClientCertFile: certFile}, wantErr: "both a certificate and a key file are needed"},
		{name: "missing key file", cfg: Config{Server: "https://h", ClientCertFile: certFile, ClientKeyFile: filepath.Join(dir, "nope")}, wantErr: "client key: open "},
		{name: "data and files", cfg: Config{Server: "https://h", ClientCertData: cert, ClientKeyFile: certFile}, wantErr: "both as data or both as files"},
		{name: "missing token file", cfg: Config{Server: "https://h", TokenFile: filepath.Join(dir, "nope")}, wantErr: "bearer token file: open "},
		{name: "empty token file", cfg: Config{Server: "https://h", TokenFile: empty}, wantErr: "bearer token file " + empty + " is empty"},
		{name: "token and basic", cfg: Config{Server: "https://h", Token: "t", Username: "u"}, wantErr: "a bearer token and username/password are both set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(&tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "kubernetes API client for "+tt.cfg.Server+": ") {
				t.Errorf("error %q does not name the server", err)
			}
		})
	}
}

func TestGet(t *testing.T) {
	var (
		mu         sync.Mutex
		ua, accept string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ua, accept = r.Header.Get("User-Agent"), r.Header.Get("Accept")
		mu.Unlock()
		switch r.URL.Path {
		case "/prefix/api/v1/namespaces/ns/configmaps/cm":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"kind":"ConfigMap","metadata":{"name":"cm"},"data":{"k":"v"}}`))
		case "/prefix/api/v1/namespaces/ns/secrets/forbidden":
			writeStatus(w, http.StatusForbidden, "Forbidden", `secrets "forbidden" is forbidden: User "system:serviceaccount:kube-system:podvisor" cannot get resource "secrets" in API group "" in the namespace "ns"`)
		case "/prefix/garbage":
			_, _ = w.Write([]byte(`{"data":`))
		case "/prefix/proxy-error":
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("<html>\n  <body>upstream\n connect error</body>\n</html>\n"))
		case "/prefix/redirect":
			http.Redirect(w, r, "http://elsewhere.invalid/", http.StatusFound)
		default:
			writeStatus(w, http.StatusNotFound, "NotFound", `configmaps "nope" not found`)
		}
	}))
	t.Cleanup(srv.Close)
	c := newTestClient(t, &Config{Server: srv.URL + "/prefix/"})

	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := c.Get(t.Context(), "/api/v1/namespaces/ns/configmaps/cm", &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Data["k"] != "v" {
		t.Errorf("data %v", cm.Data)
	}
	mu.Lock()
	if ua != "podvisor" || accept != "application/json" {
		t.Errorf("User-Agent %q, Accept %q; want podvisor, application/json", ua, accept)
	}
	mu.Unlock()

	tests := []struct {
		path     string
		wantErr  string
		code     int
		notFound bool
	}{
		{path: "/api/v1/namespaces/ns/configmaps/nope", notFound: true, code: 404,
			wantErr: "GET " + srv.URL + `/prefix/api/v1/namespaces/ns/configmaps/nope: 404 Not Found: configmaps "nope" not found`},
		{path: "/api/v1/namespaces/ns/secrets/forbidden", code: 403,
			wantErr: `: 403 Forbidden: secrets "forbidden" is forbidden: User "system:serviceaccount:kube-system:podvisor" cannot get resource`},
		{path: "/proxy-error", code: 502, wantErr: ": 502 Bad Gateway: <html> <body>upstream connect error</body> </html>"},
		{path: "/redirect", code: 302, wantErr: ": 302 Found"},
		{path: "/garbage", wantErr: "/prefix/garbage: decoding the response: unexpected EOF"},
		{path: "relative", wantErr: `GET relative: "relative" is not an absolute path`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			var into map[string]any
			err := c.Get(t.Context(), tt.path, &into)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if errors.Is(err, ErrNotFound) != tt.notFound {
				t.Errorf("errors.Is(%v, ErrNotFound) = %v", err, !tt.notFound)
			}
			var se *StatusError
			if errors.As(err, &se) != (tt.code != 0) || se != nil && se.Code != tt.code {
				t.Errorf("StatusError %+v, want code %d", se, tt.code)
			}
		})
	}
}

func TestGetContext(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	c := newTestClient(t, &Config{Server: srv.URL})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := c.Get(ctx, "/slow", &struct{}{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want context.DeadlineExceeded", err)
	}
}

// TestMergePatch: a PATCH of the object with the merge-patch content type,
// the client's credentials, the patch as the body; errors as for Get.
func TestMergePatch(t *testing.T) {
	var (
		mu                      sync.Mutex
		method, ctype, auth, in string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		method, ctype, auth, in = r.Method, r.Header.Get("Content-Type"), r.Header.Get("Authorization"), string(b)
		mu.Unlock()
		switch r.URL.Path {
		case "/api/v1/nodes/n1":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"kind":"Node","metadata":{"name":"n1","labels":{"podvisor.io/accelerator":"tcg"}}}`))
		case "/api/v1/nodes/forbidden":
			writeStatus(w, http.StatusForbidden, "Forbidden", `nodes "forbidden" is forbidden: User "system:serviceaccount:kube-system:podvisor" cannot patch resource "nodes"`)
		default:
			writeStatus(w, http.StatusNotFound, "NotFound", `nodes "nope" not found`)
		}
	}))
	t.Cleanup(srv.Close)
	c := newTestClient(t, &Config{Server: srv.URL, Token: "tok"})

	patch := map[string]any{"metadata": map[string]any{"labels": map[string]string{"podvisor.io/accelerator": "tcg"}}}
	var node struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	if err := c.MergePatch(t.Context(), "/api/v1/nodes/n1", patch, &node); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if method != http.MethodPatch || ctype != "application/merge-patch+json" || auth != "Bearer tok" ||
		in != `{"metadata":{"labels":{"podvisor.io/accelerator":"tcg"}}}` {
		t.Errorf("request %s, Content-Type %q, Authorization %q, body %s", method, ctype, auth, in)
	}
	mu.Unlock()
	if node.Metadata.Labels["podvisor.io/accelerator"] != "tcg" {
		t.Errorf("decoded %+v", node)
	}
	if err := c.MergePatch(t.Context(), "/api/v1/nodes/n1", patch, nil); err != nil {
		t.Errorf("into nil: %v", err)
	}
	err := c.MergePatch(t.Context(), "/api/v1/nodes/forbidden", patch, nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 403 || !strings.Contains(err.Error(), "PATCH "+srv.URL+"/api/v1/nodes/forbidden: 403 Forbidden") {
		t.Errorf("forbidden: %v", err)
	}
	if err := c.MergePatch(t.Context(), "/api/v1/nodes/nope", patch, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing node: %v, want ErrNotFound", err)
	}
	if err := c.MergePatch(t.Context(), "/api/v1/nodes/n1", func() {}, nil); err == nil || !strings.Contains(err.Error(), "encoding the patch") {
		t.Errorf("unencodable patch: %v", err)
	}
}
