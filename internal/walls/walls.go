package walls

import (
	"fmt"
	"sort"
	"strings"
)

// Package is what the rules need of one package from `go list -json`.
type Package struct {
	ImportPath string
	Standard   bool
	Imports    []string
	CgoFiles   []string
}

// Graph is the import graph of the module and everything it links.
type Graph map[string]Package

// Rule forbids packages matched by From to reach (directly, or through any
// chain of imports when Transitive) a package matched by Forbidden. Except
// lists importers the rule does not apply to.
type Rule struct {
	Name       string
	From       []string
	Except     []string
	Forbidden  []string
	Transitive bool
}

// matches reports whether path is one of the patterns: "x" is x itself,
// "x/..." is x and everything below it.
func matches(path string, patterns []string) bool {
	for _, p := range patterns {
		if base, ok := strings.CutSuffix(p, "/..."); ok {
			if path == base || strings.HasPrefix(path, base+"/") {
				return true
			}
		} else if path == p {
			return true
		}
	}
	return false
}

// Check returns one line per (rule, package) that breaks a rule, with the
// chain of imports that reaches the forbidden package, sorted.
func Check(g Graph, rules []Rule) []string {
	var bad []string
	for _, r := range rules {
		for path := range g {
			if !matches(path, r.From) || matches(path, r.Except) {
				continue
			}
			if chain := g.reach(path, r); chain != nil {
				bad = append(bad, fmt.Sprintf("%s: %s", r.Name, strings.Join(chain, " -> ")))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// reach finds the shortest chain from start to a package the rule forbids.
func (g Graph) reach(start string, r Rule) []string {
	prev := map[string]string{start: ""}
	queue := []string{start}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, imp := range g[cur].Imports {
			if _, seen := prev[imp]; seen {
				continue
			}
			prev[imp] = cur
			if matches(imp, r.Forbidden) {
				return chain(prev, imp)
			}
			if r.Transitive {
				queue = append(queue, imp)
			}
		}
	}
	return nil
}

func chain(prev map[string]string, end string) []string {
	var c []string
	for p := end; p != ""; p = prev[p] {
		c = append([]string{p}, c...)
	}
	return c
}

// CgoOutside lists the non-standard packages with cgo files that are not
// allowed to have them.
func CgoOutside(g Graph, allowed []string) []string {
	var bad []string
	for path, p := range g {
		if !p.Standard && len(p.CgoFiles) > 0 && !matches(path, allowed) {
			bad = append(bad, fmt.Sprintf("cgo only in libvirt.org/go/libvirt: %s has cgo files %v", path, p.CgoFiles))
		}
	}
	sort.Strings(bad)
	return bad
}
