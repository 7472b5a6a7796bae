package fakenet

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/podtypes"
)

func TestAllocatesPersistsAndReleases(t *testing.T) {
	dir := t.TempDir()
	n, err := New(dir, "10.9.0.0/30")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, b := &podtypes.Sandbox{ID: "a"}, &podtypes.Sandbox{ID: "b"}
	st, err := n.Setup(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.IPs(); len(got) != 1 || got[0] != "10.9.0.2" {
		t.Fatalf("first address = %v, want [10.9.0.2] (.1 is the gateway)", got)
	}
	// A /30 has one address besides the gateway and broadcast.
	if _, err := n.Setup(ctx, b); err == nil {
		t.Fatal("Setup on a full subnet succeeded")
	}
	// Restart: the allocation survives, a repeated Setup returns it.
	n2, err := New(dir, "10.9.0.0/30")
	if err != nil {
		t.Fatal(err)
	}
	st2, err := n2.Setup(ctx, a)
	if err != nil || st2.IPs()[0] != "10.9.0.2" {
		t.Fatalf("Setup after restart = %v, %v", st2.IPs(), err)
	}
	if err := n2.Teardown(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := n2.Teardown(ctx, a); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
	if got := n2.Allocated(); len(got) != 0 {
		t.Fatalf("allocations left after teardown: %v", got)
	}
	if _, err := n2.Setup(ctx, b); err != nil {
		t.Fatalf("Setup after release: %v", err)
	}
}

func TestFaults(t *testing.T) {
	n, _ := New("", "")
	boom := errors.New("boom")
	n.FailSetup(boom)
	if _, err := n.Setup(context.Background(), &podtypes.Sandbox{ID: "x"}); !errors.Is(err, boom) {
		t.Fatalf("Setup err = %v, want boom", err)
	}
	if len(n.Allocated()) != 0 {
		t.Fatal("a failed Setup allocated an address")
	}
	if _, err := New("", "fe80::/64"); err == nil {
		t.Fatal("IPv6 subnet accepted")
	}
}

// TestRoundRobin: like host-local, a released address is handed out again
// only after the others, so a restarted pod rarely gets a stale peer's IP.
func TestRoundRobin(t *testing.T) {
	n, err := New(t.TempDir(), "10.9.0.0/29") // .2 to .6 for pods
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var got []string
	for _, id := range []string{"a", "b", "release a", "c", "d", "e", "f"} {
		if id == "release a" {
			if err := n.Teardown(ctx, &podtypes.Sandbox{ID: "a"}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		st, err := n.Setup(ctx, &podtypes.Sandbox{ID: id})
		if err != nil {
			t.Fatalf("Setup %s: %v", id, err)
		}
		got = append(got, id+"="+st.IPs()[0])
	}
	want := []string{"a=10.9.0.2", "b=10.9.0.3", "c=10.9.0.4", "d=10.9.0.5", "e=10.9.0.6", "f=10.9.0.2"}
	if !slices.Equal(got, want) {
		t.Errorf("allocations %v, want %v", got, want)
	}
}

// A pod asking for extra networks is refused, not given eth0 alone.
func TestRefusesExtraNetworks(t *testing.T) {
	n, err := New("", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"k8s.v1.cni.cncf.io/networks", "cni"} {
		sb := &podtypes.Sandbox{ID: "x", Config: podtypes.SandboxConfig{Annotations: map[string]string{k: "net-b"}}}
		if _, err := n.Setup(context.Background(), sb); !errors.Is(err, errdefs.ErrUnimplemented) || !strings.Contains(err.Error(), "annotation "+k) {
			t.Errorf("%s: Setup = %v, want Unimplemented naming the annotation", k, err)
		}
	}
	if got := n.Allocated(); len(got) != 0 {
		t.Errorf("allocated %v", got)
	}
}
