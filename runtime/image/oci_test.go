package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tarOf builds a layer tar of files (path → content).
func tarOf(t testing.TB, files ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o444, Size: int64(len(f[1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// containerDisk builds an image whose layers are the given tars (gzip).
func containerDisk(t testing.TB, layers ...[]byte) v1.Image {
	t.Helper()
	img := empty.Image
	for _, l := range layers {
		data := l
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// testRegistry is an in-process registry on loopback; host is its
// host:port.
func testRegistry(t *testing.T, wrap func(http.Handler) http.Handler) (host string) {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func push(t *testing.T, ref string, img v1.Image) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func ociStore(t testing.TB, host string, opts ...Option) *Store {
	t.Helper()
	all := append([]Option{
		WithAllowNetworks([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}),
		WithRegistries(Registries{Insecure: []string{host}}),
	}, opts...)
	s, err := NewStore(t.TempDir(), nil, all...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawDisk is a raw disk image's content: not HTML, any length.
func rawDisk(seed string) string { return strings.Repeat("disk "+seed+"\x00", 4096) }

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestOCIPullByTagAndDigest(t *testing.T) {
	ctx := context.Background()
	host := testRegistry(t, nil)
	disk := rawDisk("a")
	digest := push(t, host+"/disks/alpine:v1", containerDisk(t, tarOf(t, [2]string{"disk/alpine.img", disk})))
	s := ociStore(t, host)

	ref, err := s.PullImage(ctx, "", host+"/disks/alpine:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := "sha256:" + sha(disk); ref != want {
		t.Fatalf("ref %s, want the disk's digest %s", ref, want)
	}
	byDigest, err := s.PullImage(ctx, "", host+"/disks/alpine@"+digest, nil)
	if err != nil || byDigest != ref {
		t.Fatalf("pull by digest: %s, %v; want %s", byDigest, err, ref)
	}
	img, err := s.Status(ctx, ref)
	if err != nil || img == nil {
		t.Fatalf("status: %v, %v", img, err)
	}
	tags, digests := CRITags(*img)
	if want := []string{host + "/disks/alpine:v1"}; !equal(tags, want) {
		t.Errorf("RepoTags %q, want %q", tags, want)
	}
	if want := []string{host + "/disks/alpine@" + digest}; !equal(digests, want) {
		t.Errorf("RepoDigests %q, want %q", digests, want)
	}
	for _, n := range []string{host + "/disks/alpine:v1", host + "/disks/alpine@" + digest, ref} {
		if st, err := s.Status(ctx, n); err != nil || st == nil || st.Ref != ref {
			t.Errorf("Status(%s) = %v, %v; want %s", n, st, err, ref)
		}
	}
	got, err := os.ReadFile(img.Path)
	if err != nil || string(got) != disk {
		t.Fatalf("stored disk differs from /disk/alpine.img (%v)", err)
	}
	if err := s.RemoveImage(ctx, host+"/disks/alpine:v1"); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Status(ctx, ref); st != nil {
		t.Errorf("after RemoveImage by tag the image is still there: %+v", st)
	}
}

// A second tag of the same manifest is linked without extracting again.
func TestOCISecondNameSharesTheDisk(t *testing.T) {
	ctx := context.Background()
	var blobGets int
	host := testRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				blobGets++
			}
			h.ServeHTTP(w, r)
		})
	})
	img := containerDisk(t, tarOf(t, [2]string{"disk/d.qcow2.raw", rawDisk("b")}))
	push(t, host+"/d:one", img)
	push(t, host+"/d:two", img)
	s := ociStore(t, host)
	r1, err := s.PullImage(ctx, "", host+"/d:one", nil)
	if err != nil {
		t.Fatal(err)
	}
	before := blobGets
	r2, err := s.PullImage(ctx, "", host+"/d:two", nil)
	if err != nil || r2 != r1 {
		t.Fatalf("second tag: %s, %v; want %s", r2, err, r1)
	}
	if blobGets != before {
		t.Errorf("second tag of the same manifest fetched %d blobs again", blobGets-before)
	}
	st, _ := s.Status(ctx, r1)
	tags, _ := CRITags(*st)
	if want := []string{host + "/d:one", host + "/d:two"}; !equal(tags, want) {
		t.Errorf("RepoTags %q, want %q", tags, want)
	}
}

func TestOCIPullRefusals(t *testing.T) {
	ctx := context.Background()
	host := testRegistry(t, nil)
	push(t, host+"/two:v1", containerDisk(t, tarOf(t, [2]string{"disk/a.img", rawDisk("a")}, [2]string{"disk/b.img", rawDisk("b")})))
	push(t, host+"/none:v1", containerDisk(t, tarOf(t, [2]string{"etc/hostname", "x"})))
	push(t, host+"/html:v1", containerDisk(t, tarOf(t, [2]string{"disk/x.img", "<html>portal</html>"})))
	good := push(t, host+"/good:v1", containerDisk(t, tarOf(t, [2]string{"disk/a.img", rawDisk("g")})))
	wrong := "sha256:" + strings.Repeat("0", 64)
	s := ociStore(t, host)
	for _, tc := range []struct{ name, want string }{
		{host + "/two:v1", "more than one file under /disk/ (a.img, b.img)"},
		{host + "/none:v1", "has no file under /disk/"},
		{host + "/html:v1", "HTML page"},
		{host + "/good@" + wrong, "MANIFEST_UNKNOWN"},
		{host + "/missing:v1", "NAME_UNKNOWN"},
	} {
		_, err := s.PullImage(ctx, "", tc.name, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("PullImage(%s): %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	_ = good
	assertNothingPartial(t, s)
}

// A registry not listed insecure is never spoken to over plain http,
// although go-containerregistry would fall back to it on loopback.
func TestOCIRefusesPlainHTTPUnlessInsecure(t *testing.T) {
	host := testRegistry(t, nil)
	push(t, host+"/d:v1", containerDisk(t, tarOf(t, [2]string{"disk/a.img", rawDisk("a")})))
	s, err := NewStore(t.TempDir(), nil, WithAllowNetworks([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.PullImage(context.Background(), "", host+"/d:v1", nil)
	if err == nil || !strings.Contains(err.Error(), "refusing plain http") {
		t.Fatalf("pull from a plain http registry not listed insecure: %v", err)
	}
}

// The download policy holds: loopback is refused unless allowed.
func TestOCIHonoursTheAddressPolicy(t *testing.T) {
	host := testRegistry(t, nil)
	push(t, host+"/d:v1", containerDisk(t, tarOf(t, [2]string{"disk/a.img", rawDisk("a")})))
	s, err := NewStore(t.TempDir(), nil, WithRegistries(Registries{Insecure: []string{host}}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.PullImage(context.Background(), "", host+"/d:v1", nil)
	if err == nil || !strings.Contains(err.Error(), "loopback address") {
		t.Fatalf("pull from loopback without allowing it: %v", err)
	}
}

// A tampered layer blob fails its digest check; nothing is stored.
func TestOCICorruptLayer(t *testing.T) {
	host := testRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && !strings.Contains(r.URL.Path, "uploads") {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				body := rec.Body.Bytes()
				if len(body) > 100 && rec.Code == http.StatusOK && !bytes.HasPrefix(body, []byte("{")) {
					body[len(body)/2] ^= 0xff
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				_, _ = w.Write(body)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	push(t, host+"/d:v1", containerDisk(t, tarOf(t, [2]string{"disk/a.img", rawDisk("c")})))
	s := ociStore(t, host)
	_, err := s.PullImage(context.Background(), "", host+"/d:v1", nil)
	if err == nil || !strings.Contains(err.Error(), "content has digest") {
		t.Fatalf("pull of a tampered layer: %v, want a digest mismatch", err)
	}
	if imgs, _ := s.List(context.Background()); len(imgs) != 0 {
		t.Errorf("a tampered pull left images: %+v", imgs)
	}
	assertNothingPartial(t, s)
}

// assertNothingPartial fails when failed pulls left files in tmp/ or
// data/ (the store held nothing before them).
func assertNothingPartial(t *testing.T, s *Store) {
	t.Helper()
	for _, d := range []string{s.tmpDir(), s.dataDir()} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			t.Errorf("left behind: %s", filepath.Join(d, e.Name()))
		}
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

// Concurrent pulls of one manifest share one download of each blob.
func TestOCIConcurrentPullsShareOneDownload(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	blobGets := map[string]int{}
	host := testRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				mu.Lock()
				blobGets[r.URL.Path]++
				mu.Unlock()
			}
			h.ServeHTTP(w, r)
		})
	})
	push(t, host+"/d:v1", containerDisk(t, tarOf(t, [2]string{"disk/a.img", rawDisk("concurrent")})))
	s := ociStore(t, host)
	var wg sync.WaitGroup
	refs := make([]string, 4)
	errs := make([]error, 4)
	for i := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			refs[i], errs[i] = s.PullImage(ctx, "", host+"/d:v1", nil)
		}()
	}
	wg.Wait()
	for i := range refs {
		if errs[i] != nil || refs[i] != refs[0] {
			t.Errorf("pull %d: %s, %v; want %s", i, refs[i], errs[i], refs[0])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for p, n := range blobGets {
		if n > 1 && !strings.Contains(p, "/uploads/") {
			t.Errorf("blob %s fetched %d times by concurrent pulls", p, n)
		}
	}
}

// A Virtlet image pulled by a name without the prefix (the Go API, or an
// older podvisor's store) still resolves by that name: no OCI image has it.
func TestOCIKeepsVirtletNamesResolving(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "cirros.img")
	if err := os.WriteFile(file, []byte(rawDisk("virtlet")), 0o644); err != nil {
		t.Fatal(err)
	}
	tdir := filepath.Join(dir, "translations")
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tdir, "t.yaml"), []byte("translations:\n- name: cirros\n  url: file://"+file+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tr := NewTranslations(tdir)
	s, err := NewStore(filepath.Join(dir, "store"), tr)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := s.Pull(ctx, "cirros")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"cirros", "cirros:latest", "virtlet.cloud/cirros", "virtlet.cloud/cirros:latest"} {
		st, err := s.Status(ctx, n)
		if err != nil || st == nil || st.Ref != ref {
			t.Errorf("Status(%s) = %v, %v; want %s", n, st, err, ref)
			continue
		}
		tags, _ := CRITags(*st)
		if !equal(tags, []string{"virtlet.cloud/cirros:latest"}) {
			t.Errorf("RepoTags %q, want [virtlet.cloud/cirros:latest]", tags)
		}
	}
	// Through the CRI, the prefix keeps the name a Virtlet name.
	if got, err := s.PullImage(ctx, "", "virtlet.cloud/cirros:latest", nil); err != nil || got != ref {
		t.Errorf("PullImage(virtlet.cloud/cirros:latest) = %s, %v; want %s", got, err, ref)
	}
}
