// Package unixsock listens on a unix socket the way podvisor and criproxy
// must: with a fixed mode whatever the umask, replacing a stale socket file
// (its server was killed) but never a live socket or anything else.
package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Listen listens on path with mode (e.g. 0660). The socket is made in a
// private directory next to path, given its mode there and linked into
// place, so it never appears with the umask's mode, and link(2) never
// replaces what another process put at path meanwhile. A lock file
// (path + ".lock", held while the listener is open) keeps two servers
// starting at once from removing each other's socket as stale. Closing the
// listener removes the socket, if it is still this one.
func Listen(path string, mode os.FileMode) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating socket directory: %w", err)
	}
	lock, err := lockFor(path)
	if err != nil {
		return nil, err
	}
	l, err := listenLocked(path, mode)
	if err != nil {
		lock.Close()
		return nil, err
	}
	l.lock = lock
	return l, nil
}

// lockFor takes the lock file of path, failing at once if it is held.
func lockFor(path string) (*os.File, error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("listen: lock file of %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("listen: %s is in use: another server holds %s.lock", path, path)
		}
		return nil, fmt.Errorf("listen: locking %s.lock: %w", path, err)
	}
	return f, nil
}

func listenLocked(path string, mode os.FileMode) (*listener, error) {
	if err := removeStale(path); err != nil {
		return nil, err
	}
	tmpDir, err := os.MkdirTemp(filepath.Dir(path), ".s")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, mode); err != nil {
		ul.Close()
		return nil, fmt.Errorf("setting mode of %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		ul.Close()
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("listen: %s appeared while starting; refusing to replace it", path)
		}
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		ul.Close()
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	return &listener{UnixListener: ul, path: path, fi: fi}, nil
}

// removeStale removes a socket file at path that nobody answers on; a live
// socket or a file that is no socket is an error.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("listen: %s exists and is not a socket; refusing to replace it", path)
	}
	if c, err := net.DialTimeout("unix", path, 2*time.Second); err == nil {
		c.Close()
		return fmt.Errorf("listen: %s is in use by a running server (something answers on it); refusing to replace it", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing stale socket %s: %w", path, err)
	}
	return nil
}

// listener removes its socket and releases the lock when closed.
type listener struct {
	*net.UnixListener
	path string
	fi   fs.FileInfo
	lock *os.File
	once sync.Once
}

func (l *listener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.fi) {
			os.Remove(l.path)
		}
		if l.lock != nil {
			l.lock.Close()
		}
	})
	return err
}
