package apiclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// Config says how to reach and authenticate to an API server.
type Config struct {
	// Server is the API server's base URL, e.g. https://10.0.0.1:6443; a
	// path in it (an API proxy's prefix) is kept in front of request paths.
	Server string

	// CAData holds the PEM certificates that the server's certificate must
	// chain to; empty means the system roots.
	CAData []byte
	// InsecureSkipTLSVerify accepts any server certificate. It cannot be
	// combined with CAData.
	InsecureSkipTLSVerify bool
	// TLSServerName, when set, is the name checked in the server's
	// certificate instead of Server's host.
	TLSServerName string

	// ClientCertData and ClientKeyData are a PEM client certificate and key.
	ClientCertData, ClientKeyData []byte
	// ClientCertFile and ClientKeyFile name a PEM client certificate and key
	// instead; they are read again for a new connection when they changed
	// (as the kubelet rotates its client certificate).
	ClientCertFile, ClientKeyFile string

	// Token is a bearer token.
	Token string
	// TokenFile names a file holding a bearer token. It is read again when
	// it changed and at least every minute (service-account tokens rotate);
	// its last successfully read content wins over Token.
	TokenFile string

	// Username and Password are for basic authentication; they cannot be
	// combined with a token.
	Username, Password string

	// UserAgent is sent with every request; empty means "podvisor".
	UserAgent string
}

// kubeconfig is the part of a kubeconfig file that podvisor reads. Fields
// it refuses are decoded only to be named in an error.
type kubeconfig struct {
	CurrentContext string `json:"current-context"`
	Clusters       []struct {
		Name    string      `json:"name"`
		Cluster kubeCluster `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string   `json:"name"`
		User kubeUser `json:"user"`
	} `json:"users"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
}

// kubeCluster is one clusters[].cluster.
type kubeCluster struct {
	Server                   string `json:"server"`
	CertificateAuthority     string `json:"certificate-authority"`
	CertificateAuthorityData []byte `json:"certificate-authority-data"`
	InsecureSkipTLSVerify    bool   `json:"insecure-skip-tls-verify"`
	TLSServerName            string `json:"tls-server-name"`
	ProxyURL                 string `json:"proxy-url"`
}

// kubeUser is one users[].user.
type kubeUser struct {
	Token                 string              `json:"token"`
	TokenFile             string              `json:"tokenFile"`
	ClientCertificate     string              `json:"client-certificate"`
	ClientCertificateData []byte              `json:"client-certificate-data"`
	ClientKey             string              `json:"client-key"`
	ClientKeyData         []byte              `json:"client-key-data"`
	Username              string              `json:"username"`
	Password              string              `json:"password"`
	Exec                  json.RawMessage     `json:"exec"`
	AuthProvider          json.RawMessage     `json:"auth-provider"`
	As                    string              `json:"as"`
	AsUID                 string              `json:"as-uid"`
	AsGroups              []string            `json:"as-groups"`
	AsUserExtra           map[string][]string `json:"as-user-extra"`
}

// LoadKubeconfig reads the current context of a kubeconfig file. Relative
// file names in it are relative to the file's directory, as for kubectl.
// Files it names (CA, client certificate and key) must be readable now; a
// token file is only named in the Config and read by New.
func LoadKubeconfig(path string) (*Config, error) {
	cfg, err := loadKubeconfig(path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

func loadKubeconfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(data, &kc); err != nil {
		return nil, fmt.Errorf("parsing: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(abs)
	resolve := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	clusterName, userName, err := kc.currentContext()
	if err != nil {
		return nil, err
	}
	cfg := &Config{}
	cl, ok := kc.cluster(clusterName)
	if !ok {
		return nil, fmt.Errorf("context %q names cluster %q, which is not in clusters[]", kc.CurrentContext, clusterName)
	}
	if err := cl.apply(cfg, fmt.Sprintf("cluster %q", clusterName), resolve); err != nil {
		return nil, err
	}
	if userName == "" {
		return cfg, nil // no credentials: anonymous, as for kubectl
	}
	us, ok := kc.user(userName)
	if !ok {
		return nil, fmt.Errorf("context %q names user %q, which is not in users[]", kc.CurrentContext, userName)
	}
	if err := us.apply(cfg, fmt.Sprintf("user %q", userName), resolve); err != nil {
		return nil, err
	}
	return cfg, nil
}

// currentContext returns the cluster and user the current context names.
func (kc *kubeconfig) currentContext() (cluster, user string, err error) {
	if kc.CurrentContext == "" {
		return "", "", errors.New("current-context is not set")
	}
	for _, c := range kc.Contexts {
		if c.Name != kc.CurrentContext {
			continue
		}
		if c.Context.Cluster == "" {
			return "", "", fmt.Errorf("context %q names no cluster", kc.CurrentContext)
		}
		return c.Context.Cluster, c.Context.User, nil
	}
	return "", "", fmt.Errorf("current-context %q is not in contexts[]", kc.CurrentContext)
}

func (kc *kubeconfig) cluster(name string) (*kubeCluster, bool) {
	for i := range kc.Clusters {
		if kc.Clusters[i].Name == name {
			return &kc.Clusters[i].Cluster, true
		}
	}
	return nil, false
}

func (kc *kubeconfig) user(name string) (*kubeUser, bool) {
	for i := range kc.Users {
		if kc.Users[i].Name == name {
			return &kc.Users[i].User, true
		}
	}
	return nil, false
}

// apply sets the server and its TLS settings, refusing what podvisor does
// not support.
func (cl *kubeCluster) apply(cfg *Config, where string, resolve func(string) string) error {
	if cl.Server == "" {
		return fmt.Errorf("%s: server is not set", where)
	}
	if cl.ProxyURL != "" {
		return fmt.Errorf("%s: clusters[].cluster.proxy-url is not supported by podvisor: use the HTTPS_PROXY and NO_PROXY environment variables", where)
	}
	if cl.CertificateAuthority != "" && len(cl.CertificateAuthorityData) > 0 {
		return fmt.Errorf("%s: both certificate-authority and certificate-authority-data are set", where)
	}
	cfg.Server = cl.Server
	cfg.InsecureSkipTLSVerify = cl.InsecureSkipTLSVerify
	cfg.TLSServerName = cl.TLSServerName
	cfg.CAData = cl.CertificateAuthorityData
	if cl.CertificateAuthority != "" {
		var err error
		if cfg.CAData, err = os.ReadFile(resolve(cl.CertificateAuthority)); err != nil {
			return fmt.Errorf("%s: certificate-authority: %w", where, err)
		}
	}
	return nil
}

// apply sets the credentials, refusing what podvisor does not support and
// contradictory settings.
func (us *kubeUser) apply(cfg *Config, where string, resolve func(string) string) error {
	switch {
	case isSet(us.Exec):
		return fmt.Errorf("%s: users[].user.exec is not supported by podvisor: use token, tokenFile or client certificates", where)
	case isSet(us.AuthProvider):
		return fmt.Errorf("%s: users[].user.auth-provider is not supported by podvisor: use token, tokenFile or client certificates", where)
	case us.As != "" || us.AsUID != "" || len(us.AsGroups) > 0 || len(us.AsUserExtra) > 0:
		return fmt.Errorf("%s: impersonation (users[].user.as, as-uid, as-groups, as-user-extra) is not supported by podvisor", where)
	case us.ClientCertificate != "" && len(us.ClientCertificateData) > 0:
		return fmt.Errorf("%s: both client-certificate and client-certificate-data are set", where)
	case us.ClientKey != "" && len(us.ClientKeyData) > 0:
		return fmt.Errorf("%s: both client-key and client-key-data are set", where)
	case (us.Token != "" || us.TokenFile != "") && (us.Username != "" || us.Password != ""):
		return fmt.Errorf("%s: a token and username/password are both set; only one is allowed", where)
	}
	cfg.Token = us.Token
	cfg.TokenFile = resolve(us.TokenFile)
	cfg.Username, cfg.Password = us.Username, us.Password
	cfg.ClientCertData, cfg.ClientKeyData = us.ClientCertificateData, us.ClientKeyData
	cfg.ClientCertFile, cfg.ClientKeyFile = resolve(us.ClientCertificate), resolve(us.ClientKey)
	for _, f := range []struct{ field, path string }{
		{"client-certificate", cfg.ClientCertFile},
		{"client-key", cfg.ClientKeyFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s: %s: %w", where, f.field, err)
		}
	}
	return nil
}

func isSet(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s != "" && s != "null"
}

// serviceAccountDir is where a pod's service-account token and the
// cluster's CA are mounted; tests change it.
var serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// InCluster returns the Config of a pod's service account: the API server
// from KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, the CA and the
// (rotating) token from the service-account mount.
func InCluster() (*Config, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("in-cluster config: not running in a pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set)")
	}
	tokenFile := filepath.Join(serviceAccountDir, "token")
	if _, err := os.Stat(tokenFile); err != nil {
		return nil, fmt.Errorf("in-cluster config: service-account token: %w", err)
	}
	ca, err := os.ReadFile(filepath.Join(serviceAccountDir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("in-cluster config: service-account CA: %w", err)
	}
	return &Config{
		Server:    "https://" + net.JoinHostPort(host, port),
		CAData:    ca,
		TokenFile: tokenFile,
	}, nil
}
