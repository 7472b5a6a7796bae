package version

import (
	"regexp"
	"testing"
)

// The version becomes an image tag (make image) and a semver for users:
// [0-9]+.[0-9]+.[0-9]+ with an optional -suffix, nothing a tag forbids.
func TestStringIsTagSafeSemver(t *testing.T) {
	re := regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)
	if v := String(); !re.MatchString(v) || len(v) > 128 {
		t.Fatalf("VERSION %q: want MAJOR.MINOR.PATCH[-suffix] of at most 128 characters, usable as an image tag", v)
	}
}

func TestOverrideWins(t *testing.T) {
	defer func(o string) { override = o }(override)
	override = "9.9.9-rc1"
	if got := String(); got != "9.9.9-rc1" {
		t.Fatalf("String() = %q with override set, want the override", got)
	}
}
