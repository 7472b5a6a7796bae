package kube

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podvisor/podvisor/fakes/kubeapi"
)

func TestEphemeralStorageLimit(t *testing.T) {
	srv := kubeapi.New()
	t.Cleanup(srv.Close)
	pods := kubeapi.Resource{Version: "v1", Resource: "pods", Kind: "Pod"}
	err := srv.Add(pods, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "vm"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "vm", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("2Gi")}}},
			{Name: "nolimit"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := New(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n, err := ds.EphemeralStorageLimit(ctx, "ns1", "vm", "vm"); err != nil || n != 2<<30 {
		t.Errorf("limit of vm = %d, %v; want 2 GiB", n, err)
	}
	if n, err := ds.EphemeralStorageLimit(ctx, "ns1", "vm", "nolimit"); err != nil || n != 0 {
		t.Errorf("limit of a container without one = %d, %v; want 0", n, err)
	}
	if _, err := ds.EphemeralStorageLimit(ctx, "ns1", "vm", "other"); err == nil || !strings.Contains(err.Error(), `no container "other"`) {
		t.Errorf("a missing container: %v", err)
	}
	if _, err := ds.EphemeralStorageLimit(ctx, "ns1", "gone", "vm"); err == nil {
		t.Error("a missing pod: no error")
	}
}
