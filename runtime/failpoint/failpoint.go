// Package failpoint makes named steps of the lifecycle fail on demand, so
// that tests (and operators reproducing a bug) can check that a failure at
// any step leaves nothing behind. A Points is handed to the lifecycle in its
// configuration (a nil one has nothing armed); the daemon builds one from
// the environment variable PODVISOR_FAILPOINTS, a comma-separated list of
// NAME or NAME=COUNT (COUNT failures, then the step works again).
package failpoint

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// EnvVar enables failpoints in a running podvisor.
const EnvVar = "PODVISOR_FAILPOINTS"

// Points is a set of armed failpoints, safe for concurrent use.
type Points struct {
	mu     sync.Mutex
	active map[string]int // name -> remaining failures; -1 forever
}

// Parse reads EnvVar's format: "NAME" fails until cleared, "NAME=COUNT"
// COUNT times. An empty spec gives nil (nothing armed).
func Parse(spec string) *Points {
	var p *Points
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, count, found := strings.Cut(item, "=")
		n := -1
		if found {
			if v, err := strconv.Atoi(count); err == nil && v > 0 {
				n = v
			}
		}
		if p == nil {
			p = &Points{}
		}
		p.Set(name, n)
	}
	return p
}

// Eval returns an error if the failpoint name is armed, counting it down.
func (p *Points) Eval(name string) error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.active[name]
	if !ok {
		return nil
	}
	switch {
	case n > 1:
		p.active[name] = n - 1
	case n == 1:
		delete(p.active, name)
	}
	return fmt.Errorf("failpoint %s", name)
}

// Set arms name for count failures (-1: until cleared).
func (p *Points) Set(name string, count int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active == nil {
		p.active = map[string]int{}
	}
	p.active[name] = count
}

// Clear disarms every failpoint.
func (p *Points) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.active = nil
}
