package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podvisor/podvisor/runtime/annotations"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./cmd/podvisorctl -run %s -update writes it)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got; -update rewrites it):\n%s", path, diff)
	}
}

const nodesJSON = `{"items":[
 {"metadata":{"name":"node-1","labels":{"podvisor.io/accelerator":"kvm"}}},
 {"metadata":{"name":"node-2","labels":{"podvisor.io/accelerator":"tcg"}}},
 {"metadata":{"name":"node-3"}}]}`

const runtimeClassesJSON = `{"items":[
 {"metadata":{"name":"podvisor"},"handler":"podvisor"},
 {"metadata":{"name":"vms-fast"},"handler":"podvisor"},
 {"metadata":{"name":"gvisor"},"handler":"runsc"}]}`

var (
	ubuntuVM = podFixture{name: "ubuntu-vm", ns: "vms", node: "node-2", image: "https://cloud-images.example/noble-server-cloudimg-amd64.img",
		containerID: "containerd://podvisor__0a1b2c3d4e5f60718293a4b5c6d7e8f9", phase: "Running", runtimeClass: "podvisor",
		annotations: map[string]string{"VirtletVCPUCount": "2"}, memLimit: "1536Mi"}
	bigVM = podFixture{name: "big-vm", ns: "vms", node: "node-3", image: "virtlet.cloud/fedora",
		containerID: "containerd://podvisor__fedcba9876543210fedcba9876543210", phase: "Running",
		annotations: map[string]string{"VirtletVCPUCount": "8"}, memLimit: "4G"}
	badVM = podFixture{name: "bad-vm", ns: "vms", node: "node-1", image: "virtlet.cloud/cirros", phase: "Pending",
		annotations: map[string]string{"VirtletVCPUCount": "lots"}}
	classVM  = podFixture{name: "class-vm", ns: "vms", image: "ubuntu/noble", phase: "Pending", runtimeClass: "vms-fast"}
	gvisored = podFixture{name: "sandboxed", ns: "vms", node: "node-1", image: "nginx:1.27", phase: "Pending", runtimeClass: "gvisor"}
)

func TestList(t *testing.T) {
	allPods := list(cirrosVM, nginx, pendingVM, ubuntuVM, bigVM, badVM, classVM, gvisored, podvisor1)
	tests := []struct {
		name       string
		args       []string
		setup      func(f *fake)
		wantCalls  []string
		wantStderr string
	}{
		{
			name: "table",
			args: []string{"list"},
			setup: func(f *fake) {
				f.on("get pods -o json", list(cirrosVM, nginx, pendingVM)).on("get nodes -o json", nodesJSON)
			},
			wantCalls: []string{"kubectl get pods -o json", "kubectl get nodes -o json"},
		},
		{
			name: "all-namespaces",
			args: []string{"list", "-A"},
			setup: func(f *fake) {
				f.on("get pods -A -o json", allPods).on("get runtimeclasses -o json", runtimeClassesJSON).on("get nodes -o json", nodesJSON)
			},
			wantCalls: []string{"kubectl get pods -A -o json", "kubectl get runtimeclasses -o json", "kubectl get nodes -o json"},
		},
		{
			name: "wide",
			args: []string{"-n", "vms", "list", "-o", "wide"},
			setup: func(f *fake) {
				f.on("get pods -n vms -o json", list(ubuntuVM, bigVM, badVM, classVM, gvisored)).on("get runtimeclasses -o json", runtimeClassesJSON).on("get nodes -o json", nodesJSON)
			},
			wantCalls: []string{"kubectl get pods -n vms -o json", "kubectl get runtimeclasses -o json", "kubectl get nodes -o json"},
		},
		{
			name: "json",
			args: []string{"list", "-A", "-o", "json"},
			setup: func(f *fake) {
				f.on("get pods -A -o json", list(cirrosVM, ubuntuVM, badVM)).on("get nodes -o json", nodesJSON)
			},
			wantCalls: []string{"kubectl get pods -A -o json", "kubectl get nodes -o json"},
		},
		{
			name: "yaml",
			args: []string{"list", "-A", "-o", "yaml"},
			setup: func(f *fake) {
				f.on("get pods -A -o json", list(cirrosVM, ubuntuVM, badVM)).on("get nodes -o json", nodesJSON)
			},
			wantCalls: []string{"kubectl get pods -A -o json", "kubectl get nodes -o json"},
		},
		{
			name: "no right to list nodes or runtimeclasses",
			args: []string{"list", "-A"},
			setup: func(f *fake) {
				f.on("get pods -A -o json", list(cirrosVM, classVM, podFixture{name: "rc-vm", ns: "vms", image: "x", phase: "Pending", runtimeClass: "podvisor"}))
				f.fail("get runtimeclasses -o json", "Error from server (Forbidden): runtimeclasses.node.k8s.io is forbidden\n", 1)
				f.fail("get nodes -o json", "Error from server (Forbidden): nodes is forbidden\n", 1)
			},
			wantCalls: []string{"kubectl get pods -A -o json", "kubectl get runtimeclasses -o json", "kubectl get nodes -o json"},
		},
		{
			name:       "none",
			args:       []string{"-n", "web", "list"},
			setup:      func(f *fake) { f.on("get pods -n web -o json", list(nginx)) },
			wantCalls:  []string{"kubectl get pods -n web -o json"},
			wantStderr: "No VM pods found in namespace web.\n",
		},
		{
			name:      "none as json",
			args:      []string{"list", "-o", "json"},
			setup:     func(f *fake) { f.on("get pods -o json", list()) },
			wantCalls: []string{"kubectl get pods -o json"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			tc.setup(f)
			r := f.run(tc.args...)
			if r.code != 0 || r.stderr != tc.wantStderr {
				t.Errorf("exit %d, stderr %q, want 0 and %q", r.code, r.stderr, tc.wantStderr)
			}
			if diff := cmp.Diff(tc.wantCalls, f.calls()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			golden(t, "list-"+strings.ReplaceAll(tc.name, " ", "-")+".golden", "$ podvisorctl "+strings.Join(tc.args, " ")+"\n"+r.stdout)
		})
	}
}

func TestListErrors(t *testing.T) {
	tests := []struct {
		args  []string
		setup func(f *fake)
		want  string
	}{
		{[]string{"list", "-o", "name"}, nil, `-o "name": want wide, json or yaml (or no -o for the table)`},
		{[]string{"-n", "vms", "list", "-A"}, nil, "-A lists every namespace; give it or -n NAMESPACE, not both"},
		{[]string{"list", "x"}, nil, `podvisorctl list takes no arguments, got ["x"]`},
		{[]string{"list"}, func(f *fake) {
			f.fail("get pods -o json", "error: You must be logged in to the server (Unauthorized)\n", 1)
		},
			"podvisorctl: kubectl get pods -o json: error: You must be logged in to the server (Unauthorized)"},
	}
	for _, tc := range tests {
		f := newFake(t)
		if tc.setup != nil {
			tc.setup(f)
		}
		r := f.run(tc.args...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

// TestQuantityBytes: podvisorctl reads memory limits as Kubernetes does.
func TestQuantityBytes(t *testing.T) {
	for _, q := range []string{"0", "1", "512Mi", "1536Mi", "1Gi", "1.5Gi", "4G", "100M", "1e9", "1E3", "2.5e6", "128974848", "129e6", "123Mi", "1k", "1Ki", "3Ti", "1Ei", "500m", "0.1", "+1Gi"} {
		parsed := resource.MustParse(q)
		want := parsed.Value()
		got, err := quantityBytes(q)
		if err != nil || got != want {
			t.Errorf("quantityBytes(%q) = %d, %v; Kubernetes reads %d", q, got, err, want)
		}
	}
	for _, q := range []string{"", "Mi", "1MB", "1/2", "-1Gi", "1.2.3", "lots", "1e3Mi", "20Ei"} {
		if _, perr := resource.ParseQuantity(q); perr == nil && !strings.HasPrefix(q, "-") && q != "20Ei" && q != "Mi" {
			t.Errorf("%q: Kubernetes accepts it; fix the test", q)
		}
		if got, err := quantityBytes(q); err == nil {
			t.Errorf("quantityBytes(%q) = %d, want an error", q, got)
		}
	}
}

// TestListMatchesPodvisor: list computes vCPUs and memory with podvisor's
// annotation, defaults and RuntimeClass handler.
func TestListMatchesPodvisor(t *testing.T) {
	if vcpuAnnotation != annotations.KeyVCPUCount || defaultVCPUs != annotations.DefaultVCPUCount ||
		defaultMemoryBytes != annotations.DefaultMemoryBytes || annotations.MaxVCPUCount != 255 {
		t.Errorf("podvisorctl list: %s default %d, memory %d; podvisor: %s default %d (max %d), memory %d",
			vcpuAnnotation, defaultVCPUs, defaultMemoryBytes, annotations.KeyVCPUCount, annotations.DefaultVCPUCount, annotations.MaxVCPUCount, annotations.DefaultMemoryBytes)
	}
	rc, err := os.ReadFile(filepath.Join("..", "..", "deploy", "runtimeclass.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rc), "\nhandler: "+podvisorHandler+"\n") || !strings.Contains(string(rc), "\n  name: "+podvisorHandler+"\n") {
		t.Errorf("deploy/runtimeclass.yaml is not RuntimeClass %q with handler %q", podvisorHandler, podvisorHandler)
	}
}
