// Package daemonproc runs a CRI daemon (bin/podvisor, bin/criproxy) as a
// process of its own for integration tests: started on a unix socket,
// reached with the CRI client, killed with SIGKILL and restarted on the same
// state, its log shown when a test fails. Tests use it instead of bash
// suites so that each case has a name, its own daemon and its own teardown.
package daemonproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StartTimeout bounds a start until the daemon answers Version.
const StartTimeout = 30 * time.Second

// Daemon is one daemon process and a CRI client to its socket.
type Daemon struct {
	t    testing.TB
	bin  string
	args []string
	// Sock is the daemon's CRI socket; LogPath collects its stderr and
	// stdout across restarts.
	Sock, LogPath string

	cmd     *exec.Cmd
	exited  chan error
	conn    *grpc.ClientConn
	Runtime runtimeapi.RuntimeServiceClient
	Images  runtimeapi.ImageServiceClient
}

// Start runs bin with args (which must make it listen on unix://sock) and
// waits until it answers the CRI Version call. The process and its children
// (its own process group) are killed at the end of the test, and the kernel
// kills the daemon when the test process dies without cleaning up (go
// test's timeout panic); when the test failed, the log's last lines are
// printed.
func Start(t testing.TB, bin, sock, logPath string, args ...string) *Daemon {
	t.Helper()
	d := &Daemon{t: t, bin: bin, args: args, Sock: sock, LogPath: logPath}
	t.Cleanup(func() {
		d.killGroup()
		if d.conn != nil {
			d.conn.Close()
		}
		if t.Failed() {
			t.Logf("--- %s log (last 40 lines of %s)\n%s", filepath.Base(bin), logPath, Tail(logPath, 40))
		}
	})
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *Daemon) start() error {
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening the daemon's log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(d.bin, d.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", d.bin, err)
	}
	d.cmd, d.exited = cmd, make(chan error, 1)
	go func() { d.exited <- cmd.Wait() }()
	if d.conn == nil {
		conn, err := grpc.NewClient("unix://"+d.Sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("CRI client for %s: %w", d.Sock, err)
		}
		d.conn = conn
		d.Runtime = runtimeapi.NewRuntimeServiceClient(conn)
		d.Images = runtimeapi.NewImageServiceClient(conn)
	}
	return d.waitReady()
}

// waitReady polls Version until it answers, the process exits or
// StartTimeout passes.
func (d *Daemon) waitReady() error {
	deadline := time.Now().Add(StartTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := d.Runtime.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case werr := <-d.exited:
			d.exited <- werr
			return fmt.Errorf("%s exited at start-up (%v): %s", filepath.Base(d.bin), werr, Tail(d.LogPath, 20))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer on %s within %s: %w", filepath.Base(d.bin), d.Sock, StartTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Kill9Restart kills the daemon with SIGKILL, waits for it to be gone and
// starts it again with the same arguments and state.
func (d *Daemon) Kill9Restart() {
	d.t.Helper()
	d.t.Logf("kill -9 %s (pid %d) and restart", filepath.Base(d.bin), d.cmd.Process.Pid)
	d.kill(syscall.SIGKILL)
	if err := d.start(); err != nil {
		d.t.Fatal(err)
	}
}

// Kill9 kills the daemon with SIGKILL and waits for it to be gone; Restart
// starts it again.
func (d *Daemon) Kill9() {
	d.t.Helper()
	d.t.Logf("kill -9 %s (pid %d)", filepath.Base(d.bin), d.cmd.Process.Pid)
	d.kill(syscall.SIGKILL)
}

// Restart starts the daemon again after Kill9, with the same arguments and
// state, and waits until it answers.
func (d *Daemon) Restart() {
	d.t.Helper()
	if err := d.start(); err != nil {
		d.t.Fatal(err)
	}
}

// PID is the running process's.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// kill sends sig and waits for the process to exit.
func (d *Daemon) kill(sig syscall.Signal) {
	d.signalAndWait(func(pid int) { _ = syscall.Kill(pid, sig) })
}

// killGroup kills the running daemon's process group (the daemon and what
// it started: CNI plugins, qemu-img) and waits for the daemon to exit.
func (d *Daemon) killGroup() {
	d.signalAndWait(func(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) })
}

// signalAndWait sends a signal through send unless the daemon already
// exited, and waits for its exit (kept for the next waiter).
func (d *Daemon) signalAndWait(send func(pid int)) {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case err := <-d.exited:
		d.exited <- err
		return
	default:
	}
	send(d.cmd.Process.Pid)
	err := <-d.exited
	d.exited <- err
}

// Ctx is a context for one CRI call of a test: bounded, so a hung daemon
// fails the test instead of hanging it.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Tail returns the last n lines of the file at path, or why it cannot.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Bin returns the path of a binary that make build put in the module's bin/
// directory, or fails.
func Bin(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(Root(t), "bin", name)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s missing: run make build", p)
	}
	return p
}

// Root returns the module's root directory, found from the test's working
// directory upwards.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	return dir
}
