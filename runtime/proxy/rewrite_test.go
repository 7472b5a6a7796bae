package proxy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestRewrite checks nested, repeated and image fields both ways: the
// outbound form of each message is written out by hand, and inbound must
// give the original back.
func TestRewrite(t *testing.T) {
	b := &backend{name: "podvisor", idPrefix: "podvisor__", imagePrefix: "virtlet.cloud/"}
	for _, tc := range []struct {
		name     string
		in, want proto.Message
	}{
		{"sandbox stats with container stats",
			&runtimeapi.PodSandboxStatsResponse{Stats: &runtimeapi.PodSandboxStats{
				Attributes: &runtimeapi.PodSandboxAttributes{Id: "s1", Labels: map[string]string{"id": "keep"}},
				Linux:      &runtimeapi.LinuxPodSandboxStats{Containers: []*runtimeapi.ContainerStats{{Attributes: &runtimeapi.ContainerAttributes{Id: "c1"}}}}}},
			&runtimeapi.PodSandboxStatsResponse{Stats: &runtimeapi.PodSandboxStats{
				Attributes: &runtimeapi.PodSandboxAttributes{Id: "podvisor__s1", Labels: map[string]string{"id": "keep"}},
				Linux:      &runtimeapi.LinuxPodSandboxStats{Containers: []*runtimeapi.ContainerStats{{Attributes: &runtimeapi.ContainerAttributes{Id: "podvisor__c1"}}}}}}},
		{"namespace target and repeated IDs",
			&runtimeapi.CheckpointPodRequest{PodSandboxId: "s1", ContainerIds: []string{"c1", "c2"}},
			&runtimeapi.CheckpointPodRequest{PodSandboxId: "podvisor__s1", ContainerIds: []string{"podvisor__c1", "podvisor__c2"}}},
		{"container config target_id",
			&runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{TargetId: "c9"}}}, Image: &runtimeapi.ImageSpec{Image: "cirros"}},
			&runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{TargetId: "podvisor__c9"}}}, Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}}},
		{"image: tags not doubled, ID given the domain",
			&runtimeapi.Image{Id: "sha256:ab", RepoTags: []string{"virtlet.cloud/cirros:latest"}, RepoDigests: []string{"cirros@sha256:ab"}},
			&runtimeapi.Image{Id: "virtlet.cloud/sha256:ab", RepoTags: []string{"virtlet.cloud/cirros:latest"}, RepoDigests: []string{"virtlet.cloud/cirros@sha256:ab"}}},
		{"metrics",
			&runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: []*runtimeapi.PodSandboxMetrics{{PodSandboxId: "s1",
				ContainerMetrics: []*runtimeapi.ContainerMetrics{{ContainerId: "c1"}}}}},
			&runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: []*runtimeapi.PodSandboxMetrics{{PodSandboxId: "podvisor__s1",
				ContainerMetrics: []*runtimeapi.ContainerMetrics{{ContainerId: "podvisor__c1"}}}}}},
		{"empty IDs stay empty",
			&runtimeapi.ContainerFilter{Id: "", PodSandboxId: "s1"},
			&runtimeapi.ContainerFilter{Id: "", PodSandboxId: "podvisor__s1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := proto.Clone(tc.in)
			got := proto.Clone(tc.in)
			b.outbound(got)
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("outbound (-want +got):\n%s", diff)
			}
			b.inbound(got)
			// Tags the runtime reported with the domain lose it on the way
			// in; everything else comes back exactly.
			if img, ok := orig.(*runtimeapi.Image); ok {
				img.RepoTags = []string{"cirros:latest"}
			}
			if diff := cmp.Diff(orig, got, protocmp.Transform()); diff != "" {
				t.Errorf("inbound(outbound(x)) != x (-want +got):\n%s", diff)
			}
		})
	}
	// The primary's messages are never rewritten.
	p := &backend{name: "primary", primary: true}
	m := &runtimeapi.Container{Id: "c1", ImageRef: "sha256:ab"}
	p.outbound(m)
	p.inbound(m)
	if m.Id != "c1" || m.ImageRef != "sha256:ab" {
		t.Errorf("primary message rewritten: %v", m)
	}
}
