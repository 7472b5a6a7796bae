package stream

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeConsole is a console whose guest output is fed by the test and whose
// input is recorded.
type fakeConsole struct {
	r     *io.PipeReader
	w     *io.PipeWriter
	mu    sync.Mutex
	typed bytes.Buffer
}

func newFakeConsole() *fakeConsole {
	r, w := io.Pipe()
	return &fakeConsole{r: r, w: w}
}
func (f *fakeConsole) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *fakeConsole) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.typed.Write(p)
}
func (f *fakeConsole) Close() error { return f.r.Close() }

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConsoleHubLogsAttachesAndReconnects(t *testing.T) {
	consoles := make(chan *fakeConsole, 2)
	first, second := newFakeConsole(), newFakeConsole()
	consoles <- first
	consoles <- second
	var log syncBuf
	hub := NewConsoleHub(func(ctx context.Context) (io.ReadWriteCloser, error) {
		select {
		case c := <-consoles:
			return c, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}, &log, nil)
	hub.retry = time.Millisecond
	select {
	case <-hub.Connected():
		t.Fatal("Connected before Run")
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hub.Run(ctx); close(done) }()
	select {
	case <-hub.Connected():
	case <-time.After(10 * time.Second):
		t.Fatal("Connected not closed after the console opened")
	}

	first.w.Write([]byte("boot line\n"))
	waitFor(t, "boot line in log", func() bool { return strings.Contains(log.String(), "boot line") })

	out, in := hub.Attach()
	lines := bufio.NewReader(out)
	first.w.Write([]byte("after attach\n"))
	got, err := lines.ReadString('\n')
	if err != nil || got != "after attach\n" {
		t.Fatalf("attached client read %q, %v", got, err)
	}
	if _, err := in.Write([]byte("hostname\n")); err != nil {
		t.Fatal(err)
	}
	first.mu.Lock()
	typed := first.typed.String()
	first.mu.Unlock()
	if typed != "hostname\n" {
		t.Errorf("console received %q, want the attached client's input", typed)
	}

	// The connection drops (libvirtd restart): the hub reconnects and the
	// attached client keeps receiving.
	first.w.Close()
	second.w.Write([]byte("still here\n"))
	got, err = lines.ReadString('\n')
	if err != nil || got != "still here\n" {
		t.Fatalf("after reconnect the client read %q, %v", got, err)
	}
	waitFor(t, "post-reconnect line in log", func() bool { return strings.Contains(log.String(), "still here") })

	out.Close()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
