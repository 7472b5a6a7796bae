package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podvisor/podvisor/internal/syncbuf"
)

// The test binary doubles as a fake kubectl and a fake ssh: newFake links
// it into a directory as "kubectl" and "ssh", and puts only that directory
// on PATH. Run under either name, TestMain records the arguments in
// $PODVISORCTL_FAKE_DIR/calls.jsonl and answers with the response the test
// set for exactly those arguments.

const fakeDirEnv = "PODVISORCTL_FAKE_DIR"

func TestMain(m *testing.M) {
	switch tool := filepath.Base(os.Args[0]); tool {
	case "kubectl", "ssh", "vncviewer", "remote-viewer":
		os.Exit(fakeTool(tool, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeResponse is what the fake prints for one command line.
type fakeResponse struct {
	Tool   string `json:"tool"`
	Args   string `json:"args"` // space-joined, exactly
	Stdout []byte `json:"stdout,omitempty"`
	Stderr string `json:"stderr,omitempty"`
	Exit   int    `json:"exit,omitempty"`
	// EchoStdin copies standard input to standard output after Stdout.
	EchoStdin bool `json:"echoStdin,omitempty"`
	// Block waits for SIGTERM after printing (kubectl port-forward); the
	// fake records "<tool> SIGTERM" then.
	Block bool `json:"block,omitempty"`
}

type fakeCall struct {
	Tool string   `json:"tool"`
	Args []string `json:"args"`
}

func fakeTool(tool string, args []string) int {
	dir := os.Getenv(fakeDirEnv)
	record := func(c fakeCall) {
		f, err := os.OpenFile(filepath.Join(dir, "calls.jsonl"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			panic(err)
		}
		defer f.Close()
		b, _ := json.Marshal(c)
		f.Write(append(b, '\n'))
	}
	var sigs chan os.Signal
	if tool == "kubectl" {
		sigs = make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
	}
	record(fakeCall{Tool: tool, Args: args})
	var responses []fakeResponse
	if b, err := os.ReadFile(filepath.Join(dir, "responses.json")); err == nil {
		if err := json.Unmarshal(b, &responses); err != nil {
			panic(err)
		}
	}
	joined := strings.Join(args, " ")
	for _, r := range responses {
		if r.Tool != tool || r.Args != joined {
			continue
		}
		os.Stdout.Write(r.Stdout)
		os.Stderr.WriteString(r.Stderr)
		if r.EchoStdin {
			io.Copy(os.Stdout, os.Stdin)
		}
		if r.Block {
			select {
			case <-sigs:
				record(fakeCall{Tool: tool, Args: []string{"SIGTERM"}})
				return 0
			case <-time.After(time.Minute):
				return 3
			}
		}
		return r.Exit
	}
	fmt.Fprintf(os.Stderr, "fake %s: no response for %q\n", tool, joined)
	return 99
}

// fake is a test's fake kubectl and ssh.
type fake struct {
	t         *testing.T
	dir       string
	responses []fakeResponse
	stdin     string
	terminal  bool // the app's input is a terminal
	exe       string
	// cancelOn cancels the run's context once stdout contains it (a verb
	// that runs until Ctrl-C).
	cancelOn string
}

func newFake(t *testing.T) *fake {
	t.Helper()
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f := &fake{t: t, dir: dir, exe: exe}
	f.tool("kubectl").tool("ssh")
	t.Setenv("PATH", dir)
	t.Setenv(fakeDirEnv, dir)
	// Under -race a process sleeps 1 s at exit by default; the fakes need not.
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return f
}

// tool links the test binary as a fake program of that name.
func (f *fake) tool(tool string) *fake {
	f.t.Helper()
	if err := os.Symlink(f.exe, filepath.Join(f.dir, tool)); err != nil {
		f.t.Fatal(err)
	}
	return f
}

// on sets kubectl's answer to args (space-joined).
func (f *fake) on(args string, stdout string) *fake {
	f.responses = append(f.responses, fakeResponse{Tool: "kubectl", Args: args, Stdout: []byte(stdout)})
	return f
}

// fail makes kubectl fail on args.
func (f *fake) fail(args, stderr string, exit int) *fake {
	f.responses = append(f.responses, fakeResponse{Tool: "kubectl", Args: args, Stderr: stderr, Exit: exit})
	return f
}

func (f *fake) add(r fakeResponse) *fake {
	if r.Tool == "" {
		r.Tool = "kubectl"
	}
	f.responses = append(f.responses, r)
	return f
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs podvisorctl with args, as argv0.
func (f *fake) runAs(argv0 string, args ...string) result {
	f.t.Helper()
	b, err := json.Marshal(f.responses)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "responses.json"), b, 0o644); err != nil {
		f.t.Fatal(err)
	}
	os.Remove(filepath.Join(f.dir, "calls.jsonl"))
	var stdout, stderr syncbuf.Buffer
	a := &app{
		stdin:      strings.NewReader(f.stdin),
		stdout:     &stdout,
		stderr:     &stderr,
		lookPath:   exec.LookPath,
		executable: os.Executable,
		getenv:     os.Getenv,
		isTerminal: func(io.Reader) bool { return f.terminal },
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if f.cancelOn != "" {
		go func() {
			for ctx.Err() == nil && !strings.Contains(stdout.String(), f.cancelOn) {
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
		}()
	}
	code := a.run(ctx, argv0, args)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func (f *fake) run(args ...string) result {
	f.t.Helper()
	return f.runAs("podvisorctl", args...)
}

// calls returns the recorded command lines, "kubectl get pod ..." each.
func (f *fake) calls() []string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, "calls.jsonl"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var c fakeCall
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			f.t.Fatal(err)
		}
		out = append(out, c.Tool+" "+strings.Join(c.Args, " "))
	}
	return out
}

// Canned kubectl JSON.

const (
	vmID     = "3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e"
	vmDomain = "pv-3f2a9c1d5e6b7a8c"
	podSel   = "app.kubernetes.io/name=podvisor,app.kubernetes.io/component=runtime"
)

type podFixture struct {
	name, ns, node, image, containerID, phase string
	annotations                               map[string]string
	stdin, tty                                bool
	restarts                                  int
	podvisor                                  bool   // a podvisor DaemonSet pod
	runtimeClass                              string // spec.runtimeClassName
	memLimit                                  string // resources.limits.memory
}

func (p podFixture) object() map[string]any {
	c := map[string]any{"name": p.name, "image": p.image, "stdin": p.stdin, "tty": p.tty}
	if p.memLimit != "" {
		c["resources"] = map[string]any{"limits": map[string]any{"memory": p.memLimit, "cpu": "1"}, "requests": map[string]any{"memory": p.memLimit}}
	}
	containers := []any{c}
	statuses := []any{}
	if p.containerID != "" {
		statuses = append(statuses, map[string]any{"name": p.name, "containerID": p.containerID, "ready": p.phase == "Running", "restartCount": p.restarts, "image": p.image})
	}
	labels := map[string]any{"app": p.name}
	var initStatuses []any
	if p.podvisor {
		labels = map[string]any{"app.kubernetes.io/name": "podvisor", "app.kubernetes.io/component": "runtime"}
		containers = nil
		statuses = nil
		for _, c := range []string{"podvisor", "libvirt", "vms"} {
			containers = append(containers, map[string]any{"name": c, "image": "podvisor/podvisor:dev"})
			restarts := 0
			if c == "podvisor" {
				restarts = p.restarts
			}
			statuses = append(statuses, map[string]any{"name": c, "containerID": "containerd://" + c + "0123", "ready": true, "restartCount": restarts})
		}
		initStatuses = []any{map[string]any{"name": "prepare-node", "containerID": "containerd://init0123", "restartCount": 0}}
	}
	meta := map[string]any{"name": p.name, "namespace": p.ns, "uid": "0b6e3f7c-0000-4000-8000-" + fmt.Sprintf("%012d", len(p.name)), "labels": labels}
	if p.annotations != nil {
		meta["annotations"] = p.annotations
	}
	status := map[string]any{"phase": p.phase, "podIP": "10.244.1.7", "hostIP": "172.18.0.2", "containerStatuses": statuses}
	if initStatuses != nil {
		status["initContainerStatuses"] = initStatuses
	}
	spec := map[string]any{"containers": containers, "restartPolicy": "Always"}
	if p.node != "" {
		spec["nodeName"] = p.node
	}
	if p.runtimeClass != "" {
		spec["runtimeClassName"] = p.runtimeClass
	}
	return map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}
}

func (p podFixture) json() string {
	b, _ := json.MarshalIndent(p.object(), "", "    ")
	return string(b)
}

func list(pods ...podFixture) string {
	items := []any{}
	for _, p := range pods {
		items = append(items, p.object())
	}
	b, _ := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items, "metadata": map[string]any{"resourceVersion": ""}}, "", "    ")
	return string(b)
}

var (
	cirrosVM = podFixture{name: "cirros-vm", ns: "default", node: "node-1", image: "virtlet.cloud/cirros", containerID: "containerd://podvisor__" + vmID, phase: "Running",
		annotations: map[string]string{"kubernetes.io/target-runtime": "virtlet.cloud"}, stdin: true, tty: true}
	nginx      = podFixture{name: "nginx", ns: "default", node: "node-1", image: "nginx:1.27", containerID: "containerd://8d2e1f00aa", phase: "Running"}
	pendingVM  = podFixture{name: "new-vm", ns: "default", node: "node-1", image: "virtlet.cloud/cirros", phase: "Pending"}
	podvisor1  = podFixture{name: "podvisor-abcde", ns: "kube-system", node: "node-1", phase: "Running", podvisor: true}
	podvisor2  = podFixture{name: "podvisor-fghij", ns: "kube-system", node: "node-2", phase: "Running", podvisor: true, restarts: 2}
	podvisorPn = podFixture{name: "podvisor-zzzzz", ns: "kube-system", node: "node-3", phase: "Pending", podvisor: true}
)

// forwarding is kubectl port-forward's first lines.
func forwarding(port int, remote int) []byte {
	return fmt.Appendf(nil, "Forwarding from 127.0.0.1:%d -> %d\n", port, remote)
}
