package domain

import (
	"testing"

	"github.com/google/uuid"
)

func TestKeyedUUIDFor(t *testing.T) {
	k1, k2 := []byte("node-one-secret-node-one-secret!"), []byte("node-two-secret-node-two-secret!")
	a := KeyedUUIDFor(k1, "pod-a", 1)
	if a != KeyedUUIDFor(k1, "pod-a", 1) {
		t.Fatal("KeyedUUIDFor is not deterministic")
	}
	if u, err := uuid.Parse(a); err != nil || u.Version() != 8 {
		t.Fatalf("KeyedUUIDFor = %q (version %d, %v): want a version 8 UUID", a, u.Version(), err)
	}
	for _, other := range []string{UUIDFor("pod-a", 1), KeyedUUIDFor(k2, "pod-a", 1), KeyedUUIDFor(k1, "pod-a", 2), KeyedUUIDFor(k1, "pod-b", 1)} {
		if other == a {
			t.Errorf("KeyedUUIDFor collides with %s", other)
		}
	}
	in := validInput(t, nil)
	in.UUIDKey = k1
	d, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if d.UUID != KeyedUUIDFor(k1, in.PodUID, in.Attempt) {
		t.Errorf("Build with a key: UUID %s, want the keyed one", d.UUID)
	}
}
