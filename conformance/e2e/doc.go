// Package e2e is podvisor's end-to-end suite: a real one-node Kubernetes
// (built and started by ci/e2e.sh) whose kubelet talks to criproxy in front
// of containerd and podvisor on libvirt. The specs are in files with the
// build tag "e2e" so that `go test ./...` does not run them without the
// cluster; ci/e2e.sh builds them with `go test -tags e2e -c`.
package e2e
