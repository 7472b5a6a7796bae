// Package processtests holds integration tests of podvisor's binaries run
// as processes (internal/daemonproc) and driven through the CRI: the
// lifecycle on the simulated hypervisor with kill -9 between the steps.
// They are gated (docs/design.md, tests) because they need make build's
// binaries and, for attach, crictl.
package processtests
