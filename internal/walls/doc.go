// Package walls holds only a test: the import rules of docs/design.md
// ("Walls"), checked against `go list -deps` of the whole module, so that a
// change which breaks one fails `make test` naming the offending import.
package walls
