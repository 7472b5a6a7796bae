package daemon

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"google.golang.org/protobuf/testing/protocmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// authRegistry is an in-process registry on loopback that wants basic
// auth alice:s3cret.
func authRegistry(t *testing.T) string {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pushContainerDisk pushes a containerDisk holding disk as /disk/disk.img
// and returns its manifest digest.
func pushContainerDisk(t *testing.T, ref string, disk []byte) string {
	t.Helper()
	return pushContainerDiskAs(t, ref, disk, "")
}

// pushContainerDiskAs is pushContainerDisk with config User user.
func pushContainerDiskAs(t *testing.T, ref string, disk []byte, user string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "disk/disk.img", Mode: 0o444, Size: int64(len(disk)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(disk)
	tw.Close()
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		if img, err = mutate.Config(img, v1.Config{User: user}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d.String()
}

// TestOCIImageThroughCRI: a containerDisk pulled through the CRI with the
// request's AuthConfig is reported as containerd reports images, found by
// every name and its ID, boots a VM by its name, and RemoveImage by one
// name removes all; Virtlet names beside it are reported as before.
func TestOCIImageThroughCRI(t *testing.T) {
	host := authRegistry(t)
	h := newHarness(t)
	h.stop()
	h.cfg.ImageInsecureRegistries = []string{host}
	h.start()
	c := ctx(t)
	disk := bytes.Repeat([]byte("containerDisk\x00"), 1<<14)
	tag := host + "/disks/cirros:v1"
	digest := pushContainerDisk(t, tag, disk)
	spec := func(s string) *runtimeapi.ImageSpec { return &runtimeapi.ImageSpec{Image: s} }

	_, err := h.img.PullImage(c, &runtimeapi.PullImageRequest{Image: spec(tag)})
	if err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Fatalf("PullImage without credentials: %v, want UNAUTHORIZED", err)
	}
	auth := &runtimeapi.AuthConfig{Username: "alice", Password: "s3cret"}
	pulled, err := h.img.PullImage(c, &runtimeapi.PullImageRequest{Image: spec(tag), Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.img.PullImage(c, &runtimeapi.PullImageRequest{Image: spec("virtlet.cloud/cirros")}); err != nil {
		t.Fatal(err)
	}
	want := &runtimeapi.Image{Id: pulled.ImageRef, Size: uint64(len(disk)), Spec: spec(pulled.ImageRef),
		RepoTags: []string{tag}, RepoDigests: []string{host + "/disks/cirros@" + digest}}
	for _, q := range []string{tag, host + "/disks/cirros@" + digest, pulled.ImageRef} {
		st, err := h.img.ImageStatus(c, &runtimeapi.ImageStatusRequest{Image: spec(q)})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, st.GetImage(), protocmp.Transform()); diff != "" {
			t.Errorf("ImageStatus(%s) (-want +got):\n%s", q, diff)
		}
	}
	st, _ := h.img.ImageStatus(c, &runtimeapi.ImageStatusRequest{Image: spec("virtlet.cloud/cirros")})
	if got := st.GetImage().GetRepoTags(); !cmp.Equal(got, []string{"virtlet.cloud/cirros:latest"}) {
		t.Errorf("the Virtlet image's RepoTags %q, want [virtlet.cloud/cirros:latest]", got)
	}

	run, err := h.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: sandboxConfig("oci")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: run.PodSandboxId, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "vm"}, Image: spec(tag)}, SandboxConfig: sandboxConfig("oci")}); err != nil {
		t.Fatalf("CreateContainer with the containerDisk: %v", err)
	}
	if _, err := h.img.RemoveImage(c, &runtimeapi.RemoveImageRequest{Image: spec(host + "/disks/cirros@" + digest)}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{tag, host + "/disks/cirros@" + digest} {
		if st, _ := h.img.ImageStatus(c, &runtimeapi.ImageStatusRequest{Image: spec(q)}); st.GetImage() != nil {
			t.Errorf("after RemoveImage by digest, ImageStatus(%s) = %v", q, st.GetImage())
		}
	}
	// The VM uses the disk: it stays, listed by ID, without names.
	st, _ = h.img.ImageStatus(c, &runtimeapi.ImageStatusRequest{Image: spec(pulled.ImageRef)})
	if st.GetImage() == nil || len(st.GetImage().GetRepoTags()) != 0 {
		t.Errorf("the disk a VM uses, after RemoveImage: %v, want it by ID without tags", st.GetImage())
	}
}

// The containerDisk's config User reaches ImageStatus and ListImages as
// containerd reports it: a Uid, or a Username, the group dropped.
func TestOCIImageUserThroughCRI(t *testing.T) {
	host := authRegistry(t)
	h := newHarness(t)
	h.stop()
	h.cfg.ImageInsecureRegistries = []string{host}
	h.start()
	c := ctx(t)
	auth := &runtimeapi.AuthConfig{Username: "alice", Password: "s3cret"}
	for _, tc := range []struct {
		user     string
		uid      *runtimeapi.Int64Value
		username string
	}{
		{"1003:1004", &runtimeapi.Int64Value{Value: 1003}, ""},
		{"www-data:1004", nil, "www-data"},
		{"", nil, ""},
	} {
		tag := host + "/disks/user:v-" + strings.NewReplacer(":", "-").Replace(tc.user)
		pushContainerDiskAs(t, tag, bytes.Repeat([]byte("user "+tc.user+"\x00"), 1<<12), tc.user)
		pulled, err := h.img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: tag}, Auth: auth})
		if err != nil {
			t.Fatal(err)
		}
		st, err := h.img.ImageStatus(c, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: tag}})
		if err != nil {
			t.Fatal(err)
		}
		if got := st.GetImage(); !cmp.Equal(got.GetUid(), tc.uid, protocmp.Transform()) || got.GetUsername() != tc.username {
			t.Errorf("ImageStatus of user %q: Uid %v, Username %q; want %v, %q", tc.user, got.GetUid(), got.GetUsername(), tc.uid, tc.username)
		}
		l, err := h.img.ListImages(c, &runtimeapi.ListImagesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range l.GetImages() {
			if img.GetId() == pulled.ImageRef && (!cmp.Equal(img.GetUid(), tc.uid, protocmp.Transform()) || img.GetUsername() != tc.username) {
				t.Errorf("ListImages, user %q: Uid %v, Username %q", tc.user, img.GetUid(), img.GetUsername())
			}
		}
	}
}
