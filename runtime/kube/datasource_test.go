package kube

import (
	"context"
	"errors"
	"os"
	"path/filepath"
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
	ds, err := New(srv.RESTConfig())
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

func TestNewFromKubeconfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte(kubeapi.Kubeconfig("https://127.0.0.1:6443")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFromKubeconfig(good); err != nil {
		t.Errorf("NewFromKubeconfig(valid file): %v", err)
	}
	if _, err := NewFromKubeconfig(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("NewFromKubeconfig(missing file): no error")
	}
}
