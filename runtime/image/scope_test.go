package image

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestTranslateInScopes: the operator's configs (files, the operator
// namespace's mappings) apply to every pod and win; a tenant's mapping
// applies to its own namespace only and marks the endpoint with it; file://
// and insecure TLS are refused from objects, accepted from files.
func TestTranslateInScopes(t *testing.T) {
	mapping := func(ns, name, yaml string) NamedConfig {
		c, err := ParseConfig(name, []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		return NamedConfig{Name: "mapping:" + ns + "/" + name, Namespace: ns, Origin: OriginObject, Config: c}
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ops.yaml"), "translations:\n- name: local\n  url: file:///var/images/local.img\n- name: lax\n  url: https://lax.example/x\n  transport: t\ntransports:\n  t:\n    tls:\n      insecure: true\n")
	tr := NewTranslations(dir, staticMappings{
		mapping("ops", "all", "translations:\n- name: global\n  url: https://global.example/g.img\n"),
		mapping("team-a", "mine", "translations:\n- name: mine\n  url: https://a.example/mine.img\n- name: global\n  url: https://a.example/takeover.img\n"),
		mapping("team-a", "bad", "translations:\n- name: steal\n  url: FILE:///etc/shadow\n- name: lax2\n  url: https://x.example/y\n  transport: t\ntransports:\n  t:\n    tls:\n      insecure: true\n"),
		mapping("kube-system", "ks", "translations:\n- name: ks\n  url: https://ks.example/ks.img\n"),
	})
	tr.OperatorNamespace = "ops"
	tests := []struct {
		namespace, name, wantURL, wantNS, wantErr string
	}{
		{namespace: "team-b", name: "global", wantURL: "https://global.example/g.img"},
		{namespace: "team-a", name: "global", wantURL: "https://global.example/g.img"}, // the operator's first
		{namespace: "team-a", name: "mine", wantURL: "https://a.example/mine.img", wantNS: "team-a"},
		{namespace: "team-b", name: "mine", wantURL: "mine"},
		{namespace: "", name: "mine", wantURL: "mine"},
		{namespace: "team-b", name: "ks", wantURL: "ks"}, // kube-system is not the operator's here
		{namespace: "team-b", name: "local", wantURL: "file:///var/images/local.img"},
		{namespace: "team-b", name: "lax", wantURL: "https://lax.example/x"},
		{namespace: "team-a", name: "steal", wantErr: `VirtletImageMapping team-a/bad translations[0].url: "FILE:///etc/shadow": file:// URLs are accepted only from the operator's translation files`},
		{namespace: "team-a", name: "lax2", wantErr: "VirtletImageMapping team-a/bad transports.t.tls.insecure: true: insecure TLS is accepted only from the operator's translation files"},
	}
	for _, tc := range tests {
		t.Run(tc.namespace+"/"+tc.name, func(t *testing.T) {
			ep, err := tr.TranslateIn(context.Background(), tc.namespace, tc.name)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("TranslateIn = %+v, %v; want an error with %q", ep, err, tc.wantErr)
				}
				return
			}
			if err != nil || ep.URL != tc.wantURL || ep.Namespace != tc.wantNS {
				t.Errorf("TranslateIn = %q (namespace %q), %v; want %q (namespace %q)", ep.URL, ep.Namespace, err, tc.wantURL, tc.wantNS)
			}
		})
	}
	tr.OperatorNamespace = ""
	if ep, err := tr.TranslateIn(context.Background(), "team-b", "ks"); err != nil || ep.URL != "https://ks.example/ks.img" || ep.Namespace != "" {
		t.Errorf("with no operator namespace set, kube-system's mapping for team-b = %+v, %v; want it applied to all", ep, err)
	}
}
