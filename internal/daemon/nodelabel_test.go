package daemon

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/podvisor/podvisor/fakes/kubeapi"
	"github.com/podvisor/podvisor/fakes/simhv"
	"github.com/podvisor/podvisor/internal/syncbuf"
	"github.com/podvisor/podvisor/runtime/kube/apiclient"
)

var nodeResource = kubeapi.Resource{Version: "v1", Resource: "nodes", Kind: "Node"}

// TestNodeLabelledWithAccelerator: with --node-name the daemon labels its
// Node with the accelerator and annotates it with the reason.
func TestNodeLabelledWithAccelerator(t *testing.T) {
	api := kubeapi.New()
	defer api.Close()
	if err := api.Add(nodeResource, map[string]any{"metadata": map[string]any{"name": "node-1", "labels": map[string]any{"kubernetes.io/hostname": "node-1"}}}); err != nil {
		t.Fatal(err)
	}
	if err := api.Add(mappingResource); err != nil { // served, empty: start-up does not wait
		t.Fatal(err)
	}
	h := harnessWithKubeconfig(t, api.URL, func(c *Config) { c.NodeName = "node-1" })
	c, err := apiclient.New(api.Config())
	if err != nil {
		t.Fatal(err)
	}
	var node struct {
		Metadata struct {
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := c.Get(t.Context(), "/api/v1/nodes/node-1", &node); err != nil {
			t.Fatal(err)
		}
		if node.Metadata.Labels[LabelAccelerator] != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := map[string]string{"kubernetes.io/hostname": "node-1", LabelAccelerator: "sim"}
	if d := cmp.Diff(want, node.Metadata.Labels); d != "" {
		t.Errorf("node labels (-want +got):\n%s", d)
	}
	if got := node.Metadata.Annotations[AnnotationAcceleratorReason]; got != simhv.SimAcceleratorReason {
		t.Errorf("annotation %s = %q, want %q", AnnotationAcceleratorReason, got, simhv.SimAcceleratorReason)
	}
	h.stop()
	if !strings.Contains(h.logs.String(), "node labelled with its accelerator") {
		t.Errorf("no log line for the label:\n%s", h.logs.String())
	}
}

// fakePatcher fails its first fails calls.
type fakePatcher struct {
	mu      sync.Mutex
	fails   int
	calls   int
	path    string
	patches []any
}

func (f *fakePatcher) MergePatch(_ context.Context, path string, patch, _ any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.path = path
	f.patches = append(f.patches, patch)
	if f.calls <= f.fails {
		return errors.New("403 Forbidden: cannot patch resource nodes")
	}
	return nil
}

func (f *fakePatcher) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// TestLabelNodeRetries: a refused patch is retried until it works; the
// first failure is a warning, the rest are not; stop ends the retries.
func TestLabelNodeRetries(t *testing.T) {
	logs := &syncbuf.Buffer{}
	d := &Daemon{log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	p := &fakePatcher{fails: 2}
	stop := d.labelNode(p, "n1", "tcg", "no /dev/kvm", backoff.NewConstantBackOff(time.Millisecond))
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "node labelled") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	_ = stop()
	if p.count() != 3 || p.path != "/api/v1/nodes/n1" {
		t.Errorf("%d calls on %s, want 3 on /api/v1/nodes/n1", p.count(), p.path)
	}
	if d := cmp.Diff(acceleratorPatch("tcg", "no /dev/kvm"), p.patches[2]); d != "" {
		t.Errorf("patch (-want +got):\n%s", d)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings for two failures, want 1:\n%s", n, logs.String())
	}

	// A patch that never works: stop returns, and no call follows it.
	p = &fakePatcher{fails: 1 << 30}
	stop = d.labelNode(p, "n1", "tcg", "x", backoff.NewConstantBackOff(time.Millisecond))
	for p.count() < 3 {
		time.Sleep(time.Millisecond)
	}
	_ = stop()
	n := p.count()
	time.Sleep(20 * time.Millisecond)
	if p.count() != n {
		t.Errorf("patches went on after stop: %d, then %d", n, p.count())
	}
}

func TestNodeNameValidation(t *testing.T) {
	base := func() Config { return Config{Listen: "unix:///tmp/x.sock", StateDir: t.TempDir()} }
	c := base()
	c.NodeName = "node-1"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "node-name: needs kubeconfig") {
		t.Errorf("node-name without kubeconfig: %v", err)
	}
	c = base()
	c.NodeName, c.Kubeconfig = "Node_1", "/kubeconfig"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `node-name: "Node_1" is not accepted`) {
		t.Errorf("bad node-name: %v", err)
	}
	c = base()
	c.NodeName, c.Kubeconfig = "ip-10-0-0-1.ec2.internal", "/kubeconfig"
	if err := c.Validate(); err != nil {
		t.Errorf("a dotted node name: %v", err)
	}
}
