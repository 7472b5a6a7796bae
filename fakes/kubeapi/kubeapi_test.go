package kubeapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/podvisor/podvisor/runtime/kube/apiclient"
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

// A watch from a list's resourceVersion sends the changes after it, of its
// namespace, as they happen; a watch from an older one sends those first.
func TestWatchEvents(t *testing.T) {
	s := New()
	defer s.Close()
	vim := Resource{Group: "virtlet.k8s", Version: "v1", Resource: "virtletimagemappings", Kind: "VirtletImageMapping"}
	obj := func(ns, name, v string) map[string]any {
		return map[string]any{"metadata": map[string]any{"namespace": ns, "name": name}, "spec": map[string]any{"v": v}}
	}
	if err := s.Add(vim, obj("a", "x", "1"), obj("b", "y", "1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(vim, obj("a", "x", "again")); err == nil {
		t.Error("Add of an existing object: no error")
	}
	if err := s.Update(vim, obj("a", "nope", "1")); err == nil {
		t.Error("Update of a missing object: no error")
	}
	if err := s.Delete(vim, "a", "nope"); err == nil {
		t.Error("Delete of a missing object: no error")
	}

	type item struct {
		Metadata struct{ Namespace, Name, UID, ResourceVersion string }
		Spec     struct{ V string }
	}
	var list struct {
		Metadata struct{ ResourceVersion string }
		Items    []item
	}
	resp, err := http.Get(s.URL + "/apis/virtlet.k8s/v1/namespaces/a/virtletimagemappings")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if list.Metadata.ResourceVersion != "2" || len(list.Items) != 1 || list.Items[0].Metadata.ResourceVersion != "1" || list.Items[0].Metadata.UID == "" {
		t.Fatalf("list %+v", list)
	}
	uid := list.Items[0].Metadata.UID

	watch := func(from string) (*json.Decoder, func()) {
		resp, err := http.Get(s.URL + "/apis/virtlet.k8s/v1/namespaces/a/virtletimagemappings?watch=1&resourceVersion=" + from)
		if err != nil {
			t.Fatal(err)
		}
		return json.NewDecoder(resp.Body), func() { resp.Body.Close() }
	}
	next := func(dec *json.Decoder) string {
		t.Helper()
		var ev struct {
			Type   string
			Object item
		}
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		md := ev.Object.Metadata
		if md.UID != uid {
			t.Errorf("%s event of %s/%s: uid %q, want %q", ev.Type, md.Namespace, md.Name, md.UID, uid)
		}
		return ev.Type + " " + md.Namespace + "/" + md.Name + "@" + md.ResourceVersion + " " + ev.Object.Spec.V
	}
	dec, stop := watch(list.Metadata.ResourceVersion)
	defer stop()
	if err := s.Update(vim, obj("b", "y", "2")); err != nil { // another namespace: not sent
		t.Fatal(err)
	}
	if err := s.Update(vim, obj("a", "x", "2")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(vim, "a", "x"); err != nil {
		t.Fatal(err)
	}
	want := []string{"MODIFIED a/x@4 2", "DELETED a/x@5 2"}
	for _, w := range want {
		if got := next(dec); got != w {
			t.Errorf("event %q, want %q", got, w)
		}
	}
	from1, stop1 := watch("1")
	defer stop1()
	for _, w := range want {
		if got := next(from1); got != w {
			t.Errorf("from resourceVersion 1: event %q, want %q", got, w)
		}
	}
}

// TestMergePatch: a merge patch merges maps key by key, null deletes, and
// the object served afterwards is the merged one; other types are refused.
func TestMergePatch(t *testing.T) {
	s := New()
	defer s.Close()
	nodes := Resource{Version: "v1", Resource: "nodes", Kind: "Node"}
	if err := s.Add(nodes, map[string]any{"metadata": map[string]any{"name": "n1", "labels": map[string]any{"a": "1", "b": "2"}}}); err != nil {
		t.Fatal(err)
	}
	c, err := apiclient.New(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	patch := map[string]any{"metadata": map[string]any{"labels": map[string]any{"b": nil, "c": "3"}}}
	if err := c.MergePatch(t.Context(), "/api/v1/nodes/n1", patch, nil); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	if err := c.Get(t.Context(), "/api/v1/nodes/n1", &got); err != nil {
		t.Fatal(err)
	}
	if l := got.Metadata.Labels; len(l) != 2 || l["a"] != "1" || l["c"] != "3" {
		t.Errorf("labels after the patch: %v, want a=1 c=3", l)
	}
	if err := c.MergePatch(t.Context(), "/api/v1/nodes/nope", patch, nil); !errors.Is(err, apiclient.ErrNotFound) {
		t.Errorf("patch of a missing node: %v", err)
	}
	s.Forbid("n2")
	if err := c.MergePatch(t.Context(), "/api/v1/nodes/n2", patch, nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("forbidden patch: %v", err)
	}
}
