package image

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// withUser is img with config User user.
func withUser(t testing.TB, img v1.Image, user string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	c.User = user
	out, err := mutate.Config(img, c)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wantUser checks the user Status reports for every name and the ref, and
// List for the ref.
func wantUser(t *testing.T, s *Store, user string, ref string, names ...string) {
	t.Helper()
	ctx := context.Background()
	for _, n := range append(names, ref) {
		st, err := s.Status(ctx, n)
		if err != nil || st == nil {
			t.Errorf("Status(%s) = %v, %v", n, st, err)
			continue
		}
		if st.User != user {
			t.Errorf("Status(%s).User = %q, want %q", n, st.User, user)
		}
	}
	imgs, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		if img.Ref == ref && img.User != user {
			t.Errorf("List: %s has User %q, want %q", ref, img.User, user)
		}
	}
}

// The config's User is kept as the image gives it (critest's four
// test-image-user-* images), and none is the empty user.
func TestOCIKeepsTheConfigUser(t *testing.T) {
	ctx := context.Background()
	host := testRegistry(t, nil)
	s := ociStore(t, host)
	for tag, user := range map[string]string{
		"uid": "1002", "username": "www-data", "uid-group": "1003:1004", "username-group": "www-data:1004", "none": "",
	} {
		name := host + "/user:" + tag
		digest := push(t, name, withUser(t, containerDisk(t, tarOf(t, [2]string{"disk/d.img", rawDisk(tag)})), user))
		ref, err := s.PullImage(ctx, "", name, nil)
		if err != nil {
			t.Fatalf("pull %s: %v", name, err)
		}
		wantUser(t, s, user, ref, name, host+"/user@"+digest)
	}
}

// One disk under two manifests is one image: its user is the one their
// configs agree on, none when they disagree. Removing the image forgets
// its manifests, so the disk pulled again under one of them has its user.
func TestOCIUserOfOneDiskUnderTwoManifests(t *testing.T) {
	ctx := context.Background()
	host := testRegistry(t, nil)
	disk := containerDisk(t, tarOf(t, [2]string{"disk/d.img", rawDisk("shared")}))
	push(t, host+"/a:v1", withUser(t, disk, "107"))
	push(t, host+"/b:v1", withUser(t, disk, "107:107"))
	push(t, host+"/c:v1", withUser(t, disk, "www-data"))
	s := ociStore(t, host)
	ref, err := s.PullImage(ctx, "", host+"/a:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := s.PullImage(ctx, "", host+"/b:v1", nil); err != nil || r != ref {
		t.Fatalf("pull b: %s, %v; want the same disk %s", r, err, ref)
	}
	wantUser(t, s, "", ref, host+"/a:v1", host+"/b:v1") // "107" and "107:107" differ as given
	if err := s.RemoveImage(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if r, err := s.PullImage(ctx, "", host+"/c:v1", nil); err != nil || r != ref {
		t.Fatalf("pull c: %s, %v; want the same disk %s", r, err, ref)
	}
	wantUser(t, s, "www-data", ref, host+"/c:v1")
}

// An image pulled by a podvisor that kept no config (no configs/ record)
// still loads, without a user; GC collects records left without their
// manifest. A URL image has no user.
func TestOCIUserOfOlderRecords(t *testing.T) {
	ctx := context.Background()
	host := testRegistry(t, nil)
	name := host + "/old:v1"
	push(t, name, withUser(t, containerDisk(t, tarOf(t, [2]string{"disk/d.img", rawDisk("old")})), "1002"))
	s := ociStore(t, host)
	ref, err := s.PullImage(ctx, "", name, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantUser(t, s, "1002", ref, name)
	records, _ := os.ReadDir(s.configsDir())
	if len(records) != 1 {
		t.Fatalf("configs/ holds %d records, want 1", len(records))
	}
	if err := os.Remove(filepath.Join(s.configsDir(), records[0].Name())); err != nil {
		t.Fatal(err)
	}
	wantUser(t, s, "", ref, name)

	// A record of no manifest (a pull cut between the two writes) goes at GC.
	stray := strings.Repeat("ab", 32)
	if err := s.writeConfigRecord(stray, configRecord{User: "0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.configsDir(), stray)); !os.IsNotExist(err) {
		t.Errorf("GC kept a config record without its manifest: %v", err)
	}
	wantUser(t, s, "", ref, name)

	// A record that is not JSON does not hide the image.
	for _, m := range mustManifests(t, s)[strings.TrimPrefix(ref, "sha256:")] {
		if err := os.WriteFile(filepath.Join(s.configsDir(), m), []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	wantUser(t, s, "", ref, name)

	srv := startServer(t)
	srv.AddImage("plain.img", []byte(rawDisk("url")))
	u := srv.URL() + "/plain.img"
	us := newStore(t, nil)
	uref, err := us.Pull(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	wantUser(t, us, "", uref, u)
}

func mustManifests(t *testing.T, s *Store) map[string][]string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.manifestsByHex()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A config blob that does not match its digest fails the pull, leaving
// nothing.
func TestOCIConfigIsVerified(t *testing.T) {
	ctx := context.Background()
	img := withUser(t, containerDisk(t, tarOf(t, [2]string{"disk/d.img", rawDisk("tampered")})), "0")
	cd, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	host := testRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+cd.String()) {
				_, _ = w.Write([]byte(`{"config":{"User":"1000"}}`))
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	push(t, host+"/t:v1", img)
	s := ociStore(t, host)
	_, err = s.PullImage(ctx, "", host+"/t:v1", nil)
	wantErrContains(t, err, "image config "+cd.String(), "the content's digest is")
	assertNothingPartial(t, s)
}
