package apiclient

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadKubeconfig(t *testing.T) {
	dir := t.TempDir()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	writeFile(t, dir, "pki/ca.crt", []byte("CA FROM FILE"))
	writeFile(t, dir, "pki/node.crt", []byte("CERT"))
	writeFile(t, dir, "pki/node.key", []byte("KEY"))
	writeFile(t, dir, "abs.crt", []byte("ABSOLUTE CA"))
	abs := filepath.Join(dir, "abs.crt")

	// kc is a kubeconfig whose current context "ctx" uses cluster "c" and
	// user "u" with the given YAML bodies.
	kc := func(cluster, user string) string {
		return `apiVersion: v1
kind: Config
current-context: ctx
preferences: {}
clusters:
- name: other
  cluster:
    server: https://wrong.example:6443
- name: c
  cluster:
` + indent(cluster, 4) + `
contexts:
- name: wrong
  context: {cluster: other, user: other}
- name: ctx
  context:
    cluster: c
    user: u
    namespace: ignored
users:
- name: other
  user: {token: wrong}
- name: u
  user:
` + indent(user, 4) + "\n"
	}

	tests := []struct {
		name    string
		yaml    string
		want    *Config
		wantErr string
	}{
		{
			name: "token, CA file relative to the kubeconfig",
			yaml: kc("server: https://10.0.0.1:6443\ncertificate-authority: pki/ca.crt\ntls-server-name: kubernetes", "token: secret"),
			want: &Config{Server: "https://10.0.0.1:6443", CAData: []byte("CA FROM FILE"), TLSServerName: "kubernetes", Token: "secret"},
		},
		{
			name: "absolute CA path",
			yaml: kc("server: https://h\ncertificate-authority: "+abs, "token: t"),
			want: &Config{Server: "https://h", CAData: []byte("ABSOLUTE CA"), Token: "t"},
		},
		{
			name: "data forms",
			yaml: kc("server: https://h\ncertificate-authority-data: "+b64("CA DATA"),
				"client-certificate-data: "+b64("CERT DATA")+"\nclient-key-data: "+b64("KEY DATA")),
			want: &Config{Server: "https://h", CAData: []byte("CA DATA"), ClientCertData: []byte("CERT DATA"), ClientKeyData: []byte("KEY DATA")},
		},
		{
			name: "client certificate files relative to the kubeconfig",
			yaml: kc("server: https://h", "client-certificate: pki/node.crt\nclient-key: ./pki/node.key"),
			want: &Config{Server: "https://h", ClientCertFile: filepath.Join(dir, "pki/node.crt"), ClientKeyFile: filepath.Join(dir, "pki/node.key")},
		},
		{
			name: "tokenFile relative to the kubeconfig, read later",
			yaml: kc("server: https://h", "tokenFile: tokens/sa"),
			want: &Config{Server: "https://h", TokenFile: filepath.Join(dir, "tokens/sa")},
		},
		{
			name: "token and tokenFile",
			yaml: kc("server: https://h", "token: t\ntokenFile: /run/tok"),
			want: &Config{Server: "https://h", Token: "t", TokenFile: "/run/tok"},
		},
		{
			name: "basic auth, insecure",
			yaml: kc("server: https://h\ninsecure-skip-tls-verify: true", "username: admin\npassword: pw"),
			want: &Config{Server: "https://h", InsecureSkipTLSVerify: true, Username: "admin", Password: "pw"},
		},
		{
			name: "no user in the context",
			yaml: "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:8080'}}]\n",
			want: &Config{Server: "http://127.0.0.1:8080"},
		},
		{
			name:    "exec",
			yaml:    kc("server: https://h", "exec:\n  apiVersion: client.authentication.k8s.io/v1\n  command: aws"),
			wantErr: `user "u": users[].user.exec is not supported by podvisor: use token, tokenFile or client certificates`,
		},
		{
			name:    "auth-provider",
			yaml:    kc("server: https://h", "auth-provider:\n  name: oidc"),
			wantErr: `user "u": users[].user.auth-provider is not supported by podvisor: use token, tokenFile or client certificates`,
		},
		{
			name:    "impersonation",
			yaml:    kc("server: https://h", "token: t\nas: someone"),
			wantErr: `user "u": impersonation (users[].user.as, as-uid, as-groups, as-user-extra) is not supported`,
		},
		{
			name:    "proxy-url",
			yaml:    kc("server: https://h\nproxy-url: http://proxy:3128", "token: t"),
			wantErr: `cluster "c": clusters[].cluster.proxy-url is not supported by podvisor`,
		},
		{
			name:    "no current-context",
			yaml:    strings.Replace(kc("server: https://h", "token: t"), "current-context: ctx", "", 1),
			wantErr: "current-context is not set",
		},
		{
			name:    "unknown context",
			yaml:    strings.Replace(kc("server: https://h", "token: t"), "current-context: ctx", "current-context: nope", 1),
			wantErr: `current-context "nope" is not in contexts[]`,
		},
		{
			name:    "unknown cluster",
			yaml:    strings.Replace(kc("server: https://h", "token: t"), "- name: c\n", "- name: c2\n", 1),
			wantErr: `context "ctx" names cluster "c", which is not in clusters[]`,
		},
		{
			name:    "unknown user",
			yaml:    strings.Replace(kc("server: https://h", "token: t"), "- name: u\n", "- name: u2\n", 1),
			wantErr: `context "ctx" names user "u", which is not in users[]`,
		},
		{
			name:    "context without cluster",
			yaml:    "current-context: x\ncontexts: [{name: x, context: {user: u}}]\n",
			wantErr: `context "x" names no cluster`,
		},
		{
			name:    "no server",
			yaml:    kc("certificate-authority-data: "+b64("CA"), "token: t"),
			wantErr: `cluster "c": server is not set`,
		},
		{
			name:    "missing CA file",
			yaml:    kc("server: https://h\ncertificate-authority: nope.crt", "token: t"),
			wantErr: `cluster "c": certificate-authority: open ` + filepath.Join(dir, "nope.crt"),
		},
		{
			name:    "missing client key file",
			yaml:    kc("server: https://h", "client-certificate: pki/node.crt\nclient-key: pki/nope.key"),
			wantErr: `user "u": client-key: stat ` + filepath.Join(dir, "pki/nope.key"),
		},
		{
			name:    "CA file and data",
			yaml:    kc("server: https://h\ncertificate-authority: pki/ca.crt\ncertificate-authority-data: "+b64("CA"), "token: t"),
			wantErr: `cluster "c": both certificate-authority and certificate-authority-data are set`,
		},
		{
			name:    "client certificate file and data",
			yaml:    kc("server: https://h", "client-certificate: pki/node.crt\nclient-certificate-data: "+b64("C")+"\nclient-key: pki/node.key"),
			wantErr: `user "u": both client-certificate and client-certificate-data are set`,
		},
		{
			name:    "token and basic auth",
			yaml:    kc("server: https://h", "token: t\nusername: a\npassword: b"),
			wantErr: `user "u": a token and username/password are both set`,
		},
		{
			name:    "bad base64",
			yaml:    kc("server: https://h\ncertificate-authority-data: '***'", "token: t"),
			wantErr: "parsing: ",
		},
		{
			name:    "not YAML",
			yaml:    "clusters: [",
			wantErr: "parsing: ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, dir, "kubeconfig", []byte(tt.yaml))
			got, err := LoadKubeconfig(path)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("got %+v, want an error containing %q", got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "kubeconfig "+path+": ") {
					t.Fatalf("error %q, want one starting with the path and containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

// A kubeconfig named by a relative path resolves its relative file names
// from its own directory, not the working directory.
func TestLoadKubeconfigRelativePath(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "sub/ca.crt", []byte("CA"))
	writeFile(t, dir, "sub/config", []byte(`current-context: x
contexts: [{name: x, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "https://h", certificate-authority: ca.crt}}]
users: [{name: u, user: {tokenFile: tok}}]
`))
	t.Chdir(dir)
	cfg, err := LoadKubeconfig("sub/config")
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.CAData) != "CA" || cfg.TokenFile != filepath.Join(dir, "sub/tok") {
		t.Errorf("CAData %q, TokenFile %q; want the CA of sub/ and %s", cfg.CAData, cfg.TokenFile, filepath.Join(dir, "sub/tok"))
	}
}

func TestLoadKubeconfigMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope")
	_, err := LoadKubeconfig(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %v, want a not-exist error naming %s", err, path)
	}
}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

func TestInCluster(t *testing.T) {
	sa := t.TempDir()
	writeFile(t, sa, "token", []byte("sa-token\n"))
	writeFile(t, sa, "ca.crt", []byte("CLUSTER CA"))
	old := serviceAccountDir
	serviceAccountDir = sa
	t.Cleanup(func() { serviceAccountDir = old })

	tests := []struct {
		name, host, port string
		noToken, noCA    bool
		wantServer       string
		wantErr          string
	}{
		{name: "IPv4", host: "10.96.0.1", port: "443", wantServer: "https://10.96.0.1:443"},
		{name: "IPv6 is bracketed", host: "fd00::1", port: "6443", wantServer: "https://[fd00::1]:6443"},
		{name: "name", host: "kubernetes.default.svc", port: "443", wantServer: "https://kubernetes.default.svc:443"},
		{name: "no host", port: "443", wantErr: "not running in a pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set)"},
		{name: "no port", host: "10.96.0.1", wantErr: "not running in a pod"},
		{name: "no token", host: "10.96.0.1", port: "443", noToken: true, wantErr: "service-account token: stat DIR/token"},
		{name: "no CA", host: "10.96.0.1", port: "443", noCA: true, wantErr: "service-account CA: open DIR/ca.crt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("KUBERNETES_SERVICE_HOST", tt.host)
			t.Setenv("KUBERNETES_SERVICE_PORT", tt.port)
			serviceAccountDir = sa
			if tt.noToken || tt.noCA {
				serviceAccountDir = t.TempDir()
				if !tt.noToken {
					writeFile(t, serviceAccountDir, "token", []byte("x"))
				}
			}
			cfg, err := InCluster()
			if tt.wantErr != "" {
				wantErr := strings.ReplaceAll(tt.wantErr, "DIR", serviceAccountDir)
				if err == nil || !strings.Contains(err.Error(), wantErr) {
					t.Fatalf("error %v, want one containing %q", err, wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := &Config{Server: tt.wantServer, CAData: []byte("CLUSTER CA"), TokenFile: filepath.Join(sa, "token")}
			if diff := cmp.Diff(want, cfg); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}
