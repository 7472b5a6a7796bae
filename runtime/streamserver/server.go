// Package streamserver is the Kubernetes streaming server (attach, exec,
// port-forward over SPDY and WebSocket) that kubelet redirects clients to. It
// is wired by the daemon only: runtime/pod, which hands it consoles and
// exec, must not link it (docs/design.md, Walls).
package streamserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	streaming "k8s.io/cri-streaming/pkg/streaming"
	remotecommand "k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// DetachKey ends an attach session without touching the VM: Ctrl-], as in
// `virsh console`.
const DetachKey = 0x1d

// Consoles gives access to running VMs' serial consoles.
type Consoles interface {
	// AttachConsole returns the console output from now on and a writer
	// typing into it; closing the reader detaches.
	AttachConsole(ctx context.Context, containerID string) (io.ReadCloser, io.Writer, error)
}

// PodAddresses tells where a pod's guest can be reached for port
// forwarding.
type PodAddresses interface {
	// PodIP returns the pod's (guest's) primary IP.
	PodIP(ctx context.Context, sandboxID string) (string, error)
	// OpenDisplay connects to the display (RFB) of the pod's running VM.
	OpenDisplay(ctx context.Context, sandboxID string) (io.ReadWriteCloser, error)
}

// Execer runs a command in a VM (through its guest agent).
type Execer interface {
	Exec(ctx context.Context, containerID string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (exitCode int32, err error)
}

// Server is the CRI streaming server: Attach is the serial console,
// PortForward dials the guest, Exec goes through the guest agent when one
// is configured.
type Server struct {
	streaming.Server
	lis net.Listener
}

// NewServer listens on addr (host:port; port 0 picks one) and serves
// attach, exec and port-forward sessions. execer may be nil.
func NewServer(addr string, consoles Consoles, pods PodAddresses, execer Execer) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("streaming server: listening on %s: %w", addr, err)
	}
	cfg := streaming.DefaultConfig
	cfg.Addr = lis.Addr().String()
	srv, err := streaming.NewServer(cfg, &runtime{consoles: consoles, pods: pods, execer: execer})
	if err != nil {
		lis.Close()
		return nil, fmt.Errorf("streaming server: %w", err)
	}
	return &Server{Server: srv, lis: lis}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Serve answers streaming requests until Close.
func (s *Server) Serve() error {
	hs := &http.Server{Handler: s.Server, ReadHeaderTimeout: 30 * time.Second}
	err := hs.Serve(s.lis)
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops listening.
func (s *Server) Close() error { return s.lis.Close() }

type runtime struct {
	consoles Consoles
	pods     PodAddresses
	execer   Execer
}

// Attach connects the client to the VM's serial console until the client
// closes its input, types the detach key, or the VM stops.
func (r *runtime) Attach(ctx context.Context, containerID string, in io.Reader, out, _ io.WriteCloser, _ bool, _ <-chan remotecommand.TerminalSize) error {
	output, input, err := r.consoles.AttachConsole(ctx, containerID)
	if err != nil {
		return err
	}
	defer output.Close()
	done := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(done) }) }
	if out != nil {
		go func() {
			defer stop()
			io.Copy(out, output)
		}()
	}
	if in != nil {
		go func() {
			defer stop()
			buf := make([]byte, 4096)
			for {
				n, err := in.Read(buf)
				if n > 0 {
					chunk := buf[:n]
					if i := bytes.IndexByte(chunk, DetachKey); i >= 0 {
						input.Write(chunk[:i])
						return
					}
					if _, werr := input.Write(chunk); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// Exec runs a command through the guest agent.
func (r *runtime) Exec(ctx context.Context, containerID string, cmd []string, in io.Reader, out, errw io.WriteCloser, _ bool, _ <-chan remotecommand.TerminalSize) error {
	if r.execer == nil {
		return errors.New("exec: podvisor has no guest-agent exec path configured")
	}
	var stdout, stderr io.Writer = io.Discard, io.Discard
	if out != nil {
		stdout = out
	}
	if errw != nil {
		stderr = errw
	}
	code, err := r.execer.Exec(ctx, containerID, cmd, in, stdout, stderr)
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitError{code: int(code)}
	}
	return nil
}

// PortForward connects the stream to a port of the guest at the pod IP,
// or, for hypervisor.DisplayPort, to the VM's display, whose socket no
// network reaches.
func (r *runtime) PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	conn, err := r.dial(ctx, podSandboxID, port)
	if err != nil {
		return err
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(conn, stream); done <- struct{}{} }()
	go func() { io.Copy(stream, conn); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

func (r *runtime) dial(ctx context.Context, podSandboxID string, port int32) (io.ReadWriteCloser, error) {
	if port == hypervisor.DisplayPort {
		conn, err := r.pods.OpenDisplay(ctx, podSandboxID)
		if err != nil {
			return nil, fmt.Errorf("port-forward to pod %s port %d (the VM's display): %w", podSandboxID, port, err)
		}
		return conn, nil
	}
	ip, err := r.pods.PodIP(ctx, podSandboxID)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(int(port))))
	if err != nil {
		return nil, fmt.Errorf("port-forward to pod %s port %d: %w", podSandboxID, port, err)
	}
	return conn, nil
}

// exitError carries a command's exit code to the streaming library, which
// reports it to kubectl.
type exitError struct{ code int }

func (e *exitError) Error() string   { return fmt.Sprintf("command exited with code %d", e.code) }
func (e *exitError) String() string  { return e.Error() }
func (e *exitError) Exited() bool    { return true }
func (e *exitError) ExitStatus() int { return e.code }
