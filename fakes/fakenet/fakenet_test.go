package fakenet

import (
	"context"
	"errors"
	"testing"

	"github.com/podvisor/podvisor/runtime/pod"
)

func TestAllocatesPersistsAndReleases(t *testing.T) {
	dir := t.TempDir()
	n, err := New(dir, "10.9.0.0/30")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, b := &pod.Sandbox{ID: "a"}, &pod.Sandbox{ID: "b"}
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
	if _, err := n.Setup(context.Background(), &pod.Sandbox{ID: "x"}); !errors.Is(err, boom) {
		t.Fatalf("Setup err = %v, want boom", err)
	}
	if len(n.Allocated()) != 0 {
		t.Fatal("a failed Setup allocated an address")
	}
	if _, err := New("", "fe80::/64"); err == nil {
		t.Fatal("IPv6 subnet accepted")
	}
}
