// Package version is podvisor's version, one for every binary, the CRI
// Version RPC and the node image's tag (make image): the VERSION file next
// to this source, embedded at build time. A build may override it with
//
//	go build -ldflags "-X github.com/podvisor/podvisor/internal/version.override=0.2.0-rc1"
//
// (make VERSION=... does), for example to stamp a release candidate.
package version

import (
	_ "embed"
	"strings"
)

//go:embed VERSION
var file string

// override is set with -ldflags -X; empty in a plain go build.
var override string

// String returns podvisor's version, e.g. "0.1.0".
func String() string {
	if override != "" {
		return override
	}
	return strings.TrimSpace(file)
}
