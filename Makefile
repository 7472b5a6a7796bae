# podvisor: virtual machines as Kubernetes pods.
#
#   make build   every binary into bin/
#   make test    installs what it needs (Debian packages, crictl), starts what
#                it needs (libvirtd), runs every test tier this machine allows
#   make demo    a VM pod through our CRI: console shown, pod IP answers
#   make lint    gofmt, go vet, go mod tidy, shellcheck, actionlint
#   make bench   benchmarks; results in docs/bench/
#   make image   the node image as an OCI archive in _build/image/ (docs/install.md)
#   make fuzz    every fuzz target for FUZZTIME (default 60s) each

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
export GOTOOLCHAIN := local

BIN    := $(CURDIR)/bin
TOOLS  := $(CURDIR)/_build/tools
CRICTL := $(TOOLS)/crictl
CRI_TOOLS_VERSION := v1.37.0
GUEST_DIR ?= /var/tmp/podvisor-test-guest

CMDS := $(notdir $(wildcard cmd/*))

# The project's version (internal/version): binaries, CRI Version, image tag.
VERSION ?= $(shell tr -d '[:space:]' < internal/version/VERSION)

CRITEST := $(TOOLS)/critest
ACTIONLINT := $(TOOLS)/actionlint
ACTIONLINT_VERSION := v1.7.12
# Every shell script: *.sh and the ones without the suffix.
SHELL_SCRIPTS = $(shell git ls-files '*.sh') deploy/image/podvisor-vms-emulator ci/bench-env.inc ci/registry.inc kind/virsh .ci/run

.PHONY: all build image test demo lint bench fuzz deps tools unit scale-smoke crictl-sim domain-xml registry-tests libvirt-it real-pod cloud-image-it proxy-it conformance critest-podvisor e2e clean

all: build

build:
	@mkdir -p $(BIN)
	go build -ldflags "-X github.com/podvisor/podvisor/internal/version.override=$(VERSION)" -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

# podvisor's node image, offline from Debian packages (deploy/image/build.sh):
# _build/image/podvisor-$(VERSION).tar, an OCI archive; prints its reference.
# The Debian root is cached in /var/cache/podvisor-image (REFRESH=1 renews it).
image: deps
	VERSION=$(VERSION) deploy/image/build.sh

deps:
	ci/install-deps.sh

tools: $(CRICTL)

$(CRICTL):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) go install -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$(CRI_TOOLS_VERSION)" \
		sigs.k8s.io/cri-tools/cmd/crictl@$(CRI_TOOLS_VERSION)

$(ACTIONLINT):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)

# gofmt, go vet, go mod tidy; shellcheck (warnings and errors) on every
# shell script; actionlint (with shellcheck on the run: steps) on
# .github/workflows. shellcheck is a Debian package (ci/deps-base.txt).
lint: $(ACTIONLINT)
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	go vet ./...
	go vet -tags e2e ./conformance/e2e/
	go mod tidy -diff
	@command -v shellcheck >/dev/null || { echo "shellcheck missing: run ci/install-deps.sh"; exit 1; }
	shellcheck -S warning $(SHELL_SCRIPTS)
	$(ACTIONLINT) .github/workflows/*.yml

# Unit and in-process tiers: pure packages, the lifecycle on the simulated
# hypervisor, the CRI over a real gRPC socket. -race throughout.
unit:
	go test -race -count=1 -timeout 30m ./...

# TestScale with 50 pods on bin/podvisor --hypervisor sim: a smoke of the
# scale path (make bench runs 500 and records them).
scale-smoke:
	PODVISOR_SCALE_PODS=50 go test -count=1 -timeout 10m -run '^TestScale$$' ./internal/scalebench/

domain-xml:
	ci/validate-domain-xml.sh

# bin/podvisor --hypervisor sim as a process, killed with SIGKILL and
# restarted between the steps of a pod's lifecycle (internal/processtests).
crictl-sim: build tools
	PODVISOR_PROCESS_TESTS=1 CRICTL=$(CRICTL) go test -race -count=1 -timeout 10m ./internal/processtests/

# OCI containerDisk pulls against Debian's docker-registry on loopback
# (each test starts its own and kills it by PID), images pushed with skopeo.
registry-tests:
	PODVISOR_REGISTRY_TESTS=1 go test -race -count=1 -timeout 10m -run '^TestRegistry' ./runtime/image/

libvirt-it:
	ci/test-libvirt.sh

real-pod: build tools
	ci/real-pod.sh test

# A Debian 12 cloud image (its own cloud-init, sshd, qemu-guest-agent) booted
# through our CRI on libvirt + CNI, and with the golden cloud-init drives.
cloud-image-it: build tools
	ci/cloud-image.sh

proxy-it: build tools
	ci/test-proxy.sh $(CRICTL)

# critest v1.37 against podvisor on real libvirt with VM test images
# (docs/conformance.md lists every spec); exits non-zero while specs fail.
critest-podvisor: deps build tools
	CRICTL=$(CRICTL) CRITEST=$(CRITEST) ci/critest-podvisor.sh

# A one-node Kubernetes v1.37.2 on containerd 2.4.2 (both built from the Go
# module proxy, cached in /var/cache/podvisor), podvisor installed onto it
# from deploy/ with the image of `make image`, the Ginkgo suite of
# conformance/e2e, then the uninstall (docs/e2e.md). Root.
e2e: build tools
	ci/e2e.sh

# critest v1.37 against containerd (Debian's 1.6 and 2.4.2) directly and
# through criproxy (docs/conformance.md records both).
conformance: deps build tools
	CRICTL=$(CRICTL) CRITEST=$(CRITEST) ci/conformance.sh

# Every tier in one script that stops what it started (ci/test.sh).
test:
	ci/test.sh

demo: deps build tools
	ci/real-pod.sh demo

bench:
	ci/bench.sh

# make test runs each for 10s; longer here. Failing inputs land in the
# package's testdata/fuzz/.
FUZZTIME ?= 60s
fuzz:
	FUZZTIME=$(FUZZTIME) ci/test-fuzz.sh

clean:
	rm -rf $(BIN) _build
