package cri

import (
	"runtime"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/pod"
)

// decoded is what a client receives for resp.
func decoded(t *testing.T, resp *runtimeapi.ListContainersResponse) []*runtimeapi.Container {
	t.Helper()
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var got runtimeapi.ListContainersResponse
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	return got.Containers
}

func TestEncodedListMatchesDirectEncoding(t *testing.T) {
	l := newEncodedList(func(c *pod.Container) string { return c.ID },
		func(c *pod.Container) proto.Message { return containerToCRI(c) })
	mk := func(id string, st pod.ContainerState) *pod.Container {
		return &pod.Container{ID: id, SandboxID: "sb-" + id, State: st, ImageRef: "sha256:ab", CreatedAt: time.Unix(1700000000, 5),
			Config: pod.ContainerConfig{Name: "vm", Image: "virtlet.cloud/cirros", Attempt: 2,
				Labels:      map[string]string{"io.kubernetes.pod.name": "p-" + id, "app": "vm"},
				Annotations: map[string]string{"io.kubernetes.container.hash": "5d2ec8a1"}}}
	}
	a, b, c := mk("a", pod.ContainerCreated), mk("b", pod.ContainerRunning), mk("c", pod.ContainerExited)
	steps := []struct {
		name      string
		recs      []*pod.Container
		all       bool
		wantCache []string
	}{
		{"first full list", []*pod.Container{a, b, c}, true, []string{"a", "b", "c"}},
		{"same records again", []*pod.Container{a, b, c}, true, []string{"a", "b", "c"}},
		{"b changed state (a new record)", []*pod.Container{a, func() *pod.Container { b = mk("b", pod.ContainerExited); return b }(), c}, true, []string{"a", "b", "c"}},
		{"filtered list of a new record is not cached", []*pod.Container{mk("d", pod.ContainerRunning)}, false, []string{"a", "b", "c"}},
		{"a removed", []*pod.Container{b, c}, true, []string{"b", "c"}},
		{"empty", nil, true, nil},
	}
	for _, s := range steps {
		resp := &runtimeapi.ListContainersResponse{}
		if err := l.fill(resp, s.recs, s.all); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got := decoded(t, resp)
		if len(got) != len(s.recs) {
			t.Fatalf("%s: client got %d containers, want %d", s.name, len(got), len(s.recs))
		}
		for i, r := range s.recs {
			if want := containerToCRI(r); !proto.Equal(got[i], want) {
				t.Errorf("%s: entry %d decodes to %v, want %v", s.name, i, got[i], want)
			}
		}
		var cached []string
		for _, id := range []string{"a", "b", "c", "d"} {
			if _, ok := l.byID[id]; ok {
				cached = append(cached, id)
			}
		}
		if !slices.Equal(cached, s.wantCache) {
			t.Errorf("%s: cache holds %v, want %v", s.name, cached, s.wantCache)
		}
	}
}

// TestEncodedListUnchangedRelistIsFree: kubelet relists everything every
// second; with nothing changed the bytes of the last list are reused.
func TestEncodedListUnchangedRelistIsFree(t *testing.T) {
	l := newEncodedList(func(c *pod.Container) string { return c.ID },
		func(c *pod.Container) proto.Message { return containerToCRI(c) })
	var recs []*pod.Container
	for i := 0; i < 500; i++ {
		recs = append(recs, &pod.Container{ID: string(rune('a'+i%26)) + string(rune('a'+i/26)), Config: pod.ContainerConfig{
			Labels: map[string]string{"io.kubernetes.pod.name": "p", "io.kubernetes.pod.namespace": "ns"}}})
	}
	resp := &runtimeapi.ListContainersResponse{}
	if err := l.fill(resp, recs, true); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < 50; i++ {
		if err := l.fill(&runtimeapi.ListContainersResponse{}, recs, true); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	// The response and its unknown-fields header; the entries' bytes
	// (about 60 KB here) are not copied again.
	if perList := (after.TotalAlloc - before.TotalAlloc) / 50; perList > 1024 {
		t.Errorf("an unchanged relist of 500 containers allocated %d bytes", perList)
	}
	if got := decoded(t, resp); len(got) != 500 {
		t.Errorf("client got %d containers, want 500", len(got))
	}
}
