// Package stream carries a VM's serial console to where kubelet looks: the
// container log file in the CRI log format, and attached clients.
package stream

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// LogWriter writes console output to a container log file in the CRI log
// format: `<RFC3339Nano> stdout F <line>` for complete lines and `... P ...`
// for a partial line (a shell prompt, say) so readers never wait for a
// newline that may not come. It is safe for concurrent use.
type LogWriter struct {
	mu   sync.Mutex
	path string
	f    *os.File
	now  func() time.Time
	// pendingCR is set when the last write ended in '\r', so a '\n' at the
	// start of the next write completes a CRLF rather than an empty line.
	pendingCR bool
}

// OpenLog opens path for appending, creating it and its directory.
func OpenLog(path string, now func() time.Time) (*LogWriter, error) {
	if now == nil {
		now = time.Now
	}
	w := &LogWriter{path: path, now: now}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *LogWriter) open() error {
	if err := os.MkdirAll(filepath.Dir(w.path), 0o755); err != nil {
		return fmt.Errorf("creating log directory for %s: %w", w.path, err)
	}
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("opening container log %s: %w", w.path, err)
	}
	w.f = f
	return nil
}

// Write formats p as CRI log lines. Carriage returns of CRLF line ends are
// dropped; a trailing fragment without newline is written as a partial line.
func (w *LogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return 0, fmt.Errorf("writing container log %s: closed", w.path)
	}
	var buf bytes.Buffer
	ts := w.now().UTC().Format(time.RFC3339Nano)
	rest := p
	if w.pendingCR && len(rest) > 0 && rest[0] == '\n' {
		rest = rest[1:]
	}
	w.pendingCR = false
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			line := rest
			if line[len(line)-1] == '\r' {
				// A CRLF split across reads: finish the line now and
				// swallow the '\n' that follows.
				line = line[:len(line)-1]
				w.pendingCR = true
				fmt.Fprintf(&buf, "%s stdout F %s\n", ts, line)
			} else {
				fmt.Fprintf(&buf, "%s stdout P %s\n", ts, line)
			}
			break
		}
		line := bytes.TrimSuffix(rest[:i], []byte{'\r'})
		fmt.Fprintf(&buf, "%s stdout F %s\n", ts, line)
		rest = rest[i+1:]
	}
	if _, err := w.f.Write(buf.Bytes()); err != nil {
		return 0, fmt.Errorf("writing container log %s: %w", w.path, err)
	}
	return len(p), nil
}

// Reopen closes and reopens the file, for log rotation (ReopenContainerLog).
func (w *LogWriter) Reopen() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	return w.open()
}

// Close closes the file.
func (w *LogWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}
