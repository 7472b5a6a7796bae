package cri

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podvisor/podvisor/runtime/errdefs"
)

// UnaryInterceptor is the one error path of the CRI services: a handler
// returns an error of the lower layers (an errdefs kind, or a package
// sentinel carrying one), and this maps it to its gRPC code and logs the
// failure once, with the objects the request names. Register it innermost,
// so that metrics and other interceptors see the code.
func (s *Server) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		if err == nil {
			return resp, nil
		}
		st := toStatus(err)
		code := status.Code(st)
		attrs := append([]any{"method", strings.TrimPrefix(info.FullMethod, "/runtime.v1."),
			"code", code.String(), "took", time.Since(start).Round(time.Millisecond)}, requestAttrs(req)...)
		s.log.Log(ctx, levelOf(code), "CRI call failed", append(attrs, "err", err.Error())...)
		return nil, st
	}
}

// StreamInterceptor is UnaryInterceptor for the server-streaming verbs.
func (s *Server) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		if err == nil {
			return nil
		}
		st := toStatus(err)
		code := status.Code(st)
		s.log.Log(ss.Context(), levelOf(code), "CRI call failed", "method", strings.TrimPrefix(info.FullMethod, "/runtime.v1."),
			"code", code.String(), "took", time.Since(start).Round(time.Millisecond), "err", err.Error())
		return st
	}
}

// levelOf: what the node's operator must see at the default level. kubelet
// asks about removed objects all the time (NotFound is routine) and probes
// for verbs podvisor does not build; a refused request is the pod author's
// to fix; the rest is podvisor's or its dependencies' failure.
func levelOf(code codes.Code) slog.Level {
	switch code {
	case codes.NotFound, codes.Unimplemented, codes.Canceled:
		return slog.LevelDebug
	case codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists, codes.OutOfRange:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// requestAttrs names what a request is about, from the fields CRI
// requests share.
func requestAttrs(req any) []any {
	var attrs []any
	if r, ok := req.(interface{ GetPodSandboxId() string }); ok && r.GetPodSandboxId() != "" {
		attrs = append(attrs, "pod", r.GetPodSandboxId())
	}
	if r, ok := req.(interface{ GetContainerId() string }); ok && r.GetContainerId() != "" {
		attrs = append(attrs, "container", r.GetContainerId())
	}
	type imageSpec interface{ GetImage() string }
	if r, ok := req.(interface{ GetImage() imageSpec }); ok && r.GetImage() != nil {
		attrs = append(attrs, "image", r.GetImage().GetImage())
	}
	return attrs
}

// toStatus maps an error of the lower layers to a gRPC status error.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, errdefs.ErrInvalidArgument):
		code = codes.InvalidArgument
	case errors.Is(err, errdefs.ErrFailedPrecondition):
		code = codes.FailedPrecondition
	case errors.Is(err, errdefs.ErrAlreadyExists):
		code = codes.AlreadyExists
	case errors.Is(err, errdefs.ErrUnimplemented):
		code = codes.Unimplemented
	case errors.Is(err, errdefs.ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

func unimplemented(what string) error {
	return status.Error(codes.Unimplemented, what)
}
