package crdsource

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/podvisor/podvisor/runtime/image"
)

func mapping(ns, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "virtlet.k8s/v1",
		"kind":       Kind,
		"metadata":   map[string]any{"namespace": ns, "name": name, "uid": ns + "-" + name},
	}}
	if spec != nil {
		u.Object["spec"] = spec
	}
	return u
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
	scheme := runtime.NewScheme()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme,
		map[schema.GroupVersionResource]string{GVR: ListKind},
		mapping("kube-system", "b", rule("img", "http://b/img")),
		mapping("other", "c", rule("img", "http://c/img")),
	)
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

	res := client.Resource(GVR).Namespace("kube-system")
	// "a" sorts before "b": it takes precedence once it appears.
	if _, err := res.Create(ctx, mapping("kube-system", "a", rule("img", "http://a/img")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new mapping", func() bool { return translate() == "http://a/img" })

	upd := mapping("kube-system", "a", rule("img", "http://a2/img"))
	upd.SetResourceVersion("2")
	if _, err := res.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the updated mapping", func() bool { return translate() == "http://a2/img" })

	if err := res.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deletion", func() bool { return translate() == "http://b/img" })

	// A broken object is reported with its name and does not hide others.
	if _, err := res.Create(ctx, mapping("kube-system", "broken", map[string]any{"translations": []any{map[string]any{"name": "x"}}}), metav1.CreateOptions{}); err != nil {
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
