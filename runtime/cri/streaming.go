package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/pod"
)

// Streaming hands out URLs of the streaming server for interactive
// sessions.
type Streaming interface {
	GetExec(*runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error)
	GetAttach(*runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error)
	GetPortForward(*runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error)
}

// ExecSyncer runs a command in a VM and collects its output.
type ExecSyncer interface {
	ExecSync(ctx context.Context, containerID string, cmd []string, timeoutSeconds int64) (stdout, stderr []byte, exitCode int32, err error)
}

// Attach returns the URL of an interactive serial console session.
func (s *Server) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if s.cfg.Streaming == nil {
		return nil, unimplemented("Attach: the streaming server is not enabled")
	}
	c, err := s.cfg.Lifecycle.ContainerStatus(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c.State != pod.ContainerRunning {
		return nil, errdefs.FailedPreconditionf("Attach: container %s is %s: only a running VM's console can be attached", c.ID, c.State)
	}
	req.ContainerId = c.ID
	resp, err := s.cfg.Streaming.GetAttach(req)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// Exec returns the URL of an exec session (through the guest agent).
func (s *Server) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if s.cfg.Streaming == nil || s.cfg.Exec == nil {
		return nil, unimplemented("Exec: running commands in a VM needs the QEMU guest agent path, which is not enabled")
	}
	c, err := s.cfg.Lifecycle.ContainerStatus(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	req.ContainerId = c.ID
	resp, err := s.cfg.Streaming.GetExec(req)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// ExecSync runs a command through the guest agent.
func (s *Server) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if s.cfg.Exec == nil {
		return nil, unimplemented("ExecSync: running commands in a VM needs the QEMU guest agent path (guest-exec), which is not enabled")
	}
	if len(req.GetCmd()) == 0 {
		return nil, errdefs.InvalidArgumentf("ExecSync: cmd is required")
	}
	out, errOut, code, err := s.cfg.Exec.ExecSync(ctx, req.GetContainerId(), req.GetCmd(), req.GetTimeout())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ExecSyncResponse{Stdout: out, Stderr: errOut, ExitCode: code}, nil
}

// PortForward returns the URL of a port-forward session to the guest.
func (s *Server) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if s.cfg.Streaming == nil {
		return nil, unimplemented("PortForward: the streaming server is not enabled")
	}
	sb, err := s.cfg.Lifecycle.PodSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	req.PodSandboxId = sb.ID
	resp, err := s.cfg.Streaming.GetPortForward(req)
	if err != nil {
		return nil, err
	}
	return resp, nil
}
