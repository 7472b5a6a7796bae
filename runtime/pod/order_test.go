package pod

import (
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCreationOrderStaysSorted puts, replaces and removes records in random
// order and checks the order against a sort of what is left.
func TestCreationOrderStaysSorted(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewSource(1))
	o := creationOrder[Container]{key: containerKey}
	live := map[string]*Container{}
	base := time.Unix(1700000000, 0)
	for step := 0; step < 2000; step++ {
		id := string(rune('a'+rng.Intn(26))) + string(rune('a'+rng.Intn(26)))
		switch old := live[id]; {
		case old == nil:
			// Equal creation times happen (coarse clocks): the ID decides.
			c := &Container{ID: id, CreatedAt: base.Add(time.Duration(rng.Intn(50)) * time.Second)}
			o.put(c)
			live[id] = c
		case rng.Intn(2) == 0:
			cp := *old
			cp.State = ContainerRunning
			o.put(&cp)
			live[id] = &cp
		default:
			o.remove(old)
			delete(live, id)
		}
	}
	var want []*Container
	for _, c := range live {
		want = append(want, c)
	}
	slices.SortFunc(want, func(a, b *Container) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if !slices.Equal(o.recs, want) {
		t.Fatalf("order holds %d records, want %d in creation order", len(o.recs), len(want))
	}
}
