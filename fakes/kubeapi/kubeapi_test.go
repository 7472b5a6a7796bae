package kubeapi

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

func TestServer(t *testing.T) {
	s := New()
	defer s.Close()
	cm := Resource{Version: "v1", Resource: "configmaps", Kind: "ConfigMap"}
	vim := Resource{Group: "virtlet.k8s", Version: "v1", Resource: "virtletimagemappings", Kind: "VirtletImageMapping"}
	for _, add := range []struct {
		res Resource
		obj any
	}{
		{cm, map[string]any{"metadata": map[string]any{"namespace": "a", "name": "x"}}},
		{vim, map[string]any{"metadata": map[string]any{"namespace": "a", "name": "m"}}},
		{vim, map[string]any{"metadata": map[string]any{"namespace": "b", "name": "m"}}},
	} {
		if err := s.Add(add.res, add.obj); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Add(cm, map[string]any{"metadata": map[string]any{}}); err == nil {
		t.Error("Add of an object without a name: no error")
	}
	s.Forbid("secret-one")
	tests := []struct {
		path     string
		code     int
		kind     string
		items    int
		reason   string
		watching bool
	}{
		{path: "/api/v1/namespaces/a/configmaps/x", code: 200, kind: "ConfigMap"},
		{path: "/api/v1/namespaces/b/configmaps/x", code: 404, kind: "Status", reason: "NotFound"},
		{path: "/api/v1/namespaces/a/secrets/y", code: 404, kind: "Status", reason: "NotFound"},
		{path: "/api/v1/namespaces/a/configmaps/secret-one", code: 403, kind: "Status", reason: "Forbidden"},
		{path: "/apis/virtlet.k8s/v1/virtletimagemappings", code: 200, kind: "VirtletImageMappingList", items: 2},
		{path: "/apis/virtlet.k8s/v1/namespaces/b/virtletimagemappings", code: 200, kind: "VirtletImageMappingList", items: 1},
		{path: "/apis/virtlet.k8s/v1/namespaces/c/virtletimagemappings", code: 200, kind: "VirtletImageMappingList", items: 0},
		{path: "/apis/virtlet.k8s/v1/virtletconfigmappings", code: 404, kind: "Status", reason: "NotFound"},
		{path: "/apis/virtlet.k8s/v1/virtletimagemappings?watch=true&sendInitialEvents=true", code: 422, kind: "Status", reason: "Invalid"},
		{path: "/apis/virtlet.k8s/v1/virtletimagemappings?watch=true", code: 200, watching: true},
	}
	client := &http.Client{Timeout: 300 * time.Millisecond}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := client.Get(s.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.code)
			}
			body, err := io.ReadAll(resp.Body)
			if tc.watching {
				if err == nil || len(body) != 0 {
					t.Errorf("watch: body %q, err %v; want it open and silent until the client gives up", body, err)
				}
				return
			}
			var got struct {
				Kind   string
				Reason string
				Items  []any
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if got.Kind != tc.kind || got.Reason != tc.reason || len(got.Items) != tc.items {
				t.Errorf("got %s", body)
			}
		})
	}
	if n := len(s.Requests()); n != len(tests) {
		t.Errorf("%d requests recorded, want %d", n, len(tests))
	}
}
