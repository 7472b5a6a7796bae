package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/fakes/imageserver"
	"github.com/podvisor/podvisor/fakes/kubeapi"
	"github.com/podvisor/podvisor/internal/syncbuf"
	"github.com/podvisor/podvisor/runtime/image/crdsource"
)

var mappingResource = kubeapi.Resource{Group: crdsource.GVR.Group, Version: crdsource.GVR.Version,
	Resource: crdsource.GVR.Resource, Kind: crdsource.Kind}

// imageMapping is a VirtletImageMapping translating name to url.
func imageMapping(namespace, name, image, url string) map[string]any {
	return map[string]any{
		"metadata": map[string]any{"namespace": namespace, "name": name, "uid": namespace + "/" + name, "resourceVersion": "1"},
		"spec":     map[string]any{"translations": []any{map[string]any{"name": image, "url": url}}},
	}
}

// imageServer serves a 1 MiB raw image at /mapped.img.
func imageServer(t *testing.T) (*imageserver.Server, string) {
	t.Helper()
	srv := imageserver.New(imageserver.Options{})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	srv.AddImage("mapped.img", make([]byte, 1<<20))
	return srv, srv.URL() + "/mapped.img"
}

// harnessWithKubeconfig restarts a harness with a kubeconfig for apiURL.
func harnessWithKubeconfig(t *testing.T, apiURL string, edit func(*Config)) *harness {
	t.Helper()
	h := newHarness(t)
	h.stop()
	h.cfg.Kubeconfig = filepath.Join(h.dir, "kubeconfig")
	if err := (&kubeapi.Server{URL: apiURL}).WriteKubeconfig(h.cfg.Kubeconfig); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&h.cfg)
	}
	h.logs = &syncbuf.Buffer{}
	h.start()
	return h
}

// stopLeavesNoWatch stops the daemon and fails if the watch outlives it.
func stopLeavesNoWatch(t *testing.T, h *harness) {
	t.Helper()
	if kubeapi.WatcherGoroutines() == 0 {
		t.Fatal("no watch goroutine while the daemon runs: the check below would prove nothing")
	}
	start := time.Now()
	h.stop()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Stop took %v", took)
	}
	deadline := time.Now().Add(5 * time.Second)
	for kubeapi.WatcherGoroutines() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d watch goroutines outlived the daemon", kubeapi.WatcherGoroutines())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pull(t *testing.T, h *harness, name string) (*runtimeapi.PullImageResponse, error) {
	t.Helper()
	return h.img.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: name}})
}

// TestPullThroughVirtletImageMapping: with --kubeconfig the daemon
// translates names with the VirtletImageMappings of the API server, in the
// namespace --image-mapping-namespace names or in all.
func TestPullThroughVirtletImageMapping(t *testing.T) {
	tests := []struct {
		namespace string
		listPath  string
	}{
		{namespace: "", listPath: "/apis/virtlet.k8s/v1/virtletimagemappings"},
		{namespace: "kube-system", listPath: "/apis/virtlet.k8s/v1/namespaces/kube-system/virtletimagemappings"},
	}
	for _, tc := range tests {
		t.Run("namespace="+tc.namespace, func(t *testing.T) {
			images, url := imageServer(t)
			api := kubeapi.New()
			defer api.Close()
			if err := api.Add(mappingResource, imageMapping("kube-system", "vms", "mapped", url)); err != nil {
				t.Fatal(err)
			}
			h := harnessWithKubeconfig(t, api.URL, func(c *Config) { c.ImageMappingNamespace = tc.namespace })

			pulled, err := pull(t, h, "virtlet.cloud/mapped")
			if err != nil {
				t.Fatalf("PullImage(virtlet.cloud/mapped): %v", err)
			}
			if st := images.Stats("mapped.img"); st.Requests == 0 || st.BytesSent != 1<<20 {
				t.Errorf("image server stats %+v: the pull did not download %s", st, url)
			}
			is, err := h.img.ImageStatus(ctx(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/mapped"}})
			if err != nil || is.Image == nil || is.Image.Id != pulled.ImageRef || is.Image.Size != 1<<20 {
				t.Errorf("ImageStatus = %v, %v", is, err)
			}
			// The directory's translations still work beside the mappings.
			if _, err := pull(t, h, "virtlet.cloud/cirros"); err != nil {
				t.Errorf("PullImage(virtlet.cloud/cirros): %v", err)
			}
			if reqs := api.Requests(); !slices.Contains(reqs, "GET "+tc.listPath) {
				t.Errorf("no list of %s; the API server saw:\n%s", tc.listPath, strings.Join(reqs, "\n"))
			}
			if !strings.Contains(h.logs.String(), "watching VirtletImageMappings") {
				t.Errorf("start-up did not log the watch:\n%s", h.logs.String())
			}
			stopLeavesNoWatch(t, h)
		})
	}
}

// TestStartWithoutTheAPIServer: an API server that is down, silent or
// without the CRD delays start-up by the bounded wait only; the daemon
// serves with the directory's translations, and the watch keeps trying.
func TestStartWithoutTheAPIServer(t *testing.T) {
	const wait = 300 * time.Millisecond
	noCRD := kubeapi.New()
	defer noCRD.Close()
	tests := []struct {
		name   string
		apiURL string
		// install, when set, serves the CRD after start-up: the watch
		// must pick it up without a restart.
		install *kubeapi.Server
		// level of the start-up message: a missing CRD is no fault.
		level string
	}{
		{name: "connection refused", apiURL: kubeapi.Refusing(t), level: "WARN"},
		{name: "no answer", apiURL: kubeapi.Silent(t), level: "WARN"},
		{name: "CRD installed late", apiURL: noCRD.URL, install: noCRD, level: "INFO"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			h := harnessWithKubeconfig(t, tc.apiURL, func(c *Config) { c.imageMappingSyncWait = wait })
			if took := time.Since(start); took < wait || took > wait+10*time.Second {
				t.Errorf("start-up took %v, want the bounded wait (%v) and not much more", took, wait)
			}
			if !strings.Contains(h.logs.String(), "level="+tc.level+" msg=\"VirtletImageMappings not listed yet") {
				t.Errorf("no %s logged for the first list:\n%s", tc.level, h.logs.String())
			}
			if tc.install != nil {
				if n := strings.Count(h.logs.String(), "level=INFO msg=\"VirtletImageMapping CRD not installed; watching for it\""); n != 1 {
					t.Errorf("the missing CRD logged %d times at info level, want once:\n%s", n, h.logs.String())
				}
				if strings.Contains(h.logs.String(), "level=WARN") {
					t.Errorf("a missing CRD logged a warning:\n%s", h.logs.String())
				}
			}
			if _, err := pull(t, h, "virtlet.cloud/cirros"); err != nil {
				t.Errorf("PullImage(virtlet.cloud/cirros) with the API server away: %v", err)
			}
			if tc.install != nil {
				_, url := imageServer(t)
				if err := tc.install.Add(mappingResource, imageMapping("kube-system", "late", "mapped", url)); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(30 * time.Second)
				for {
					if ep, err := h.d.translations.Translate(ctx(t), "mapped"); err == nil && ep.URL == url {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("the mapping installed after start-up was never seen")
					}
					time.Sleep(50 * time.Millisecond)
				}
				if _, err := pull(t, h, "virtlet.cloud/mapped"); err != nil {
					t.Errorf("PullImage(virtlet.cloud/mapped) once the CRD is served: %v", err)
				}
			}
			stopLeavesNoWatch(t, h)
		})
	}
}

func TestImageMappingNamespaceNeedsKubeconfig(t *testing.T) {
	cfg := Config{Listen: "unix:///tmp/x.sock", StateDir: t.TempDir(), ImageMappingNamespace: "kube-system"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "kubeconfig") {
		t.Fatalf("Validate: %v, want an error naming kubeconfig", err)
	}
}

// pullIn pulls name for a pod of namespace, as kubelet does (the sandbox
// config goes with the request).
func pullIn(t *testing.T, h *harness, namespace, name string) (*runtimeapi.PullImageResponse, error) {
	t.Helper()
	return h.img.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: name},
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: namespace, Uid: "u"}}})
}

// TestImageMappingsAreScopedToTheirNamespace (issue 18, finding 4): a
// VirtletImageMapping applies to the pods of its own namespace, one in
// kube-system to all; a tenant's pull neither shows under the name for
// other namespaces nor is found by ImageStatus; file:// URLs and insecure
// TLS are refused from objects, naming the mapping and the field.
func TestImageMappingsAreScopedToTheirNamespace(t *testing.T) {
	_, globalURL := imageServer(t)
	tenantImages, tenantURL := imageServer(t)
	tenantImages.AddImage("mapped.img", bytes.Repeat([]byte("t"), 1<<20))
	nodeFile := filepath.Join(t.TempDir(), "node-secret")
	if err := os.WriteFile(nodeFile, bytes.Repeat([]byte("n"), 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	api := kubeapi.New()
	defer api.Close()
	insecure := imageMapping("tenant-a", "insecure", "insecure", "https://127.0.0.1:1/x.img")
	insecure["spec"].(map[string]any)["translations"].([]any)[0].(map[string]any)["transport"] = "lax"
	insecure["spec"].(map[string]any)["transports"] = map[string]any{"lax": map[string]any{"tls": map[string]any{"insecure": true}}}
	for _, m := range []map[string]any{
		imageMapping("tenant-a", "takeover", "shared", tenantURL),
		imageMapping("kube-system", "vms", "global", globalURL),
		imageMapping("tenant-a", "steal", "nodefile", "file://"+nodeFile),
		insecure,
	} {
		if err := api.Add(mappingResource, m); err != nil {
			t.Fatal(err)
		}
	}
	h := harnessWithKubeconfig(t, api.URL, nil)

	if _, err := pullIn(t, h, "tenant-b", "virtlet.cloud/shared"); err == nil || tenantImages.Stats("mapped.img").Requests != 0 {
		t.Errorf("tenant-b's pull of shared: %v, %d requests to tenant-a's server; want tenant-a's mapping not to apply", err, tenantImages.Stats("mapped.img").Requests)
	}
	a, err := pullIn(t, h, "tenant-a", "virtlet.cloud/shared")
	if err != nil || tenantImages.Stats("mapped.img").BytesSent != 1<<20 {
		t.Fatalf("tenant-a's pull of shared through its own mapping: %v", err)
	}
	if is, err := h.img.ImageStatus(ctx(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/shared"}}); err != nil || is.Image != nil {
		t.Errorf("ImageStatus(shared) after tenant-a's pull = %v, %v; want none (kubelet would start other namespaces' pods on it)", is.GetImage(), err)
	}
	if again, err := pullIn(t, h, "tenant-a", "virtlet.cloud/shared"); err != nil || again.ImageRef != a.ImageRef || tenantImages.Stats("mapped.img").BytesSent != 1<<20 {
		t.Errorf("tenant-a's second pull = %v, %v; want %s from the store", again, err, a.ImageRef)
	}
	if _, err := pullIn(t, h, "tenant-b", "virtlet.cloud/global"); err != nil {
		t.Errorf("tenant-b's pull through kube-system's mapping: %v", err)
	}
	for _, tc := range []struct{ image, want string }{
		{"nodefile", "VirtletImageMapping tenant-a/steal translations[0].url"},
		{"insecure", "VirtletImageMapping tenant-a/insecure transports.lax.tls.insecure"},
	} {
		_, err := pullIn(t, h, "tenant-a", "virtlet.cloud/"+tc.image)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "translation files") {
			t.Errorf("pull of %s: %v; want a refusal naming %q and the operator's translation files", tc.image, err, tc.want)
		}
	}
	imgs, err := h.img.ListImages(ctx(t), &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, img := range imgs.Images {
		tags = append(tags, img.RepoTags...)
	}
	if len(imgs.Images) != 2 || !slices.Equal(tags, []string{"virtlet.cloud/global:latest"}) {
		t.Errorf("images stored: %v; want tenant-a's, listed by ID only, and the global one", imgs.Images)
	}
}
