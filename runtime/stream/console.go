package stream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Opener opens a VM's serial console.
type Opener func(ctx context.Context) (io.ReadWriteCloser, error)

// ConsoleHub owns the one connection to a VM's serial console: it copies
// everything the guest prints into the container log and to every attached
// client, and types what attached clients send. A VM console accepts one
// reader, so kubelet's log and `kubectl attach` must share it.
type ConsoleHub struct {
	open   Opener
	log    io.Writer
	logger *slog.Logger
	retry  time.Duration

	mu   sync.Mutex
	conn io.ReadWriteCloser
	subs map[*subscriber]struct{}

	connected     chan struct{}
	connectedOnce sync.Once
}

type subscriber struct {
	w  *io.PipeWriter
	ch chan []byte
}

// NewConsoleHub makes a hub; log receives the console output (nil: none).
func NewConsoleHub(open Opener, log io.Writer, logger *slog.Logger) *ConsoleHub {
	if logger == nil {
		logger = slog.Default()
	}
	return &ConsoleHub{open: open, log: log, logger: logger, retry: time.Second,
		subs: map[*subscriber]struct{}{}, connected: make(chan struct{})}
}

// Connected is closed once Run has first connected to the console, from
// when on nothing the guest prints is lost.
func (h *ConsoleHub) Connected() <-chan struct{} { return h.connected }

// Run pumps the console until ctx is done, reopening it when the
// connection drops (a libvirtd restart, a console reset). The caller
// cancels ctx when the VM has stopped for good.
func (h *ConsoleHub) Run(ctx context.Context) {
	defer h.closeSubs()
	for ctx.Err() == nil {
		conn, err := h.open(ctx)
		if err != nil {
			h.logger.Debug("console not available yet", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(h.retry):
			}
			continue
		}
		h.mu.Lock()
		h.conn = conn
		h.mu.Unlock()
		// Once per boot: a VM whose log stays empty shows here whether
		// podvisor ever held its console.
		h.logger.Info("console connected")
		h.connectedOnce.Do(func() { close(h.connected) })
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		n := h.pump(conn)
		h.logger.Info("console disconnected", "bytes", n)
		stop()
		h.mu.Lock()
		h.conn = nil
		h.mu.Unlock()
		conn.Close()
		select {
		case <-ctx.Done():
			return
		case <-time.After(h.retry):
		}
	}
}

// pump copies until the connection ends and says how many bytes it copied.
func (h *ConsoleHub) pump(r io.Reader) int64 {
	// Every running VM has its pump blocked in Read with this buffer: 1 KiB
	// keeps 500 VMs at half a MiB, and a serial console at 115200 baud
	// brings 11 KiB a second at most.
	buf := make([]byte, 1024)
	var total int64
	for {
		n, err := r.Read(buf)
		total += int64(n)
		if n > 0 {
			if h.log != nil {
				if _, werr := h.log.Write(buf[:n]); werr != nil {
					h.logger.Warn("writing console to container log", "err", werr)
				}
			}
			h.broadcast(buf[:n])
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				h.logger.Debug("console read ended", "err", err)
			}
			return total
		}
	}
}

// broadcast hands each attached client its own copy of data (the pump
// reuses its buffer).
func (h *ConsoleHub) broadcast(data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) == 0 {
		return
	}
	data = append([]byte(nil), data...)
	for s := range h.subs {
		select {
		case s.ch <- data:
		default:
			// A client that does not read loses output rather than
			// stalling the log of the VM.
		}
	}
}

// Attach returns the console's output from now on and a writer typing into
// it. Closing the returned reader detaches.
func (h *ConsoleHub) Attach() (io.ReadCloser, io.Writer) {
	pr, pw := io.Pipe()
	s := &subscriber{w: pw, ch: make(chan []byte, 256)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	go func() {
		for data := range s.ch {
			if _, err := pw.Write(data); err != nil {
				break
			}
		}
		h.mu.Lock()
		if _, ok := h.subs[s]; ok {
			delete(h.subs, s)
			close(s.ch)
		}
		h.mu.Unlock()
		pw.Close()
		for range s.ch {
		}
	}()
	return &detacher{PipeReader: pr, hub: h, s: s}, consoleInput{h}
}

type detacher struct {
	*io.PipeReader
	hub  *ConsoleHub
	s    *subscriber
	once sync.Once
}

func (d *detacher) Close() error {
	d.once.Do(func() {
		d.hub.mu.Lock()
		if _, ok := d.hub.subs[d.s]; ok {
			delete(d.hub.subs, d.s)
			close(d.s.ch)
		}
		d.hub.mu.Unlock()
	})
	return d.PipeReader.Close()
}

type consoleInput struct{ h *ConsoleHub }

func (c consoleInput) Write(p []byte) (int, error) {
	c.h.mu.Lock()
	conn := c.h.conn
	c.h.mu.Unlock()
	if conn == nil {
		return 0, errors.New("console is not connected (the VM is not running)")
	}
	return conn.Write(p)
}

func (h *ConsoleHub) closeSubs() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		delete(h.subs, s)
		close(s.ch)
	}
}
