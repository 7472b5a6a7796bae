package daemon

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestImageUnderTwoNames: "cirros" and "alias" translate to one file. The
// CRI sees one image (ID = content digest) with both repo tags, under
// either name or the ID; RemoveImage of a name or of the ID removes every
// name (as containerd), never the content a VM uses.
func TestImageUnderTwoNames(t *testing.T) {
	h := newHarness(t)
	c := ctx(t)
	conf := "translations:\n- name: alias\n  url: file://" + filepath.Join(h.dir, "cirros.img") + "\n"
	if err := os.WriteFile(filepath.Join(h.cfg.ImageTranslationsDir, "alias.yaml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := func(s string) *runtimeapi.ImageSpec { return &runtimeapi.ImageSpec{Image: s} }
	var ref string
	for _, n := range []string{"virtlet.cloud/cirros:latest", "virtlet.cloud/alias"} {
		r, err := h.img.PullImage(c, &runtimeapi.PullImageRequest{Image: spec(n)})
		if err != nil {
			t.Fatal(err)
		}
		if ref != "" && r.ImageRef != ref {
			t.Fatalf("PullImage(%s) = %s, want %s (same content)", n, r.ImageRef, ref)
		}
		ref = r.ImageRef
	}
	image := func(tags ...string) *runtimeapi.Image {
		img := &runtimeapi.Image{Id: ref, Size: 1 << 20, Spec: spec(ref), RepoTags: []string{}, RepoDigests: []string{}}
		for _, tag := range tags {
			img.RepoTags = append(img.RepoTags, "virtlet.cloud/"+tag+":latest")
			img.RepoDigests = append(img.RepoDigests, "virtlet.cloud/"+tag+"@"+ref)
		}
		return img
	}
	// check compares ImageStatus and the filtered ListImages of each query
	// with want (nil: absent), and, when want is set, ListImages with it.
	check := func(step string, want *runtimeapi.Image, queries ...string) {
		t.Helper()
		var wantList []*runtimeapi.Image
		if want != nil {
			wantList = []*runtimeapi.Image{want}
			list, err := h.img.ListImages(c, &runtimeapi.ListImagesRequest{})
			if err != nil {
				t.Fatalf("%s: ListImages: %v", step, err)
			}
			if diff := cmp.Diff(wantList, list.Images, protocmp.Transform()); diff != "" {
				t.Errorf("%s: ListImages (-want +got):\n%s", step, diff)
			}
		}
		for _, q := range queries {
			st, err := h.img.ImageStatus(c, &runtimeapi.ImageStatusRequest{Image: spec(q)})
			if err != nil {
				t.Fatalf("%s: ImageStatus(%s): %v", step, q, err)
			}
			if diff := cmp.Diff(want, st.Image, protocmp.Transform()); diff != "" {
				t.Errorf("%s: ImageStatus(%s) (-want +got):\n%s", step, q, diff)
			}
			filtered, err := h.img.ListImages(c, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: spec(q)}})
			if err != nil {
				t.Fatalf("%s: ListImages(filter %s): %v", step, q, err)
			}
			if diff := cmp.Diff(wantList, filtered.Images, protocmp.Transform()); diff != "" {
				t.Errorf("%s: ListImages(filter %s) (-want +got):\n%s", step, q, diff)
			}
		}
	}
	remove := func(q string, want codes.Code) {
		t.Helper()
		if _, err := h.img.RemoveImage(c, &runtimeapi.RemoveImageRequest{Image: spec(q)}); status.Code(err) != want {
			t.Fatalf("RemoveImage(%s) = %v, want %v", q, err, want)
		}
	}

	check("pulled under two names", image("alias", "cirros"),
		"virtlet.cloud/cirros", "virtlet.cloud/cirros:latest", "virtlet.cloud/alias:latest", "alias", ref)

	remove("virtlet.cloud/alias:latest", codes.OK)
	check("removed by one name", nil, "virtlet.cloud/alias:latest", "virtlet.cloud/cirros:latest", ref)

	// A VM uses the content: its names can go, the content cannot.
	if _, err := h.img.PullImage(c, &runtimeapi.PullImageRequest{Image: spec("virtlet.cloud/alias:latest")}); err != nil {
		t.Fatal(err)
	}
	run, _ := h.createdVM(t, "vm1")
	remove(ref, codes.FailedPrecondition)
	check("removal by ID refused", image("alias", "cirros"), ref)
	remove("virtlet.cloud/cirros:latest", codes.OK)
	check("every name removed while in use", image(), ref)
	check("every name removed while in use", nil, "virtlet.cloud/cirros:latest", "virtlet.cloud/alias:latest")

	if _, err := h.rt.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: run.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"virtlet.cloud/cirros:latest", "virtlet.cloud/alias:latest"} {
		if _, err := h.img.PullImage(c, &runtimeapi.PullImageRequest{Image: spec(n)}); err != nil {
			t.Fatal(err)
		}
	}
	remove(ref, codes.OK)
	check("removed by ID", nil, ref, "virtlet.cloud/cirros:latest", "virtlet.cloud/alias:latest")
	if list, err := h.img.ListImages(c, &runtimeapi.ListImagesRequest{}); err != nil || len(list.Images) != 0 {
		t.Errorf("ListImages after removal by ID = %v, %v; want none", list, err)
	}
	remove(ref, codes.OK) // absent: not an error
}

// TestPullGivesUp: a pull from a host that refuses connections fails after
// --image-pull-give-up with an error naming the image, the URL and the
// cause, not as a cancellation.
func TestPullGivesUp(t *testing.T) {
	h := newHarness(t)
	h.stop()
	const bound = 300 * time.Millisecond
	h.cfg.ImagePullGiveUp = bound
	h.start()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String() + "/unreachable.qcow2"
	ln.Close()
	conf := "translations:\n- name: unreachable\n  url: " + u + "\n"
	if err := os.WriteFile(filepath.Join(h.cfg.ImageTranslationsDir, "unreachable.yaml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = h.img.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/unreachable:latest"}})
	elapsed := time.Since(start)
	st := status.Convert(err)
	if err == nil || st.Code() != codes.Unknown {
		t.Fatalf("PullImage = %v, want an Unknown error", err)
	}
	for _, want := range []string{`"virtlet.cloud/unreachable:latest"`, u, "giving up after 300ms without progress", "connection refused"} {
		if !strings.Contains(st.Message(), want) {
			t.Errorf("error %q does not contain %q", st.Message(), want)
		}
	}
	// Loose: the bound cannot fire early; late only on a very busy machine.
	if elapsed < bound || elapsed > 30*bound {
		t.Errorf("PullImage returned after %v, want about %v", elapsed, bound)
	}
	for _, d := range []string{"data", "links", "tmp"} {
		entries, err := os.ReadDir(filepath.Join(h.cfg.StateDir, "images", d))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Errorf("%s/ holds %d entries after the failed pull, want none", d, len(entries))
		}
	}
}

// TestDownloadPolicyFlags: with the defaults an untranslated name is
// refused before any request, naming the flag; the flags open it.
func TestDownloadPolicyFlags(t *testing.T) {
	var hits atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1); http.NotFound(w, r) })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	name := "virtlet.cloud/http://" + ln.Addr().String() + "/x.qcow2"

	h := newHarness(t)
	c := ctx(t)
	_, err = h.img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: name}})
	if err == nil || !strings.Contains(err.Error(), "--image-allow-untranslated") || !strings.Contains(err.Error(), name) {
		t.Fatalf("untranslated name with the defaults: %v, want a refusal naming the image and --image-allow-untranslated", err)
	}
	if hits.Load() != 0 {
		t.Errorf("%d requests for a refused name", hits.Load())
	}

	h.stop()
	h.cfg.ImageAllowUntranslated = true
	h.cfg.ImageDownloadAllowNetworks = nil
	h.start()
	_, err = h.img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: name}})
	if err == nil || !strings.Contains(err.Error(), "a loopback address") {
		t.Fatalf("loopback without --image-download-allow-networks: %v", err)
	}

	h.stop()
	h.cfg.ImageDownloadAllowNetworks = []string{"127.0.0.1/32"}
	h.start()
	_, err = h.img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: name}})
	if err == nil || !strings.Contains(err.Error(), "HTTP 404") || hits.Load() != 1 {
		t.Fatalf("allowed: %v after %d requests, want the server's 404", err, hits.Load())
	}
}
