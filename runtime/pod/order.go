package pod

import (
	"slices"
	"strings"
	"time"
)

// creationOrder keeps published records oldest first (then by ID), so
// that lists — kubelet relists every second — need no sort. A record's
// key never changes between its versions, so a new version takes its old
// place. Manager.mu guards it, as it guards the maps.
type creationOrder[T any] struct {
	recs []*T
	key  func(*T) (time.Time, string)
}

func (o *creationOrder[T]) find(r *T) (int, bool) {
	t, id := o.key(r)
	return slices.BinarySearchFunc(o.recs, r, func(e, _ *T) int {
		et, eid := o.key(e)
		if c := et.Compare(t); c != 0 {
			return c
		}
		return strings.Compare(eid, id)
	})
}

// put inserts r, or replaces the version of r already there.
func (o *creationOrder[T]) put(r *T) {
	i, ok := o.find(r)
	if ok {
		o.recs[i] = r
		return
	}
	o.recs = slices.Insert(o.recs, i, r)
}

// remove takes out the record with r's key.
func (o *creationOrder[T]) remove(r *T) {
	if i, ok := o.find(r); ok {
		o.recs = slices.Delete(o.recs, i, i+1)
	}
}

func sandboxKey(sb *Sandbox) (time.Time, string) { return sb.CreatedAt, sb.ID }

func containerKey(c *Container) (time.Time, string) { return c.CreatedAt, c.ID }
