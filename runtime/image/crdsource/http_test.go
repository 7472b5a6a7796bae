package crdsource

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podvisor/podvisor/fakes/kubeapi"
	"github.com/podvisor/podvisor/runtime/image"
	"github.com/podvisor/podvisor/runtime/kube/apiclient"
)

// resource is how the fake API server serves VirtletImageMappings.
var resource = kubeapi.Resource{Group: GVR.Group, Version: GVR.Version, Resource: GVR.Resource, Kind: Kind}

// closeWithin closes src and fails unless it and its goroutines are gone
// within d.
func closeWithin(t *testing.T, src *Source, d time.Duration) {
	t.Helper()
	start := time.Now()
	src.Close()
	if took := time.Since(start); took > d {
		t.Errorf("Close took %v, want under %v", took, d)
	}
	waitFor(t, "the watch's goroutine to end", func() bool { return kubeapi.WatcherGoroutines() == 0 })
}

// TestOverHTTP runs a Source against an API server over HTTP, as the daemon
// does: the namespace it asks for, and what it does when the server cannot
// give the list.
func TestOverHTTP(t *testing.T) {
	srv := kubeapi.New()
	defer srv.Close()
	if err := srv.Add(resource,
		mapping("kube-system", "m", rule("img", "http://k/img")),
		mapping("other", "m", rule("img", "http://o/img")),
	); err != nil {
		t.Fatal(err)
	}
	refusing := kubeapi.New()
	defer refusing.Close()
	refusing.Forbid(GVR.Resource)
	tests := []struct {
		name      string
		host      string
		namespace string
		want      string // the URL of "img"; "" when nothing is listed
		wantPath  string // a list the server must have seen
		wantErr   string // WaitForSync's error when the list fails
		logged    bool   // the failure is logged as it happens
	}{
		{name: "one namespace", host: srv.URL, namespace: "kube-system", want: "http://k/img",
			wantPath: "/apis/virtlet.k8s/v1/namespaces/kube-system/virtletimagemappings"},
		{name: "all namespaces", host: srv.URL, want: "http://k/img",
			wantPath: "/apis/virtlet.k8s/v1/virtletimagemappings"},
		{name: "namespace without objects", host: srv.URL, namespace: "empty", want: "img"},
		{name: "forbidden by RBAC", host: refusing.URL, wantErr: "forbidden", logged: true},
		{name: "connection refused", host: kubeapi.Refusing(t), wantErr: "connection refused", logged: true},
		{name: "no answer", host: kubeapi.Silent(t), wantErr: "deadline exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncWriter
			src, err := NewForConfig(&apiclient.Config{Server: tc.host}, Options{Namespace: tc.namespace,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if tc.wantErr != "" {
				ctx, cancel = context.WithTimeout(context.Background(), 1500*time.Millisecond)
			}
			defer cancel()
			err = src.WaitForSync(ctx)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), "not listed") || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("WaitForSync = %v, want an error saying %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("WaitForSync: %v", err)
			}
			// Pulls go on with what is cached, without an error.
			ep, err := image.NewTranslations("", src).Translate(context.Background(), "img")
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want == "" {
				want = "img"
			}
			if ep.URL != want {
				t.Errorf("img translates to %s, want %s", ep.URL, want)
			}
			if tc.wantPath != "" && !slices.Contains(srv.Requests(), "GET "+tc.wantPath) {
				t.Errorf("no request for %s; requests:\n%s", tc.wantPath, strings.Join(srv.Requests(), "\n"))
			}
			if tc.logged && !strings.Contains(logs.String(), "list/watch failed") {
				t.Errorf("the failure was not logged:\n%s", logs.String())
			}
			if kubeapi.WatcherGoroutines() == 0 {
				t.Fatal("no watch goroutine found while running: the leak check below would prove nothing")
			}
			// A list or watch in flight (the black hole's) ends with Close.
			closeWithin(t, src, 2*time.Second)
			if err := src.WaitForSync(context.Background()); tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), "closed")) {
				t.Errorf("WaitForSync after Close = %v, want an error saying it is closed", err)
			}
		})
	}
}

// TestRetriesUntilTheCRDIsInstalled: a Source started before the CRD keeps
// listing with back-off and fills once the resource is served. The missing
// CRD is said once at info level, its retries at debug level only.
func TestRetriesUntilTheCRDIsInstalled(t *testing.T) {
	srv := kubeapi.New()
	defer srv.Close()
	var logs syncWriter
	src, err := NewForConfig(srv.Config(), Options{
		Logger:                 slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		NotInstalledMaxBackOff: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer closeWithin(t, src, 2*time.Second)
	if src.w.NotFoundMaxBackOff != 20*time.Millisecond {
		t.Errorf("the watch's NotFoundMaxBackOff is %v, want Options.NotInstalledMaxBackOff", src.w.NotFoundMaxBackOff)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = src.WaitForSync(ctx)
	if err == nil || !strings.Contains(err.Error(), "could not find the requested resource") {
		t.Fatalf("WaitForSync before the CRD = %v, want the API server's 404", err)
	}
	waitFor(t, "three lists", func() bool {
		n := 0
		for _, r := range srv.Requests() {
			if r == "GET /apis/virtlet.k8s/v1/virtletimagemappings" {
				n++
			}
		}
		return n >= 3
	})
	if err := srv.Add(resource, mapping("ns", "m", rule("img", "http://m/img"))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := src.WaitForSync(ctx); err != nil {
		t.Fatalf("WaitForSync after the CRD appeared: %v", err)
	}
	if m, _ := src.Mappings(ctx); len(m) != 1 || m[0].Name != "mapping:ns/m" || m[0].Err != nil {
		t.Errorf("Mappings = %+v, want mapping:ns/m", m)
	}
	out := logs.String()
	if n := strings.Count(out, "level=INFO msg=\"VirtletImageMapping CRD not installed; watching for it\""); n != 1 {
		t.Errorf("the missing CRD was logged %d times at info level, want once:\n%s", n, out)
	}
	if n := strings.Count(out, "level=DEBUG msg=\"VirtletImageMapping CRD still not installed; retrying\""); n < 1 {
		t.Errorf("the retries were not logged at debug level:\n%s", out)
	}
	if strings.Contains(out, "level=WARN") {
		t.Errorf("a missing CRD was logged as a warning:\n%s", out)
	}
	if !strings.Contains(out, "level=INFO msg=\"VirtletImageMapping CRD installed; watching VirtletImageMappings\"") {
		t.Errorf("the CRD's arrival was not logged:\n%s", out)
	}
}

// By default the missing CRD is listed again at most every 5 minutes.
func TestNotInstalledBackOffDefault(t *testing.T) {
	src, err := NewForConfig(&apiclient.Config{Server: kubeapi.Refusing(t)}, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.w.NotFoundMaxBackOff != 5*time.Minute {
		t.Errorf("NotFoundMaxBackOff = %v, want 5m", src.w.NotFoundMaxBackOff)
	}
}

type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
