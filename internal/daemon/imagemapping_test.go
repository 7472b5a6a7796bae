package daemon

import (
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
				if err := tc.install.Add(mappingResource, imageMapping("default", "late", "mapped", url)); err != nil {
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
