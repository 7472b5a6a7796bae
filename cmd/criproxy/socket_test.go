package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// shortDir is a temp dir whose socket paths fit sun_path (108 bytes).
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/tmp", "cp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// start runs criproxy on sock until the test ends; it returns the channel
// run's result arrives on.
func start(t *testing.T, sock string, extra ...string) (<-chan error, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	done := make(chan struct{})
	args := append([]string{"--listen", "unix://" + sock, "--primary", "unix://" + filepath.Join(filepath.Dir(sock), "containerd.sock")}, extra...)
	go func() {
		defer close(done)
		errc <- run(ctx, args)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("criproxy did not stop")
		}
	})
	return errc, cancel
}

// answers says whether something accepts connections on sock.
func answers(sock string) bool {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

func waitServing(t *testing.T, sock string, errc <-chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !answers(sock) {
		select {
		case err := <-errc:
			t.Fatalf("criproxy ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("criproxy never served on %s", sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSocketModeWhateverTheUmask (issue 18, finding 6): the socket is 0660
// even under umask 000, and no moment of the start-up has it wider.
func TestSocketModeWhateverTheUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	sock := filepath.Join(shortDir(t), "criproxy.sock")
	errc, _ := start(t, sock)
	waitServing(t, sock, errc)
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket %s mode %v under umask 000, want a socket with 0660", sock, fi.Mode())
	}
}

// TestLiveSocketIsNeverReplaced: a second criproxy on the socket of one
// that answers fails at once with an error saying so, and the first keeps
// its socket.
func TestLiveSocketIsNeverReplaced(t *testing.T) {
	sock := filepath.Join(shortDir(t), "criproxy.sock")
	first, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	accepted := make(chan struct{}, 10)
	go func() {
		for {
			c, err := first.Accept()
			if err != nil {
				return
			}
			c.Close()
			accepted <- struct{}{}
		}
	}()
	errc, _ := start(t, sock)
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "in use") {
			t.Errorf("second criproxy: %v; want an error saying the socket is in use", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a second criproxy started on a live socket")
	}
	for len(accepted) > 0 {
		<-accepted
	}
	if !answers(sock) {
		t.Fatal("the live server's socket is gone")
	}
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Error("the socket no longer reaches the server that was there first")
	}
}

// TestStaleSocketIsReplaced: a socket file nobody answers on (its criproxy
// was killed) is replaced; a file that is no socket is not.
func TestStaleSocketIsReplaced(t *testing.T) {
	dir := shortDir(t)
	sock := filepath.Join(dir, "criproxy.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	errc, _ := start(t, sock)
	waitServing(t, sock, errc)

	file := filepath.Join(dir, "important")
	if err := os.WriteFile(file, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	errc2, _ := start(t, file)
	select {
	case err := <-errc2:
		if err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("criproxy over a regular file: %v; want a refusal", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("criproxy replaced a regular file with its socket")
	}
	if data, _ := os.ReadFile(file); string(data) != "data" {
		t.Error("the file was replaced")
	}
}

// TestSecondCriproxyFails: two criproxies on one socket: the second fails
// with an error saying it is in use, the first keeps serving.
func TestSecondCriproxyFails(t *testing.T) {
	sock := filepath.Join(shortDir(t), "criproxy.sock")
	first, _ := start(t, sock)
	waitServing(t, sock, first)
	second, _ := start(t, sock)
	select {
	case err := <-second:
		if err == nil || !strings.Contains(err.Error(), "in use") {
			t.Errorf("second criproxy: %v; want an error saying the socket is in use", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a second criproxy started on the first one's socket")
	}
	waitServing(t, sock, first)
}
