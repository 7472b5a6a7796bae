package cri

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
	"github.com/podvisor/podvisor/runtime/image"
)

// The interceptor maps every kind (and the sentinels that carry one) to its
// code, logs the failure once at the level the code calls for, with the
// request's objects, and leaves successes alone.
func TestInterceptorMapsAndLogsOnce(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		err   error
		code  codes.Code
		level string
	}{
		{"none", nil, codes.OK, ""},
		{"not found", errdefs.NotFoundf("container %q not found", "c1"), codes.NotFound, "DEBUG"},
		{"hypervisor sentinel", fmt.Errorf("starting: %w", hypervisor.ErrNotFound), codes.NotFound, "DEBUG"},
		{"invalid", errdefs.InvalidArgumentf("annotation VirtletVCPUCount: bad"), codes.InvalidArgument, "WARN"},
		{"in use", fmt.Errorf("removing: %w", image.ErrInUse), codes.FailedPrecondition, "WARN"},
		{"invalid state", hypervisor.ErrInvalidState, codes.FailedPrecondition, "WARN"},
		{"exists", errdefs.AlreadyExistsf("exists"), codes.AlreadyExists, "WARN"},
		{"unimplemented", hypervisor.ErrUnimplemented, codes.Unimplemented, "DEBUG"},
		{"unavailable", errdefs.Unavailablef("libvirtd is down"), codes.Unavailable, "ERROR"},
		{"deadline", fmt.Errorf("waiting: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "ERROR"},
		{"unknown", errors.New("disk full"), codes.Unknown, "ERROR"},
		{"status passes", status.Error(codes.ResourceExhausted, "too big"), codes.ResourceExhausted, "ERROR"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			s := &Server{log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			req := &runtimeapi.StartContainerRequest{ContainerId: "c1"}
			_, err := s.UnaryInterceptor()(context.Background(), req,
				&grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/StartContainer"},
				func(context.Context, any) (any, error) { return nil, tc.err })
			if got := status.Code(err); got != tc.code {
				t.Errorf("code %v, want %v (err %v)", got, tc.code, err)
			}
			if tc.err != nil && !strings.Contains(status.Convert(err).Message(), status.Convert(toStatus(tc.err)).Message()) {
				t.Errorf("message %q lost the error's text", status.Convert(err).Message())
			}
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if tc.level == "" {
				if logs.Len() != 0 {
					t.Errorf("a success was logged: %s", logs.String())
				}
				return
			}
			if len(lines) != 1 || !strings.Contains(lines[0], "level="+tc.level) ||
				!strings.Contains(lines[0], "method=RuntimeService/StartContainer") || !strings.Contains(lines[0], "container=c1") {
				t.Errorf("want one %s line naming the method and container, got:\n%s", tc.level, logs.String())
			}
		})
	}
}
