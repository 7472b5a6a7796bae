package unixsock

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestListen(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir, err := os.MkdirTemp("/tmp", "us")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "s.sock")
	l, err := Listen(path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket under umask 000: %v, %v; want a socket with 0660", fi.Mode(), err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if c, err := net.Dial("unix", path); err != nil {
		t.Errorf("dialing the linked socket: %v", err)
	} else {
		c.Close()
	}
	if _, err := Listen(path, 0o660); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a second Listen: %v; want in use", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("socket dir holds %d entries, want the socket and its lock file", len(entries))
	}
	l.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("after Close the socket is still there (%v)", err)
	}
	// The lock is released with the listener.
	l2, err := Listen(path, 0o600)
	if err != nil {
		t.Fatalf("Listen after Close: %v", err)
	}
	l2.Close()
}
