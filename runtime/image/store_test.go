package image

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/podvisor/podvisor/fakes/imageserver"
)

const imgSize = 1 << 20

func TestPullListStatusRemove(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	data := fakeQcow2(imgSize, 1<<30, 1)
	srv.AddImage("cirros.qcow2", data)
	s := newStore(t, staticTranslator{
		"cirros": {URL: srv.URL() + "/cirros.qcow2"},
		"alias":  {URL: srv.URL() + "/cirros.qcow2"},
	})
	want := "sha256:" + digestOf(data)

	ref, err := s.Pull(ctx, "virtlet.cloud/cirros")
	if err != nil {
		t.Fatal(err)
	}
	if ref != want {
		t.Fatalf("Pull ref = %s, want %s", ref, want)
	}
	// A second pull of the name does not download again.
	if ref, err := s.Pull(ctx, "cirros"); err != nil || ref != want {
		t.Fatalf("second Pull = %s, %v", ref, err)
	}
	if n := srv.Stats("cirros.qcow2").Requests; n != 1 {
		t.Errorf("server saw %d requests for two pulls of one name, want 1", n)
	}
	// Another name with the same content shares the data file.
	if _, err := s.Pull(ctx, "alias"); err != nil {
		t.Fatal(err)
	}
	// A pin of present content needs no download.
	pinned := "other@sha256:" + digestOf(data)
	if ref, err := s.Pull(ctx, pinned); err != nil || ref != want {
		t.Fatalf("Pull(%s) = %s, %v", pinned, ref, err)
	}
	if n := srv.Stats("cirros.qcow2").Requests; n != 2 {
		t.Errorf("server saw %d requests, want 2 (cirros, alias)", n)
	}

	path := filepath.Join(s.dir, "data", digestOf(data))
	wantImg := Image{
		Ref:         want,
		Size:        imgSize,
		RepoTags:    []string{"alias", "cirros"},
		RepoDigests: []string{"alias" + "@" + want, "cirros@" + want, "other@" + want},
		Path:        path,
	}
	imgs, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Image{wantImg}, imgs); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	for _, q := range []string{"cirros", "virtlet.cloud/cirros:latest", want, CRIPrefix + want, digestOf(data), pinned} {
		img, err := s.Status(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(&wantImg, img); diff != "" {
			t.Errorf("Status(%q) (-want +got):\n%s", q, diff)
		}
	}
	if img, err := s.Status(ctx, "absent"); img != nil || err != nil {
		t.Errorf("Status(absent) = %v, %v; want nil, nil", img, err)
	}
	p, r, err := s.Resolve(ctx, "cirros")
	if err != nil || p != path || r != want {
		t.Errorf("Resolve = %s, %s, %v; want %s, %s", p, r, err, path, want)
	}
	if _, _, err := s.Resolve(ctx, "absent"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(absent) error = %v, want ErrNotFound", err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != string(data) {
		t.Fatalf("stored content differs from the served image (%v)", err)
	}

	// In use: the ref cannot be removed (names: TestRemove).
	s.SetInUse(func() map[string]bool { return map[string]bool{want: true} })
	if err := s.Remove(ctx, want); !errors.Is(err, ErrInUse) {
		t.Errorf("Remove(%q) of an image in use = %v, want ErrInUse", want, err)
	}
	s.SetInUse(nil)

	// Removing one name keeps the content for the others.
	if err := s.Remove(ctx, "cirros"); err != nil {
		t.Fatal(err)
	}
	if img, _ := s.Status(ctx, "cirros"); img != nil {
		t.Errorf("cirros still present after Remove")
	}
	if img, _ := s.Status(ctx, "alias"); img == nil || img.Ref != want {
		t.Errorf("alias lost after removing cirros: %+v", img)
	}
	// Removing by ref removes every name and the content.
	if err := s.Remove(ctx, want); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, want); err != nil {
		t.Errorf("Remove of a missing image = %v, want nil", err)
	}
	assertNothingVisible(t, s, "alias")
}

// TestRemove: one content pulled as "a" and "b". Removing a name removes
// that name only, and the content with the last name unless a container
// uses it; removing the ref removes every name and the content unless in
// use.
func TestRemove(t *testing.T) {
	data := fakeQcow2(4096, 1<<20, 30)
	hex := digestOf(data)
	ref := "sha256:" + hex
	tests := []struct {
		name    string
		inUse   bool
		remove  []string
		wantErr error    // of the last Remove
		present bool     // the content is still stored
		tags    []string // RepoTags of what is left
	}{
		{name: "one name keeps the other", remove: []string{"virtlet.cloud/a:latest"}, present: true, tags: []string{"b"}},
		{name: "both names remove the content", remove: []string{"a", "virtlet.cloud/b"}},
		{name: "ref removes every name", remove: []string{ref}},
		{name: "ref with the CRI prefix", remove: []string{CRIPrefix + ref}},
		{name: "bare hex ref", remove: []string{hex}},
		{name: "absent name", remove: []string{"c"}, present: true, tags: []string{"a", "b"}},
		{name: "pinned name not linked keeps the name", remove: []string{"b", "a@sha256:" + hex}, present: true, tags: []string{"a"}},
		{name: "name of content in use", inUse: true, remove: []string{"a"}, present: true, tags: []string{"b"}},
		{name: "every name of content in use keeps it by ref", inUse: true, remove: []string{"a", "b"}, present: true, tags: []string{}},
		{name: "ref of content in use", inUse: true, remove: []string{ref}, wantErr: ErrInUse, present: true, tags: []string{"a", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			srv := startServer(t)
			srv.AddImage("img", data)
			s := newStore(t, staticTranslator{"a": {URL: srv.URL() + "/img"}, "b": {URL: srv.URL() + "/img"}})
			for _, n := range []string{"virtlet.cloud/a:latest", "virtlet.cloud/b"} {
				if got, err := s.Pull(ctx, n); err != nil || got != ref {
					t.Fatalf("Pull(%s) = %s, %v", n, got, err)
				}
			}
			if tc.inUse {
				s.SetInUse(func() map[string]bool { return map[string]bool{ref: true} })
			}
			var err error
			for _, n := range tc.remove {
				err = s.Remove(ctx, n)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Remove = %v, want %v", err, tc.wantErr)
			}
			img, err := s.Status(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.present {
				if img != nil {
					t.Fatalf("Status(%s) = %+v after removal, want none", ref, img)
				}
				assertNoImage(t, s, "a", "data", "links")
				return
			}
			if img == nil {
				t.Fatalf("Status(%s) = nil, want the image kept", ref)
			}
			if diff := cmp.Diff(tc.tags, img.RepoTags); diff != "" {
				t.Errorf("RepoTags (-want +got):\n%s", diff)
			}
			for _, n := range tc.tags {
				if got, err := s.Status(ctx, n); err != nil || got == nil || got.Ref != ref {
					t.Errorf("Status(%s) = %+v, %v; want %s", n, got, err, ref)
				}
			}
			if _, got, err := s.Resolve(ctx, ref); err != nil || got != ref {
				t.Errorf("Resolve(%s) = %s, %v", ref, got, err)
			}
			imgs, err := s.List(ctx)
			if err != nil || len(imgs) != 1 {
				t.Errorf("List = %+v, %v; want the one image", imgs, err)
			}
		})
	}
}

func TestRemoveLastNameRemovesContent(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	srv.AddImage("a", fakeQcow2(4096, 1<<20, 2))
	s := newStore(t, staticTranslator{"a": {URL: srv.URL() + "/a"}})
	if _, err := s.Pull(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	assertNothingVisible(t, s, "a")
}

func TestPinnedPull(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	data := fakeQcow2(imgSize, 1<<30, 3)
	srv.AddImage("img", data)
	srv.SetMode("img", imageserver.Mode{NoDigest: true})
	s := newStore(t, staticTranslator{"img": {URL: srv.URL() + "/img"}})

	wrong := strings.Repeat("ab", 32)
	_, err := s.Pull(ctx, "img@sha256:"+wrong)
	wantErrContains(t, err, "pins sha256:"+wrong, "content has digest sha256:"+digestOf(data))
	assertNothingVisible(t, s, "img@sha256:"+wrong)

	ref, err := s.Pull(ctx, "img@sha256:"+digestOf(data))
	if err != nil || ref != "sha256:"+digestOf(data) {
		t.Fatalf("pinned Pull = %s, %v", ref, err)
	}
	img, err := s.Status(ctx, "img@sha256:"+digestOf(data))
	if err != nil || img == nil {
		t.Fatalf("Status of the pinned name = %v, %v", img, err)
	}
	if len(img.RepoTags) != 0 || !cmp.Equal(img.RepoDigests, []string{"img@" + ref}) {
		t.Errorf("pinned image tags %v digests %v; want no tag, digest img@%s", img.RepoTags, img.RepoDigests, ref)
	}
}

// TestFaults: every fault mode fails cleanly (clear error, nothing visible)
// or heals, and a pull after the server recovers succeeds.
func TestFaults(t *testing.T) {
	tests := []struct {
		name     string
		mode     imageserver.Mode
		pin      bool
		opts     []Option
		wantErr  []string
		requests int // exact request count of the failed pull, 0: unchecked
	}{
		{
			name:    "cut and Range ignored never completes",
			mode:    imageserver.Mode{CutAfter: 100_000, IgnoreRange: true},
			wantErr: []string{"giving up after 6 attempts", "unexpected EOF"},
			// 1 + 5 retries
			requests: 6,
		},
		{
			name:    "wrong bytes caught by the Digest header",
			mode:    imageserver.WrongBytes,
			wantErr: []string{"server's digest header says sha256:"},
		},
		{
			name:    "wrong bytes caught by the pin",
			mode:    imageserver.Mode{Corrupt: true, NoDigest: true},
			pin:     true,
			wantErr: []string{"but the name pins sha256:"},
		},
		{
			name:     "slow body stalls",
			mode:     imageserver.Mode{ChunkDelay: 10 * time.Second},
			opts:     []Option{WithTimeouts(5*time.Second, 50*time.Millisecond)},
			wantErr:  []string{"no data received for 50ms", "giving up after 6 attempts"},
			requests: 6,
		},
		{
			name:     "redirect loop",
			mode:     imageserver.RedirectLoop,
			wantErr:  []string{"too many redirects: stopped after 10"},
			requests: 11,
		},
		{
			name:     "404 is not retried",
			mode:     imageserver.NotFound,
			wantErr:  []string{"HTTP 404 Not Found"},
			requests: 1,
		},
		{
			name:     "503 is retried",
			mode:     imageserver.Mode{Status: http.StatusServiceUnavailable},
			wantErr:  []string{"HTTP 503 Service Unavailable", "giving up after 6 attempts"},
			requests: 6,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			srv := startServer(t)
			data := fakeQcow2(imgSize, 1<<30, 4)
			srv.AddImage("img", data)
			srv.SetMode("img", tc.mode)
			s := newStore(t, staticTranslator{"img": {URL: srv.URL() + "/img"}}, tc.opts...)
			name := "img"
			if tc.pin {
				name += "@sha256:" + digestOf(data)
			}
			_, err := s.Pull(ctx, name)
			wantErrContains(t, err, append([]string{`pulling image "img`, srv.URL() + "/img"}, tc.wantErr...)...)
			if tc.requests != 0 {
				if n := srv.Stats("img").Requests; n != tc.requests {
					t.Errorf("server saw %d requests, want %d", n, tc.requests)
				}
			}
			assertNothingVisible(t, s, name)

			srv.SetMode("img", imageserver.Normal)
			ref, err := s.Pull(ctx, name)
			if err != nil || ref != "sha256:"+digestOf(data) {
				t.Fatalf("pull after recovery = %s, %v", ref, err)
			}
		})
	}
}

// TestResume: a link cut every 64 KiB still delivers the image, each byte
// once, by resuming with Range.
func TestResume(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	data := fakeQcow2(imgSize, 1<<30, 5)
	srv.AddImage("img", data)
	srv.SetMode("img", imageserver.Cut(64<<10))
	s := newStore(t, staticTranslator{"img": {URL: srv.URL() + "/img"}})
	ref, err := s.Pull(ctx, "img")
	if err != nil || ref != "sha256:"+digestOf(data) {
		t.Fatalf("Pull over a cut link = %s, %v", ref, err)
	}
	st := srv.Stats("img")
	if want := imgSize / (64 << 10); st.Requests != want || st.RangeRequests != want-1 {
		t.Errorf("requests %d (range %d), want %d (range %d)", st.Requests, st.RangeRequests, want, want-1)
	}
	if st.BytesSent != imgSize {
		t.Errorf("server sent %d bytes for a %d-byte image: resume re-downloaded", st.BytesSent, imgSize)
	}
}

// TestRangeIgnoredRestarts: a server that ignores Range makes the retry
// start over, and the result is still right.
func TestRangeIgnoredRestarts(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	data := fakeQcow2(imgSize, 1<<30, 6)
	srv.AddImage("img", data)
	srv.SetMode("img", imageserver.Mode{CutAfter: 300_000, CutTimes: 1, IgnoreRange: true})
	s := newStore(t, staticTranslator{"img": {URL: srv.URL() + "/img"}})
	ref, err := s.Pull(ctx, "img")
	if err != nil || ref != "sha256:"+digestOf(data) {
		t.Fatalf("Pull = %s, %v", ref, err)
	}
	if st := srv.Stats("img"); st.Requests != 2 || st.BytesSent != imgSize+300_000 {
		t.Errorf("requests %d, bytes %d; want 2 and %d", st.Requests, st.BytesSent, imgSize+300_000)
	}
}

func TestConcurrentPullsShareOneDownload(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	data := fakeQcow2(imgSize, 1<<30, 7)
	srv.AddImage("img", data)
	gate := make(chan struct{})
	srv.SetMode("img", imageserver.Mode{Gate: gate})
	u := srv.URL() + "/img"
	s := newStore(t, staticTranslator{"a": {URL: u}, "b": {URL: u}})

	type result struct {
		ref string
		err error
	}
	results := make(chan result, 3)
	pull := func(ctx context.Context, name string) {
		ref, err := s.Pull(ctx, name)
		results <- result{ref, err}
	}
	go pull(ctx, "a")
	waitFor(t, "the first request", func() bool { return srv.Stats("img").Requests == 1 })
	go pull(ctx, "a")
	go pull(ctx, "b")
	// A third waiter that gives up must not cancel the others.
	cctx, cancel := context.WithCancel(ctx)
	go pull(cctx, "a")
	waitFor(t, "four waiters on one download", func() bool { return s.waiters(u) == 4 })
	cancel()
	if r := <-results; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled waiter got %v, want context.Canceled", r.err)
	}
	close(gate)
	for range 3 {
		r := <-results
		if r.err != nil || r.ref != "sha256:"+digestOf(data) {
			t.Errorf("shared pull = %s, %v", r.ref, r.err)
		}
	}
	if n := srv.Stats("img").Requests; n != 1 {
		t.Errorf("server saw %d requests for concurrent pulls, want 1", n)
	}
	for _, n := range []string{"a", "b"} {
		if img, _ := s.Status(ctx, n); img == nil {
			t.Errorf("name %s not linked after the shared download", n)
		}
	}
}

func TestAllWaitersCancelledStopsDownload(t *testing.T) {
	srv := startServer(t)
	srv.AddImage("img", fakeQcow2(imgSize, 1<<30, 8))
	gate := make(chan struct{})
	defer close(gate)
	srv.SetMode("img", imageserver.Mode{Gate: gate})
	s := newStore(t, staticTranslator{"img": {URL: srv.URL() + "/img"}})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { _, err := s.Pull(ctx, "img"); errc <- err }()
	waitFor(t, "the request", func() bool { return srv.Stats("img").Requests == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Pull = %v, want context.Canceled", err)
	}
	waitFor(t, "the download to stop", func() bool { return s.waiters(srv.URL()+"/img") == -1 })
	assertNothingVisible(t, s, "img")
}

// waiters reports how many callers wait on the download of url, -1 when
// there is none.
func (s *Store) waiters(u string) int {
	s.flightsMu.Lock()
	defer s.flightsMu.Unlock()
	f := s.flights[u+"\x00"]
	if f == nil {
		return -1
	}
	return f.waiters
}

func TestNames(t *testing.T) {
	s := newStore(t, nil)
	tests := []struct {
		name, wantErr string
	}{
		{"", "is empty"},
		{"virtlet.cloud/", "is empty"},
		{"..", "'..' path segment"},
		{"a/../../etc/passwd", "'..' path segment"},
		{"./a", "'.' or '..'"},
		{"/etc/passwd", "absolute path"},
		{"a\x00b", "NUL"},
		{"a%2fb", "contains '%'"},
		{strings.Repeat("x", 256), "at most 255"},
		{"img@sha256:1234", "64 lowercase hex"},
		{"@sha256:" + strings.Repeat("a", 64), "no name"},
	}
	for _, tc := range tests {
		_, err := s.Pull(context.Background(), tc.name)
		wantErrContains(t, err, tc.wantErr)
		for _, f := range []func() error{
			func() error { _, err := s.Status(context.Background(), tc.name); return err },
			func() error { return s.Remove(context.Background(), tc.name) },
		} {
			if err := f(); err == nil {
				t.Errorf("%q accepted by Status/Remove", tc.name)
			}
		}
	}
	n, err := parseName("virtlet.cloud/host.example/a/b.qcow2@sha256:" + strings.Repeat("0", 64))
	if err != nil {
		t.Fatal(err)
	}
	want := imageName{full: "host.example/a/b.qcow2@sha256:" + strings.Repeat("0", 64), base: "host.example/a/b.qcow2",
		pin: strings.Repeat("0", 64), link: "host.example%a%b.qcow2@sha256:" + strings.Repeat("0", 64)}
	if diff := cmp.Diff(want, n, cmp.AllowUnexported(imageName{})); diff != "" {
		t.Errorf("parseName (-want +got):\n%s", diff)
	}
}

func TestURLSchemes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	data := fakeQcow2(100_000, 1<<30, 9)
	file := filepath.Join(dir, "disk.qcow2")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, staticTranslator{"disk": {URL: "file://" + file}, "missing": {URL: "file://" + dir + "/missing"}})
	ref, err := s.Pull(ctx, "disk")
	if err != nil || ref != "sha256:"+digestOf(data) {
		t.Fatalf("file pull = %s, %v", ref, err)
	}
	_, err = s.Pull(ctx, "missing")
	wantErrContains(t, err, "missing", "no such file")
	_, err = s.Pull(ctx, "ftp://host/x")
	wantErrContains(t, err, `scheme "ftp" is not supported (accepted: http, https, file)`)

	// Without a scheme the default one is used, as Virtlet did.
	srv := startServer(t)
	srv.AddImage("x.img", data)
	s2 := newStore(t, nil, WithDefaultScheme("http"))
	hostPath := strings.TrimPrefix(srv.URL(), "http://") + "/x.img"
	if ref, err := s2.Pull(ctx, "virtlet.cloud/"+hostPath); err != nil || ref != "sha256:"+digestOf(data) {
		t.Fatalf("pull of %s = %s, %v", hostPath, ref, err)
	}
	if img, _ := s2.Status(ctx, hostPath); img == nil || !cmp.Equal(img.RepoTags, []string{hostPath}) {
		t.Errorf("Status(%s) = %+v", hostPath, img)
	}
}

func TestRefusesQcow2WithBackingFile(t *testing.T) {
	srv := startServer(t)
	data := fakeQcow2(8192, 1<<30, 10)
	data[qcow2OffBackingFile+7] = 200 // backing_file_offset = 200
	srv.AddImage("evil", data)
	s := newStore(t, staticTranslator{"evil": {URL: srv.URL() + "/evil"}})
	_, err := s.Pull(context.Background(), "evil")
	wantErrContains(t, err, "backing file")
	assertNothingVisible(t, s, "evil")
}

func TestGC(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	a, b := fakeQcow2(4096, 1<<20, 11), fakeQcow2(4096, 1<<20, 12)
	srv.AddImage("a", a)
	srv.AddImage("b", b)
	s := newStore(t, staticTranslator{"a": {URL: srv.URL() + "/a"}, "b": {URL: srv.URL() + "/b"}})
	for _, n := range []string{"a", "b"} {
		if _, err := s.Pull(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	// Orphan both contents by dropping their names behind the store's back
	// (as a crash between steps would), and mark b in use.
	for _, n := range []string{"a", "b"} {
		if err := os.Remove(filepath.Join(s.dir, "links", n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../data/"+strings.Repeat("c", 64), filepath.Join(s.dir, "links", "dangling")); err != nil {
		t.Fatal(err)
	}
	s.SetInUse(func() map[string]bool { return map[string]bool{"sha256:" + digestOf(b): true} })
	removed, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"sha256:" + digestOf(a)}, removed); diff != "" {
		t.Errorf("GC removed (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "data", digestOf(b))); err != nil {
		t.Errorf("GC removed an image in use: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(s.dir, "links", "dangling")); !os.IsNotExist(err) {
		t.Errorf("dangling link survived GC: %v", err)
	}
}

func TestFsInfo(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	srv.AddImage("a", fakeQcow2(imgSize, 1<<30, 13))
	s := newStore(t, staticTranslator{"a": {URL: srv.URL() + "/a"}})
	before, err := s.FsInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	after, err := s.FsInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Mountpoint != s.dir || after.UsedBytes < before.UsedBytes+imgSize || after.InodesUsed != before.InodesUsed+2 {
		t.Errorf("FsInfo before %+v after %+v; want +%d bytes and +2 inodes (data, link) at %s", before, after, imgSize, s.dir)
	}
}

func TestNewStoreCleansPartialDownloads(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewStore(dir, nil); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	for _, f := range []string{"link-123", "partial-orphan", "partial-kept", "partial-kept.json", "partial-kept.json.new", "partial-gone.json"} {
		if err := os.WriteFile(filepath.Join(tmp, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewStore(dir, nil); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if want := []string{"partial-kept", "partial-kept.json"}; !cmp.Equal(left, want) {
		t.Errorf("tmp/ after NewStore: %v, want %v (a partial download and its description)", left, want)
	}
}

// tlsFixture serves one image over HTTPS with client certificates required.
func tlsFixture(t *testing.T) (*imageserver.Server, *imageserver.Certs, []byte) {
	t.Helper()
	certs, err := imageserver.GenerateCerts()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := certs.Server.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	srv := imageserver.New(imageserver.Options{Certificate: sc, ClientCAs: certs.Pool})
	if err := srv.StartTLS(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	data := fakeQcow2(100_000, 1<<30, 14)
	srv.AddImage("img", data)
	return srv, certs, data
}

func TestTLSTransports(t *testing.T) {
	srv, certs, data := tlsFixture(t)
	ca := TLSCertificate{Cert: string(certs.CA.Cert)}
	client := TLSCertificate{Cert: string(certs.Client.Cert), Key: string(certs.Client.Key)}
	tests := []struct {
		name    string
		url     string
		tls     *TLSConfig
		wantErr string
	}{
		{"CA and client certificate", srv.URL() + "/img", &TLSConfig{Certificates: []TLSCertificate{ca, client}}, ""},
		{"no client certificate", srv.URL() + "/img", &TLSConfig{Certificates: []TLSCertificate{ca}}, "tls: certificate required"},
		{"unknown CA", srv.URL() + "/img", &TLSConfig{Certificates: []TLSCertificate{client}}, "certificate signed by unknown authority"},
		{"insecure", srv.URL() + "/img", &TLSConfig{Certificates: []TLSCertificate{client}, Insecure: true}, ""},
		{"serverName", srv.URL() + "/img", &TLSConfig{Certificates: []TLSCertificate{ca, client}, ServerName: "images.test"}, ""},
		{"wrong serverName", srv.URL() + "/img", &TLSConfig{Certificates: []TLSCertificate{ca, client}, ServerName: "other.test"}, "other.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.Stats("img").Requests
			s := newStore(t, staticTranslator{"img": {URL: tc.url, Transport: Transport{TLS: tc.tls}, TransportName: "secure"}})
			ref, err := s.Pull(context.Background(), "img")
			if tc.wantErr == "" {
				if err != nil || ref != "sha256:"+digestOf(data) {
					t.Fatalf("Pull = %s, %v", ref, err)
				}
				return
			}
			wantErrContains(t, err, tc.wantErr)
			assertNothingVisible(t, s, "img")
			if tc.url == srv.URL()+"/img" && srv.Stats("img").Requests != before {
				t.Errorf("a request got through a failed handshake")
			}
		})
	}
}

func TestProxyAndRedirectLimit(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	data := fakeQcow2(100_000, 1<<30, 15)
	srv.AddImage("img", data)
	srv.AddImage("loop", data)
	srv.SetMode("loop", imageserver.RedirectLoop)

	var proxied atomic.Int32
	target, _ := url.Parse(srv.URL())
	rp := httputil.NewSingleHostReverseProxy(target)
	psrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		rp.ServeHTTP(w, r)
	})}
	ln := listenLocal(t)
	go func() { _ = psrv.Serve(ln) }()
	t.Cleanup(func() { _ = psrv.Close() })

	three := 3
	s := newStore(t, staticTranslator{
		// The image host name does not resolve: only the proxy can reach it.
		"img":  {URL: "http://images.invalid/img", Transport: Transport{Proxy: "http://" + ln.Addr().String()}},
		"loop": {URL: srv.URL() + "/loop", Transport: Transport{MaxRedirects: &three}},
	})
	if ref, err := s.Pull(ctx, "img"); err != nil || ref != "sha256:"+digestOf(data) {
		t.Fatalf("Pull through the proxy = %s, %v", ref, err)
	}
	if proxied.Load() != 1 {
		t.Errorf("proxy saw %d requests, want 1", proxied.Load())
	}
	_, err := s.Pull(ctx, "loop")
	wantErrContains(t, err, "stopped after 3 (transport maxRedirects)")
	if n := srv.Stats("loop").Requests; n != 4 {
		t.Errorf("redirect loop: %d requests, want 4", n)
	}
}

func TestTransportTimeoutOverridesDefault(t *testing.T) {
	srv := startServer(t)
	srv.AddImage("img", fakeQcow2(imgSize, 1<<30, 16))
	srv.SetMode("img", imageserver.Mode{ChunkDelay: 10 * time.Second})
	s := newStore(t, staticTranslator{"img": {URL: srv.URL() + "/img", Transport: Transport{TimeoutMS: 40}}})
	_, err := s.Pull(context.Background(), "img")
	wantErrContains(t, err, "no data received for 40ms")
}

func TestContentChangedDuringResume(t *testing.T) {
	// The first response is cut; before the retry the image is replaced.
	// If-Range makes the server send the new image whole, never a mix.
	ctx := context.Background()
	srv := startServer(t)
	old, replacement := fakeQcow2(imgSize, 1<<30, 17), fakeQcow2(imgSize, 1<<30, 18)
	srv.AddImage("img", old)
	srv.SetMode("img", imageserver.Mode{CutAfter: 200_000, CutTimes: 1})
	var once sync.Once
	tr := translatorFunc(func(ctx context.Context, name string) (Endpoint, error) {
		return Endpoint{URL: srv.URL() + "/img"}, nil
	})
	s := newStore(t, tr, WithBackOff(func() backoff.BackOff {
		return &replaceOnRetry{once: &once, f: func() { srv.AddImage("img", replacement) }}
	}))
	ref, err := s.Pull(ctx, "img")
	if err != nil || ref != "sha256:"+digestOf(replacement) {
		t.Fatalf("Pull = %s, %v; want the replacement sha256:%s", ref, err, digestOf(replacement))
	}
	if st := srv.Stats("img"); st.RangeRequests != 1 || st.BytesSent != 200_000+imgSize {
		t.Errorf("stats %+v: want one Range request answered with the whole new image", st)
	}
}

type translatorFunc func(ctx context.Context, name string) (Endpoint, error)

func (f translatorFunc) Translate(ctx context.Context, name string) (Endpoint, error) {
	return f(ctx, name)
}

// replaceOnRetry is a back-off that runs f before the first retry.
type replaceOnRetry struct {
	once  *sync.Once
	f     func()
	tries int
}

func (r *replaceOnRetry) NextBackOff() time.Duration {
	r.once.Do(r.f)
	if r.tries++; r.tries > 5 {
		return backoff.Stop
	}
	return time.Millisecond
}

func (r *replaceOnRetry) Reset() {}

func listenLocal(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestClientCertificateViaConfigFile: the server requires a client
// certificate; the ConfigMap-style file first lacks it (clear error, nothing
// stored), then gains it, and the next pull succeeds with no restart.
func TestClientCertificateViaConfigFile(t *testing.T) {
	srv, certs, data := tlsFixture(t)
	dir := t.TempDir()
	indent := func(pem []byte) string {
		return "          " + strings.ReplaceAll(strings.TrimSpace(string(pem)), "\n", "\n          ")
	}
	config := func(withClient bool) string {
		c := "translations:\n- name: secure\n  url: " + srv.URL() + "/img\n  transport: tls\n" +
			"transports:\n  tls:\n    tls:\n      certificates:\n      - cert: |\n" + indent(certs.CA.Cert) + "\n"
		if withClient {
			c += "      - cert: |\n" + indent(certs.Client.Cert) + "\n        key: |\n" + indent(certs.Client.Key) + "\n"
		}
		return c
	}
	file := filepath.Join(dir, "images.yaml")
	writeFile(t, file, config(false))
	s := newStore(t, NewTranslations(dir))
	_, err := s.Pull(context.Background(), "virtlet.cloud/secure")
	wantErrContains(t, err, `pulling image "virtlet.cloud/secure" (file:images.yaml translations[0])`, "certificate required")
	assertNothingVisible(t, s, "secure")

	// Replace the file as kubelet does (new inode), then pull again.
	writeFile(t, file+".new", config(true))
	if err := os.Rename(file+".new", file); err != nil {
		t.Fatal(err)
	}
	ref, err := s.Pull(context.Background(), "virtlet.cloud/secure")
	if err != nil || ref != "sha256:"+digestOf(data) {
		t.Fatalf("Pull with the client certificate = %s, %v", ref, err)
	}
}

// TestCutWithoutRetriesLeft: a cut with no retry allowed fails cleanly,
// keeps what it received out of sight, and the next pull, even by a
// restarted podvisor, resumes from there.
func TestCutWithoutRetriesLeft(t *testing.T) {
	srv := startServer(t)
	data := fakeQcow2(imgSize, 1<<30, 19)
	srv.AddImage("img", data)
	srv.SetMode("img", imageserver.Mode{CutAfter: 300_000, CutTimes: 1})
	tr := staticTranslator{"img": {URL: srv.URL() + "/img"}}
	noRetry := WithBackOff(func() backoff.BackOff { return &backoff.StopBackOff{} })
	s := newStore(t, tr, noRetry)
	_, err := s.Pull(context.Background(), "img")
	wantErrContains(t, err, "giving up after 1 attempts, 300000 bytes received", "unexpected EOF")
	assertNoImage(t, s, "img", "data", "links")
	if n := len(partials(t, s)); n != 1 {
		t.Fatalf("%d partial downloads kept, want 1", n)
	}

	restarted, err := NewStore(s.dir, tr, append(testPolicy(), noRetry)...)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := restarted.Pull(context.Background(), "img")
	if err != nil || ref != "sha256:"+digestOf(data) {
		t.Fatalf("Pull after the cut = %s, %v", ref, err)
	}
	if st := srv.Stats("img"); st.Requests != 2 || st.RangeRequests != 1 || st.BytesSent != imgSize {
		t.Errorf("stats %+v: want the second request to resume at 300000", st)
	}
	if n := len(partials(t, s)); n != 0 {
		t.Errorf("%d partial downloads left after success", n)
	}
}

// partials lists tmp/partial-* files (data, not descriptions).
func partials(t *testing.T, s *Store) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(s.dir, "tmp", partialPrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range m {
		if !strings.HasSuffix(p, partialMeta) {
			out = append(out, p)
		}
	}
	return out
}

// TestCorruptPartialIsCaught: a kept partial download that was damaged on
// disk makes the verified pull fail, is dropped, and the next pull starts
// afresh.
func TestCorruptPartialIsCaught(t *testing.T) {
	srv := startServer(t)
	data := fakeQcow2(imgSize, 1<<30, 21)
	srv.AddImage("img", data)
	srv.SetMode("img", imageserver.Mode{CutAfter: 300_000, CutTimes: 1})
	s := newStore(t, staticTranslator{"img": {URL: srv.URL() + "/img"}},
		WithBackOff(func() backoff.BackOff { return &backoff.StopBackOff{} }))
	if _, err := s.Pull(context.Background(), "img"); err == nil {
		t.Fatal("cut pull succeeded")
	}
	p := partials(t, s)
	if len(p) != 1 {
		t.Fatalf("partials %v, want 1", p)
	}
	f, err := os.OpenFile(p[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xde, 0xad}, 1000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = s.Pull(context.Background(), "img")
	wantErrContains(t, err, "server's digest header says sha256:"+digestOf(data))
	assertNothingVisible(t, s, "img")
	if ref, err := s.Pull(context.Background(), "img"); err != nil || ref != "sha256:"+digestOf(data) {
		t.Fatalf("fresh pull = %s, %v", ref, err)
	}
}

func TestPartialTTL(t *testing.T) {
	srv := startServer(t)
	srv.AddImage("img", fakeQcow2(imgSize, 1<<30, 22))
	srv.SetMode("img", imageserver.Mode{CutAfter: 300_000, CutTimes: 1})
	tr := staticTranslator{"img": {URL: srv.URL() + "/img"}}
	s := newStore(t, tr, WithBackOff(func() backoff.BackOff { return &backoff.StopBackOff{} }))
	if _, err := s.Pull(context.Background(), "img"); err == nil {
		t.Fatal("cut pull succeeded")
	}
	if _, err := s.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(partials(t, s)) != 1 {
		t.Fatal("GC dropped a fresh partial download")
	}
	if _, err := NewStore(s.dir, tr, WithPartialTTL(time.Nanosecond)); err != nil {
		t.Fatal(err)
	}
	assertNothingVisible(t, s, "img")
}

func TestPullByRef(t *testing.T) {
	ctx := context.Background()
	srv := startServer(t)
	data := fakeQcow2(4096, 1<<20, 20)
	srv.AddImage("a", data)
	s := newStore(t, staticTranslator{"a": {URL: srv.URL() + "/a"}})
	ref := "sha256:" + digestOf(data)
	_, err := s.Pull(ctx, ref)
	wantErrContains(t, err, "a bare digest can only name an image already in the store")
	if _, err := s.Pull(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{ref, digestOf(data)} {
		if got, err := s.Pull(ctx, q); err != nil || got != ref {
			t.Errorf("Pull(%s) of present content = %s, %v", q, got, err)
		}
	}
}

func TestRefusesContentThatIsNoDisk(t *testing.T) {
	srv := startServer(t)
	srv.AddImage("portal", []byte("\n<!DOCTYPE html><html><body>Please log in</body></html>"))
	srv.AddImage("empty", nil)
	s := newStore(t, staticTranslator{"portal": {URL: srv.URL() + "/portal"}, "empty": {URL: srv.URL() + "/empty"}})
	_, err := s.Pull(context.Background(), "portal")
	wantErrContains(t, err, "HTML page, not a disk image")
	assertNothingVisible(t, s, "portal")
	_, err = s.Pull(context.Background(), "empty")
	wantErrContains(t, err, "content is empty")
	assertNothingVisible(t, s, "empty")
}

func TestNilTranslations(t *testing.T) {
	var tr *Translations
	ep, err := tr.Translate(context.Background(), "http://x/y")
	if err != nil || ep.URL != "http://x/y" {
		t.Errorf("nil Translations: %+v, %v", ep, err)
	}
}

func TestNoSpaceFailsFast(t *testing.T) {
	srv := startServer(t)
	srv.AddImage("img", fakeQcow2(imgSize, 1<<30, 23))
	orig := freeSpace
	t.Cleanup(func() { freeSpace = orig })
	freeSpace = func(string) (uint64, uint64, error) { return 1000, 1 << 40, nil }
	s := newStore(t, staticTranslator{"img": {URL: srv.URL() + "/img"}})
	_, err := s.Pull(context.Background(), "img")
	wantErrContains(t, err, "needs 1048576 more bytes but the image store's file system has 1000 free")
	assertNothingVisible(t, s, "img")
	if n := srv.Stats("img").Requests; n != 1 {
		t.Errorf("%d requests, want 1: no space is not retried", n)
	}
}
