package crdsource

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/podvisor/podvisor/fakes/kubeapi"
	"github.com/podvisor/podvisor/runtime/image"
	"github.com/podvisor/podvisor/runtime/kube/apiclient"
)

func mapping(ns, name string, spec map[string]any) map[string]any {
	m := map[string]any{
		"metadata": map[string]any{"namespace": ns, "name": name, "uid": ns + "-" + name},
	}
	if spec != nil {
		m["spec"] = spec
	}
	return m
}

func rule(name, url string) map[string]any {
	return map[string]any{"translations": []any{map[string]any{"name": name, "url": url}}}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSourceFollowsObjects(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := kubeapi.New()
	defer srv.Close()
	if err := srv.Add(resource,
		mapping("kube-system", "b", rule("img", "http://b/img")),
		mapping("other", "c", rule("img", "http://c/img")),
	); err != nil {
		t.Fatal(err)
	}
	client, err := apiclient.New(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	src := New(client, Options{Namespace: "kube-system"})
	defer src.Close()
	if err := src.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	tr := image.NewTranslations("", src)
	translate := func() string {
		ep, err := tr.Translate(ctx, "img")
		if err != nil {
			t.Fatal(err)
		}
		return ep.URL
	}
	if got := translate(); got != "http://b/img" {
		t.Fatalf("Translate = %s, want http://b/img (namespace other is not watched)", got)
	}
	// A mapping is an object, never the operator's files (policy.go: no
	// file URLs from it).
	if ep, _ := tr.Translate(ctx, "img"); ep.Origin != image.OriginObject {
		t.Errorf("Origin of a mapping's endpoint = %v, want %v", ep.Origin, image.OriginObject)
	}

	// "a" sorts before "b": it takes precedence once it appears.
	if err := srv.Add(resource, mapping("kube-system", "a", rule("img", "http://a/img"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new mapping", func() bool { return translate() == "http://a/img" })

	if err := srv.Update(resource, mapping("kube-system", "a", rule("img", "http://a2/img"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the updated mapping", func() bool { return translate() == "http://a2/img" })

	if err := srv.Delete(resource, "kube-system", "a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deletion", func() bool { return translate() == "http://b/img" })

	// A broken object is reported with its name and does not hide others.
	if err := srv.Add(resource, mapping("kube-system", "broken", map[string]any{"translations": []any{map[string]any{"name": "x"}}})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the broken mapping", func() bool {
		m, _ := src.Mappings(ctx)
		return len(m) == 2
	})
	m, err := src.Mappings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m[1].Name != "mapping:kube-system/broken" || m[1].Err == nil ||
		!strings.Contains(m[1].Err.Error(), "VirtletImageMapping kube-system/broken spec") ||
		!strings.Contains(m[1].Err.Error(), "url is empty") {
		t.Errorf("broken mapping reported as %+v", m[1])
	}
	if got := translate(); got != "http://b/img" {
		t.Errorf("with a broken mapping: %s, want http://b/img", got)
	}
}

// The handler parses an object when it arrives and again only when its
// resourceVersion (or, recreated, its uid) changed, a relist included;
// Mappings is sorted by name and its result is the caller's to keep.
func TestCache(t *testing.T) {
	s := &Source{objs: map[string]*entry{}}
	h := (*handler)(s)
	obj := func(ns, name, uid, rv, url string) apiclient.Object {
		raw, err := json.Marshal(map[string]any{"metadata": map[string]any{"namespace": ns, "name": name},
			"spec": rule("img", url)})
		if err != nil {
			t.Fatal(err)
		}
		return apiclient.Object{Namespace: ns, Name: name, UID: uid, ResourceVersion: rv, Raw: raw}
	}
	configs := func() map[string]*image.Config {
		m, err := s.Mappings(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*image.Config{}
		for i, nc := range m {
			if i > 0 && m[i-1].Name >= nc.Name {
				t.Errorf("Mappings not sorted by name: %q before %q", m[i-1].Name, nc.Name)
			}
			out[nc.Name] = nc.Config
		}
		m[0].Name = "changed by the caller"
		if again, _ := s.Mappings(context.Background()); again[0].Name == m[0].Name {
			t.Error("Mappings returned its cache, which the caller changed")
		}
		return out
	}
	h.Replace([]apiclient.Object{obj("ns", "b", "u-b", "1", "http://b"), obj("ns", "a", "u-a", "2", "http://a"), obj("ns-2", "a", "u-a2", "3", "http://a2")})
	first := configs()
	if len(first) != 3 || first["mapping:ns/a"].Rules[0].URL != "http://a" {
		t.Fatalf("after the list: %v", first)
	}
	// Relisted: a unchanged, b at a new resourceVersion, ns-2/a recreated
	// (another uid, resourceVersion taken by chance from before).
	h.Replace([]apiclient.Object{obj("ns", "a", "u-a", "2", "http://a"), obj("ns", "b", "u-b", "4", "http://b2"), obj("ns-2", "a", "u-a2-new", "3", "http://a3")})
	second := configs()
	if second["mapping:ns/a"] != first["mapping:ns/a"] {
		t.Error("an unchanged object was parsed again after a relist")
	}
	if second["mapping:ns/b"] == first["mapping:ns/b"] || second["mapping:ns/b"].Rules[0].URL != "http://b2" {
		t.Error("a changed object was not parsed again")
	}
	if second["mapping:ns-2/a"].Rules[0].URL != "http://a3" {
		t.Error("a recreated object was not parsed again")
	}
	h.Upsert(obj("ns", "a", "u-a", "2", "http://a")) // a repeated event
	if configs()["mapping:ns/a"] != first["mapping:ns/a"] {
		t.Error("an Upsert at the same resourceVersion parsed again")
	}
	h.Upsert(obj("ns", "a", "u-a", "5", "http://a5"))
	h.Delete(obj("ns", "b", "u-b", "6", "http://b2"))
	third := configs()
	if len(third) != 2 || third["mapping:ns/a"].Rules[0].URL != "http://a5" || third["mapping:ns/b"] != nil {
		t.Errorf("after an update and a delete: %v", third)
	}
}
