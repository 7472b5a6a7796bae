package cri

import (
	"testing"
	"time"
)

func TestNanoCores(t *testing.T) {
	c := newCPUSamples()
	t0 := time.Unix(1000, 0)
	steps := []struct {
		name  string
		id    string
		at    time.Duration
		usage uint64
		want  int64 // -1: no rate
	}{
		{"first sample", "a", 0, 5e9, -1},
		{"half a core over 2 s", "a", 2 * time.Second, 6e9, 5e8},
		{"same instant: the last rate", "a", 2 * time.Second, 6e9, 5e8},
		{"another object is its own series", "b", 2 * time.Second, 1e9, -1},
		{"two cores over 500 ms", "a", 2500 * time.Millisecond, 7e9, 2e9},
		{"usage went down (VM restarted): start again", "a", 3 * time.Second, 1e8, -1},
		{"after the restart", "a", 4 * time.Second, 3e8, 2e8},
	}
	for _, s := range steps {
		got := int64(-1)
		if v := c.nanoCores(s.id, t0.Add(s.at), s.usage); v != nil {
			got = int64(v.Value)
		}
		if got != s.want {
			t.Errorf("%s: nanoCores = %d, want %d", s.name, got, s.want)
		}
	}
	c.nanoCores("a", t0.Add(sampleTTL+5*time.Second), 4e8)
	if _, ok := c.last["b"]; ok {
		t.Error("a sample older than sampleTTL was kept")
	}
}
