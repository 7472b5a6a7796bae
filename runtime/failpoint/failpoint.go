// Package failpoint makes named steps of the lifecycle fail on demand, so
// that tests (and operators reproducing a bug) can check that a failure at
// any step leaves nothing behind. Failpoints are off unless set by a test
// or by the environment variable PODVISOR_FAILPOINTS, a comma-separated
// list of NAME or NAME=COUNT (COUNT failures, then the step works again).
package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// EnvVar enables failpoints in a running podvisor.
const EnvVar = "PODVISOR_FAILPOINTS"

var (
	mu     sync.Mutex
	active = map[string]int{} // name -> remaining failures; -1 forever
	loaded bool
)

func load() {
	if loaded {
		return
	}
	loaded = true
	for _, item := range strings.Split(os.Getenv(EnvVar), ",") {
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
		active[name] = n
	}
}

// Eval returns an error if the failpoint name is armed, counting it down.
func Eval(name string) error {
	mu.Lock()
	defer mu.Unlock()
	load()
	n, ok := active[name]
	if !ok {
		return nil
	}
	switch {
	case n > 1:
		active[name] = n - 1
	case n == 1:
		delete(active, name)
	}
	return fmt.Errorf("failpoint %s", name)
}

// Set arms name for count failures (-1: until cleared).
func Set(name string, count int) {
	mu.Lock()
	defer mu.Unlock()
	load()
	active[name] = count
}

// Clear disarms every failpoint.
func Clear() {
	mu.Lock()
	defer mu.Unlock()
	loaded = true
	active = map[string]int{}
}
