package errdefs

import (
	"errors"
	"fmt"
	"testing"
)

func TestSentinelMatchesItselfAndItsKind(t *testing.T) {
	errGone := Sentinel(ErrNotFound, "domain not found")
	other := Sentinel(ErrNotFound, "image not found")
	wrapped := fmt.Errorf("starting pv-1: %w", errGone)
	switch {
	case !errors.Is(wrapped, errGone):
		t.Error("a wrapped sentinel does not match itself")
	case !errors.Is(wrapped, ErrNotFound):
		t.Error("a wrapped sentinel does not match its kind")
	case errors.Is(wrapped, other):
		t.Error("a sentinel matches another sentinel of the same kind")
	case errors.Is(wrapped, ErrInvalidArgument):
		t.Error("a sentinel matches another kind")
	case wrapped.Error() != "starting pv-1: domain not found":
		t.Errorf("message %q", wrapped.Error())
	}
}
