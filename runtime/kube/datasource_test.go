package kube

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podvisor/podvisor/fakes/kubeapi"
	"github.com/podvisor/podvisor/runtime/cloudinit"
)

// apiServer serves the given objects on 127.0.0.1 as the API server does
// (404 with a Status for others, 403 for names in forbidden).
func apiServer(t *testing.T, forbidden map[string]bool, objs ...any) *DataSource {
	t.Helper()
	srv := kubeapi.New()
	t.Cleanup(srv.Close)
	configMaps := kubeapi.Resource{Version: "v1", Resource: "configmaps", Kind: "ConfigMap"}
	secrets := kubeapi.Resource{Version: "v1", Resource: "secrets", Kind: "Secret"}
	for _, o := range objs {
		res := configMaps
		if _, ok := o.(*corev1.Secret); ok {
			res = secrets
		}
		if err := srv.Add(res, o); err != nil {
			t.Fatal(err)
		}
	}
	for name := range forbidden {
		srv.Forbid(name)
	}
	ds, err := New(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestConfigMap(t *testing.T) {
	ds := apiServer(t, nil,
		&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "ud"},
			Data:       map[string]string{"user-data": "#!/bin/sh\necho hi\n"},
			BinaryData: map[string][]byte{"blob": []byte{0, 1}},
		},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns2", Name: "other"}},
	)
	tests := []struct {
		name, ns, obj string
		want          map[string]string
		notFound      bool
	}{
		{name: "data and binaryData", ns: "ns1", obj: "ud", want: map[string]string{"user-data": "#!/bin/sh\necho hi\n", "blob": "\x00\x01"}},
		{name: "empty", ns: "ns2", obj: "other", want: map[string]string{}},
		{name: "other namespace", ns: "ns2", obj: "ud", notFound: true},
		{name: "missing", ns: "ns1", obj: "nope", notFound: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ds.ConfigMap(context.Background(), tc.ns, tc.obj)
			if tc.notFound {
				if !errors.Is(err, cloudinit.ErrNotFound) {
					t.Fatalf("ConfigMap(%s/%s) error = %v, want one wrapping ErrNotFound", tc.ns, tc.obj, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ConfigMap(%s/%s): %v", tc.ns, tc.obj, err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("ConfigMap(%s/%s) (-want +got):\n%s", tc.ns, tc.obj, d)
			}
		})
	}
}

func TestSecret(t *testing.T) {
	ds := apiServer(t, nil, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "keys"},
		Data:       map[string][]byte{"ssh": []byte("ssh-ed25519 AAAA x")},
	})
	got, err := ds.Secret(context.Background(), "ns1", "keys")
	if err != nil {
		t.Fatalf("Secret: %v", err)
	}
	if d := cmp.Diff(map[string][]byte{"ssh": []byte("ssh-ed25519 AAAA x")}, got); d != "" {
		t.Errorf("Secret (-want +got):\n%s", d)
	}
	if _, err := ds.Secret(context.Background(), "ns1", "nope"); !errors.Is(err, cloudinit.ErrNotFound) {
		t.Errorf("Secret of a missing object: error = %v, want one wrapping ErrNotFound", err)
	}
}

// Errors other than NotFound (here: RBAC forbids the read) must not look
// like a missing object: the caller reports them as API failures.
func TestForbiddenIsNotNotFound(t *testing.T) {
	ds := apiServer(t, map[string]bool{"ud": true})
	_, err := ds.ConfigMap(context.Background(), "ns1", "ud")
	if err == nil || errors.Is(err, cloudinit.ErrNotFound) {
		t.Fatalf("error = %v, want a non-NotFound error", err)
	}
}

// The error texts callers log: a missing object, and another failure.
func TestErrorTexts(t *testing.T) {
	ds := apiServer(t, map[string]bool{"ud": true})
	_, err := ds.ConfigMap(context.Background(), "ns1", "nope")
	if err == nil || err.Error() != "configmap ns1/nope: not found" {
		t.Errorf("missing ConfigMap: %v", err)
	}
	_, err = ds.Secret(context.Background(), "ns1", "nope")
	if err == nil || err.Error() != "secret ns1/nope: not found" {
		t.Errorf("missing Secret: %v", err)
	}
	_, err = ds.ConfigMap(context.Background(), "ns1", "ud")
	if err == nil || !strings.HasPrefix(err.Error(), "reading configmap ns1/ud from the Kubernetes API: GET ") ||
		!strings.HasSuffix(err.Error(), "/api/v1/namespaces/ns1/configmaps/ud: 403 Forbidden: /api/v1/namespaces/ns1/configmaps/ud is forbidden") {
		t.Errorf("forbidden ConfigMap: %v", err)
	}
	for _, nn := range [][2]string{{"", "x"}, {"ns1", ""}} {
		if _, err := ds.Secret(context.Background(), nn[0], nn[1]); err == nil || errors.Is(err, cloudinit.ErrNotFound) {
			t.Errorf("Secret(%q, %q): %v, want an error that is not ErrNotFound", nn[0], nn[1], err)
		}
	}
}

func TestRESTConfig(t *testing.T) {
	srv := kubeapi.New()
	t.Cleanup(srv.Close)
	if err := srv.Add(kubeapi.Resource{Version: "v1", Resource: "secrets", Kind: "Secret"},
		map[string]any{"metadata": map[string]any{"namespace": "ns", "name": "s"}, "data": map[string]any{"k": "dg=="}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := srv.WriteKubeconfig(good); err != nil {
		t.Fatal(err)
	}
	cfg, err := RESTConfig(good)
	if err != nil {
		t.Fatalf("RESTConfig(valid file): %v", err)
	}
	ds, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ds.Secret(context.Background(), "ns", "s"); err != nil || string(got["k"]) != "v" {
		t.Errorf("Secret through the kubeconfig's server: %q, %v", got, err)
	}
	if _, err := RESTConfig(filepath.Join(dir, "missing")); err == nil || !strings.HasPrefix(err.Error(), "loading kubeconfig "+dir) {
		t.Errorf("RESTConfig(missing file): %v", err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := RESTConfig(""); err == nil || !strings.Contains(err.Error(), "not running in a cluster") {
		t.Errorf("RESTConfig(\"\") outside a pod: %v", err)
	}
}

// A Secret RBAC forbids (deploy/ grants them per namespace) names the
// RoleBinding that allows it.
func TestForbiddenSecretSaysWhichBindingAllowsIt(t *testing.T) {
	ds := apiServer(t, map[string]bool{"keys": true})
	_, err := ds.Secret(context.Background(), "ns1", "keys")
	if err == nil || errors.Is(err, cloudinit.ErrNotFound) ||
		!strings.Contains(err.Error(), "403 Forbidden") ||
		!strings.Contains(err.Error(), "kubectl -n ns1 create rolebinding podvisor-secrets --clusterrole=podvisor-secrets --serviceaccount=kube-system:podvisor") {
		t.Errorf("forbidden Secret: %v", err)
	}
}
