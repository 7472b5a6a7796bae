package daemon

import (
	"bufio"
	"context"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/streamserver"
)

// TestAttachIsTheSerialConsole drives Attach the way kubectl does (SPDY to
// the streaming URL): what is typed reaches the guest's console, the
// guest's answer comes back, and the detach key ends the session while the
// VM keeps running.
func TestAttachIsTheSerialConsole(t *testing.T) {
	h := newHarness(t)
	c := ctx(t)
	if _, err := h.img.PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}}); err != nil {
		t.Fatal(err)
	}
	run, err := h.rt.RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: sandboxConfig("att")})
	if err != nil {
		t.Fatal(err)
	}
	cr, err := h.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: run.PodSandboxId, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "vm"}, Image: &runtimeapi.ImageSpec{Image: "virtlet.cloud/cirros"}, Stdin: true, Tty: true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.rt.Attach(c, &runtimeapi.AttachRequest{ContainerId: cr.ContainerId, Stdin: true, Stdout: true}); err == nil {
		t.Error("Attach to a created (not running) VM succeeded")
	}
	if _, err := h.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatal(err)
	}
	var resp *runtimeapi.AttachResponse
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err = h.rt.Attach(c, &runtimeapi.AttachRequest{ContainerId: cr.ContainerId, Stdin: true, Stdout: true, Tty: true})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // the console pump connects right after start
	}
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(resp.Url)
	if err != nil {
		t.Fatal(err)
	}
	exec, err := remotecommand.NewSPDYExecutor(&rest.Config{Host: u.Host}, "POST", u)
	if err != nil {
		t.Fatal(err)
	}
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	done := make(chan error, 1)
	sctx, cancel := context.WithTimeout(c, 30*time.Second)
	defer cancel()
	go func() {
		done <- exec.StreamWithContext(sctx, remotecommand.StreamOptions{Stdin: stdinR, Stdout: stdoutW, Tty: true})
		stdoutW.Close()
	}()
	domainName := h.d.manager.ListContainers(podFilterAll())[0].DomainName
	lines := bufio.NewReader(stdoutR)
	// Type until the guest answers: the session may take a moment to be
	// wired through.
	got := make(chan string, 1)
	go func() {
		// Keep reading to the end: the client blocks on an unread pipe.
		sent := false
		for {
			l, err := lines.ReadString('\n')
			if !sent && strings.TrimSpace(l) == domainName {
				got <- l
				sent = true
			}
			if err != nil {
				return
			}
		}
	}()
	typed := false
	for !typed {
		stdinW.Write([]byte("hostname\n"))
		select {
		case <-got:
			typed = true
		case <-time.After(500 * time.Millisecond):
		case <-sctx.Done():
			t.Fatal("the guest never answered `hostname` through attach")
		}
	}
	stdinW.Write([]byte{streamserver.DetachKey})
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("attach session ended with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the detach key did not end the session")
	}
	cs, err := h.rt.ContainerStatus(c, &runtimeapi.ContainerStatusRequest{ContainerId: cr.ContainerId})
	if err != nil || cs.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("after detaching the VM is %v, %v; want running", cs.GetStatus().GetState(), err)
	}
}

// TestExecStdinBeyondTheLimit drives `kubectl exec -i` the way kubectl
// does (SPDY to the streaming URL) with more stdin than --exec-stdin-limit:
// the client gets an error naming the limit (kubectl prints it and exits
// non-zero), and stdin within the limit still reaches the command.
func TestExecStdinBeyondTheLimit(t *testing.T) {
	h := newHarness(t)
	h.stop()
	h.cfg.ExecStdinLimit = 4096
	h.start()
	c := ctx(t)
	_, cr := h.createdVM(t, "exi")
	if _, err := h.rt.StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatal(err)
	}
	execCat := func(stdin []byte) (string, error) {
		resp, err := h.rt.Exec(c, &runtimeapi.ExecRequest{ContainerId: cr.ContainerId, Cmd: []string{"cat"}, Stdin: true, Stdout: true, Stderr: true})
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(resp.Url)
		if err != nil {
			t.Fatal(err)
		}
		exec, err := remotecommand.NewSPDYExecutor(&rest.Config{Host: u.Host}, "POST", u)
		if err != nil {
			t.Fatal(err)
		}
		var out, errOut strings.Builder
		sctx, cancel := context.WithTimeout(c, 30*time.Second)
		defer cancel()
		err = exec.StreamWithContext(sctx, remotecommand.StreamOptions{Stdin: strings.NewReader(string(stdin)), Stdout: &out, Stderr: &errOut})
		return out.String(), err
	}
	small := strings.Repeat("y", 4096)
	var out string
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for out, err = execCat([]byte(small)); err != nil && time.Now().Before(deadline); out, err = execCat([]byte(small)) {
		time.Sleep(50 * time.Millisecond) // the guest agent answers once the guest has booted
	}
	if err != nil || out != small {
		t.Fatalf("exec cat with 4096 bytes of stdin (the limit) = %d bytes, %v; want them back", len(out), err)
	}
	if _, err := execCat(make([]byte, 4097)); err == nil || !strings.Contains(err.Error(), "--exec-stdin-limit") {
		t.Errorf("exec cat with 4097 bytes of stdin: %v; want an error naming --exec-stdin-limit", err)
	}
}
