package image

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"golang.org/x/crypto/bcrypt"
)

// Tests against Debian's docker-registry on loopback, images pushed with
// skopeo from an OCI layout (PODVISOR_REGISTRY_TESTS=1, make
// registry-tests; docs/design.md). The daemon is started and killed (by
// PID) by each test.

func needRegistry(t testing.TB) {
	t.Helper()
	if os.Getenv("PODVISOR_REGISTRY_TESTS") != "1" {
		t.Skip("set PODVISOR_REGISTRY_TESTS=1 to run against docker-registry (make registry-tests)")
	}
	for _, b := range []string{"docker-registry", "skopeo", "qemu-img", "prlimit"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("PODVISOR_REGISTRY_TESTS=1 needs %s: %v", b, err)
		}
	}
}

// realRegistry is a docker-registry daemon.
type realRegistry struct {
	t      testing.TB
	dir    string
	addr   string // 127.0.0.1:port
	config string
	scheme string
	cmd    *exec.Cmd
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startRegistry starts docker-registry; tlsDir (with cert.pem, key.pem)
// and htpasswd, when set, make it serve TLS and require basic auth.
func startRegistry(t testing.TB, tlsDir, htpasswd string) *realRegistry {
	t.Helper()
	r := &realRegistry{t: t, dir: t.TempDir(), addr: freePort(t), scheme: "http"}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(r.dir, "data"), r.addr)
	if tlsDir != "" {
		cfg += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", filepath.Join(tlsDir, "cert.pem"), filepath.Join(tlsDir, "key.pem"))
		r.scheme = "https"
	}
	if htpasswd != "" {
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: test\n    path: %s\n", htpasswd)
	}
	r.config = filepath.Join(r.dir, "registry.yml")
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *realRegistry) start() {
	r.t.Helper()
	r.cmd = exec.Command("docker-registry", "serve", r.config)
	log, err := os.Create(filepath.Join(r.dir, "registry.log"))
	if err != nil {
		r.t.Fatal(err)
	}
	r.cmd.Stdout, r.cmd.Stderr = log, log
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", r.addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, _ := os.ReadFile(filepath.Join(r.dir, "registry.log"))
	r.t.Fatalf("docker-registry did not listen on %s: %s", r.addr, out)
}

// stop kills the daemon by its PID.
func (r *realRegistry) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// pushDisk writes a containerDisk image with the given layer tars as an
// OCI layout and copies it to ref with skopeo.
func pushDisk(t testing.TB, ref string, skopeoArgs []string, layers ...[]byte) string {
	t.Helper()
	return pushImage(t, ref, skopeoArgs, containerDisk(t, layers...))
}

// pushImage writes img as an OCI layout and copies it to ref with skopeo.
func pushImage(t testing.TB, ref string, skopeoArgs []string, img v1.Image) string {
	t.Helper()
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"copy", "--quiet"}, skopeoArgs...)
	args = append(args, "oci:"+dir, "docker://"+ref)
	if out, err := exec.Command("skopeo", args...).CombinedOutput(); err != nil {
		t.Fatalf("skopeo %s: %v: %s", strings.Join(args, " "), err, out)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestRegistryPullByTagAndDigest(t *testing.T) {
	needRegistry(t)
	ctx := context.Background()
	r := startRegistry(t, "", "")
	disk := rawDisk("real")
	digest := pushDisk(t, r.addr+"/disks/raw:v1", []string{"--dest-tls-verify=false"}, tarOf(t, [2]string{"disk/raw.img", disk}))
	s := ociStore(t, r.addr)
	ref, err := s.PullImage(ctx, "", r.addr+"/disks/raw:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ref != "sha256:"+sha(disk) {
		t.Fatalf("ref %s, want sha256:%s", ref, sha(disk))
	}
	// By digest it is linked without asking the registry: stopped, it
	// still answers.
	r.stop()
	if got, err := s.PullImage(ctx, "", r.addr+"/disks/raw@"+digest, nil); err != nil || got != ref {
		t.Fatalf("pull by digest of a pulled manifest: %s, %v", got, err)
	}
	st, _ := s.Status(ctx, r.addr+"/disks/raw@"+digest)
	tags, digests := CRITags(*st)
	if !equal(tags, []string{r.addr + "/disks/raw:v1"}) || !equal(digests, []string{r.addr + "/disks/raw@" + digest}) {
		t.Errorf("RepoTags %q, RepoDigests %q", tags, digests)
	}
	// A name of a stopped registry fails clearly, leaving nothing.
	_, err = s.PullImage(ctx, "", r.addr+"/disks/other:v1", nil)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("pull from a stopped registry: %v", err)
	}
	wrong := "sha256:" + strings.Repeat("1", 64)
	r.start()
	if _, err := s.PullImage(ctx, "", r.addr+"/disks/raw@"+wrong, nil); err == nil || !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
		t.Errorf("pull by a wrong digest: %v", err)
	}
}

// The config's User survives skopeo's copy to a real registry and the
// pull (critest's test-image-user-* images).
func TestRegistryKeepsTheConfigUser(t *testing.T) {
	needRegistry(t)
	ctx := context.Background()
	r := startRegistry(t, "", "")
	s := ociStore(t, r.addr)
	for tag, user := range map[string]string{"uid": "1002", "username-group": "www-data:1004"} {
		name := r.addr + "/disks/user:" + tag
		img := withUser(t, containerDisk(t, tarOf(t, [2]string{"disk/d.img", rawDisk(tag)})), user)
		pushImage(t, name, []string{"--dest-tls-verify=false"}, img)
		ref, err := s.PullImage(ctx, "", name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := s.Status(ctx, name); err != nil || st == nil || st.Ref != ref || st.User != user {
			t.Errorf("Status(%s) = %+v, %v; want ref %s, User %q", name, st, err, ref, user)
		}
	}
}

func TestRegistryMoreThanOneDiskFile(t *testing.T) {
	needRegistry(t)
	r := startRegistry(t, "", "")
	pushDisk(t, r.addr+"/two:v1", []string{"--dest-tls-verify=false"},
		tarOf(t, [2]string{"disk/a.qcow2", rawDisk("a")}), tarOf(t, [2]string{"disk/b.img", rawDisk("b")}))
	s := ociStore(t, r.addr)
	_, err := s.PullImage(context.Background(), "", r.addr+"/two:v1", nil)
	if err == nil || !strings.Contains(err.Error(), "more than one file under /disk/ (a.qcow2, b.img)") {
		t.Fatalf("pull of two disk files: %v", err)
	}
	assertNothingPartial(t, s)
}

// writeTLS makes a CA and a server certificate for 127.0.0.1 signed by
// it; it returns the CA's PEM file.
func writeTLS(t *testing.T, dir string) string {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "podvisor test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, srv, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	write := func(name, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", "CERTIFICATE", caDER)
	write("cert.pem", "CERTIFICATE", der)
	write("key.pem", "EC PRIVATE KEY", kb)
	return filepath.Join(dir, "ca.pem")
}

// TLS with a CA of the registry settings, and htpasswd auth: the CRI's
// credential is used, a pull without it is refused.
func TestRegistryAuthAndTLS(t *testing.T) {
	needRegistry(t)
	ctx := context.Background()
	dir := t.TempDir()
	caFile := writeTLS(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startRegistry(t, dir, htpasswd)
	disk := rawDisk("private")
	pushDisk(t, r.addr+"/private/disk:v1", []string{"--dest-cert-dir=" + certDir(t, caFile), "--dest-creds=alice:s3cret"},
		tarOf(t, [2]string{"disk/disk.img", disk}))
	allow := WithAllowNetworks([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})

	noCA, err := NewStore(t.TempDir(), nil, allow)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noCA.PullImage(ctx, "", r.addr+"/private/disk:v1", &Auth{Username: "alice", Password: "s3cret"}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("pull without the registry's CA: %v, want a certificate error", err)
	}
	s, err := NewStore(t.TempDir(), nil, allow, WithRegistries(Registries{CAFiles: []string{caFile}}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PullImage(ctx, "", r.addr+"/private/disk:v1", nil); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("pull without credentials: %v, want UNAUTHORIZED", err)
	}
	if _, err := s.PullImage(ctx, "", r.addr+"/private/disk:v1", &Auth{Username: "alice", Password: "wrong"}); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("pull with a wrong password: %v, want UNAUTHORIZED", err)
	}
	ref, err := s.PullImage(ctx, "", r.addr+"/private/disk:v1", &Auth{Username: "alice", Password: "s3cret"})
	if err != nil || ref != "sha256:"+sha(disk) {
		t.Fatalf("pull with credentials: %s, %v", ref, err)
	}
}

// certDir is a skopeo --cert-dir holding caFile.
func certDir(t *testing.T, caFile string) string {
	d := t.TempDir()
	data, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "ca.crt"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

// cutProxy is a reverse proxy to a registry that cuts the first blob
// download longer than cut bytes after cut bytes (not the image config a
// pull fetches first) and records the Range of every blob request.
type cutProxy struct {
	mu     sync.Mutex
	cut    int64
	cuts   int
	ranges []string
}

func (p *cutProxy) handler(target string) http.Handler {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
			rp.ServeHTTP(w, r)
			return
		}
		p.mu.Lock()
		p.ranges = append(p.ranges, r.Header.Get("Range"))
		mayCut := p.cuts == 0 && p.cut > 0
		p.mu.Unlock()
		if !mayCut {
			rp.ServeHTTP(w, r)
			return
		}
		out := r.Clone(r.Context())
		out.RequestURI, out.URL.Scheme, out.URL.Host, out.Host = "", u.Scheme, u.Host, u.Host
		resp, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		if resp.ContentLength <= p.cut {
			_, _ = io.Copy(w, resp.Body)
			return
		}
		p.mu.Lock()
		p.cuts++
		p.mu.Unlock()
		_, _ = io.CopyN(w, resp.Body, p.cut)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection dies mid-body
	})
}

// A blob cut mid-transfer, with retries exhausted, is kept; the next pull
// resumes it by Range and nothing partial is ever visible as an image.
func TestRegistryResumeAfterCut(t *testing.T) {
	needRegistry(t)
	ctx := context.Background()
	r := startRegistry(t, "", "")
	// Incompressible, so that the blob is large enough to cut in half.
	noise := make([]byte, 4<<20)
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	disk := string(noise)
	pushDisk(t, r.addr+"/big:v1", []string{"--dest-tls-verify=false"}, tarOf(t, [2]string{"disk/big.img", disk}))
	p := &cutProxy{cut: 1 << 20}
	srv := &http.Server{Handler: p.handler("http://" + r.addr)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	host := l.Addr().String()
	s := ociStore(t, host, WithBackOff(func() backoff.BackOff { return &backoff.StopBackOff{} }))

	if _, err := s.PullImage(ctx, "", host+"/big:v1", nil); err == nil {
		t.Fatal("pull through a cut connection with no retries succeeded")
	} else {
		t.Logf("cut pull: %v", err)
	}
	if kept, _ := filepath.Glob(filepath.Join(s.tmpDir(), partialPrefix+"*")); len(kept) == 0 {
		t.Errorf("the cut pull kept no partial blob")
	}
	if imgs, _ := s.List(ctx); len(imgs) != 0 {
		t.Fatalf("a cut pull shows images: %+v", imgs)
	}
	ref, err := s.PullImage(ctx, "", host+"/big:v1", nil)
	if err != nil || ref != "sha256:"+sha(disk) {
		t.Fatalf("second pull: %s, %v", ref, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	resumed := false
	for _, rg := range p.ranges {
		if strings.HasPrefix(rg, "bytes=") && rg != "bytes=0-" {
			resumed = true
		}
	}
	if !resumed {
		t.Errorf("the second pull did not resume the cut blob by Range; blob requests' Range: %q", p.ranges)
	}
	entries, _ := os.ReadDir(s.tmpDir())
	if len(entries) != 0 {
		t.Errorf("tmp/ holds %d entries after a complete pull", len(entries))
	}
}
