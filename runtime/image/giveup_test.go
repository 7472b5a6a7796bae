package image

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/podvisor/podvisor/fakes/imageserver"
)

// endless retries every 20 ms forever, so that only the give-up bound or
// the caller ends a download; before the first retry it runs onRetry.
func endless(onRetry func()) Option {
	return WithBackOff(func() backoff.BackOff {
		return &hookBackOff{BackOff: backoff.NewConstantBackOff(20 * time.Millisecond), once: onRetry}
	})
}

type hookBackOff struct {
	backoff.BackOff
	mu   sync.Mutex
	once func()
}

func (h *hookBackOff) NextBackOff() time.Duration {
	h.mu.Lock()
	f := h.once
	h.once = nil
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return h.BackOff.NextBackOff()
}

// TestGiveUpWithoutProgress: a download that gets nothing new for the
// give-up bound fails then, whatever the back-off allows, with an error
// naming the image, the URL and what went wrong; nothing becomes visible,
// and a partial is kept for resuming only when bytes with a validator
// arrived (as for retries used up).
func TestGiveUpWithoutProgress(t *testing.T) {
	const bound = 300 * time.Millisecond
	tests := []struct {
		name string
		// setup serves the image or not and returns its URL and what to do
		// before the first retry.
		setup       func(t *testing.T, srv *imageserver.Server) (url string, onRetry func())
		opts        []Option
		wantErr     []string
		wantPartial bool
	}{
		{
			name: "connection refused",
			setup: func(t *testing.T, srv *imageserver.Server) (string, func()) {
				ln := listenLocal(t)
				addr := ln.Addr().String()
				ln.Close()
				return "http://" + addr + "/img", nil
			},
			wantErr: []string{"connection refused"},
		},
		{
			name: "503 forever",
			setup: func(t *testing.T, srv *imageserver.Server) (string, func()) {
				srv.SetMode("img", imageserver.Mode{Status: http.StatusServiceUnavailable})
				return srv.URL() + "/img", nil
			},
			wantErr: []string{"HTTP 503 Service Unavailable"},
		},
		{
			// The transport's own timeouts are far longer: the bound cuts
			// the first attempt.
			name: "no answer",
			setup: func(t *testing.T, srv *imageserver.Server) (string, func()) {
				gate := make(chan struct{})
				t.Cleanup(func() { close(gate) })
				srv.SetMode("img", imageserver.Mode{Gate: gate})
				return srv.URL() + "/img", nil
			},
			opts:    []Option{WithTimeouts(time.Hour, time.Hour)},
			wantErr: []string{"1 attempts, 0 bytes received"},
		},
		{
			name: "bytes then errors only",
			setup: func(t *testing.T, srv *imageserver.Server) (string, func()) {
				srv.SetMode("img", imageserver.Mode{CutAfter: 300_000, CutTimes: 1})
				return srv.URL() + "/img", func() {
					srv.SetMode("img", imageserver.Mode{Status: http.StatusServiceUnavailable})
				}
			},
			wantErr:     []string{"300000 bytes received", "HTTP 503 Service Unavailable"},
			wantPartial: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t)
			data := fakeQcow2(imgSize, 1<<30, 40)
			srv.AddImage("img", data)
			u, onRetry := tc.setup(t, srv)
			tr := staticTranslator{"img": {URL: u}}
			s := newStore(t, tr, append([]Option{endless(onRetry), WithGiveUpAfter(bound)}, tc.opts...)...)

			start := time.Now()
			_, err := s.Pull(context.Background(), "virtlet.cloud/img")
			elapsed := time.Since(start)
			wantErrContains(t, err, append([]string{`pulling image "virtlet.cloud/img"`, u,
				"giving up after 300ms without progress"}, tc.wantErr...)...)
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %q wraps a context error: the CRI would report the caller's cancellation", err)
			}
			// Loose: the bound cannot fire early; late only on a very busy machine.
			if elapsed < bound || elapsed > 30*bound {
				t.Errorf("Pull returned after %v, want about the bound %v", elapsed, bound)
			}
			assertNoImage(t, s, "img", "data", "links")
			if n := len(partials(t, s)); (n == 1) != tc.wantPartial || n > 1 {
				t.Errorf("%d partial downloads kept, want kept: %v", n, tc.wantPartial)
			}
			if !tc.wantPartial {
				assertNothingVisible(t, s, "img")
			}
			if u != srv.URL()+"/img" {
				return
			}
			srv.SetMode("img", imageserver.Normal)
			ref, err := s.Pull(context.Background(), "img")
			if err != nil || ref != "sha256:"+digestOf(data) {
				t.Fatalf("pull after recovery = %s, %v", ref, err)
			}
		})
	}
}

// TestProgressPostponesGivingUp: a link cut every 32 KiB, with 50 ms
// between attempts, needs about 1.6 s for the image, far more than the
// 500 ms bound; each attempt brings new bytes, so it completes.
func TestProgressPostponesGivingUp(t *testing.T) {
	srv := startServer(t)
	data := fakeQcow2(imgSize, 1<<30, 41)
	srv.AddImage("img", data)
	srv.SetMode("img", imageserver.Cut(32<<10))
	s := newStore(t, staticTranslator{"img": {URL: srv.URL() + "/img"}},
		WithBackOff(func() backoff.BackOff { return backoff.NewConstantBackOff(50 * time.Millisecond) }),
		WithGiveUpAfter(500*time.Millisecond))
	ref, err := s.Pull(context.Background(), "img")
	if err != nil || ref != "sha256:"+digestOf(data) {
		t.Fatalf("Pull over a link that keeps delivering = %s, %v", ref, err)
	}
	if n := srv.Stats("img").Requests; n != imgSize/(32<<10) {
		t.Errorf("%d requests, want %d", n, imgSize/(32<<10))
	}
}

// TestCancelStopsRetries: a caller that gives up while the download waits
// between retries gets its error at once, and the download stops: no
// request follows while a sibling download on the same store, retrying at
// the same 20 ms, makes five (a clock that slows one slows both).
func TestCancelStopsRetries(t *testing.T) {
	srv := startServer(t)
	for _, name := range []string{"img", "probe"} {
		srv.AddImage(name, fakeQcow2(imgSize, 1<<30, 42))
		srv.SetMode(name, imageserver.Mode{Status: http.StatusServiceUnavailable})
	}
	u := srv.URL() + "/img"
	s := newStore(t, staticTranslator{"img": {URL: u}, "probe": {URL: srv.URL() + "/probe"}},
		endless(nil), WithGiveUpAfter(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := s.Pull(ctx, "img"); errc <- err }()
	waitFor(t, "retries", func() bool { return srv.Stats("img").Requests >= 3 })
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Pull = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Pull did not return after its context was cancelled")
	}
	waitFor(t, "the download to stop", func() bool { return s.waiters(u) == -1 })
	n := srv.Stats("img").Requests

	probeCtx, stopProbe := context.WithCancel(context.Background())
	probed := make(chan error, 1)
	go func() { _, err := s.Pull(probeCtx, "probe"); probed <- err }()
	waitFor(t, "five requests of the sibling download", func() bool { return srv.Stats("probe").Requests >= 5 })
	stopProbe()
	if err := <-probed; !errors.Is(err, context.Canceled) {
		t.Fatalf("sibling Pull = %v, want context.Canceled", err)
	}
	waitFor(t, "the sibling download to stop", func() bool { return s.waiters(srv.URL()+"/probe") == -1 })
	if m := srv.Stats("img").Requests; m != n {
		t.Errorf("%d more requests after the download stopped", m-n)
	}
	assertNothingVisible(t, s, "img")
}
