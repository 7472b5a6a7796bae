package image

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/podvisor/podvisor/fakes/imageserver"
)

// fastRetries keeps fault tests quick: 5 retries 5 ms apart.
func fastRetries() Option {
	return WithBackOff(func() backoff.BackOff {
		return backoff.WithMaxRetries(backoff.NewConstantBackOff(5*time.Millisecond), 5)
	})
}

// staticTranslator maps names to endpoints from a map, as the operator's
// files (unless an entry says another Origin); others are untranslated.
type staticTranslator map[string]Endpoint

func (m staticTranslator) Translate(_ context.Context, name string) (Endpoint, error) {
	if ep, ok := m[name]; ok {
		if ep.Origin == OriginUntranslated {
			ep.Origin = OriginOperator
		}
		return ep, nil
	}
	return Endpoint{URL: name, Origin: OriginUntranslated}, nil
}

// testPolicy lets the tests' servers, on loopback, be reached and their
// URLs be pulled as names; policy tests use NewStore without it.
func testPolicy() []Option {
	return []Option{
		fastRetries(), WithAllowUntranslated(true),
		WithAllowNetworks([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}),
	}
}

func newStore(t *testing.T, tr Translator, opts ...Option) *Store {
	t.Helper()
	s, err := NewStore(t.TempDir(), tr, append(testPolicy(), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startServer(t *testing.T) *imageserver.Server {
	t.Helper()
	srv := imageserver.New(imageserver.Options{})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// fakeQcow2 returns n bytes that start with a valid qcow2 v3 header of the
// given virtual size and continue with pseudo-random data.
func fakeQcow2(n int, virtualSize uint64, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	copy(b, qcow2Magic)
	binary.BigEndian.PutUint32(b[4:], 3)
	binary.BigEndian.PutUint64(b[qcow2OffBackingFile:], 0)
	binary.BigEndian.PutUint64(b[qcow2OffSize:], virtualSize)
	binary.BigEndian.PutUint64(b[qcow2OffIncompatible:], 0)
	return b
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// assertNothingVisible checks that a failed pull left no image, no name and
// no temporary file behind.
func assertNothingVisible(t *testing.T, s *Store, name string) {
	t.Helper()
	assertNoImage(t, s, name, "data", "links", "tmp")
}

// assertNoImage checks that no image or name is visible; dirs lists the
// store directories that must be empty.
func assertNoImage(t *testing.T, s *Store, name string, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		entries, err := os.ReadDir(filepath.Join(s.dir, d))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("%s/ holds %v after a failed pull, want nothing", d, names)
		}
	}
	imgs, err := s.List(context.Background())
	if err != nil || len(imgs) != 0 {
		t.Errorf("List = %v, %v; want no image", imgs, err)
	}
	if img, err := s.Status(context.Background(), name); img != nil || err != nil {
		t.Errorf("Status(%q) = %+v, %v; want nil, nil", name, img, err)
	}
}

func wantErrContains(t *testing.T, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

// waitFor polls cond with a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
