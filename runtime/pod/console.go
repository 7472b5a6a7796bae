package pod

import (
	"context"
	"io"

	"github.com/podvisor/podvisor/runtime/stream"
)

type console struct {
	hub    *stream.ConsoleHub
	log    *stream.LogWriter
	cancel context.CancelFunc
	done   chan struct{}
}

// startConsole starts copying the container's console to its log, once;
// the channel is closed when the console is first connected.
func (m *Manager) startConsole(c *Container) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cons, ok := m.consoles[c.ID]; ok {
		return cons.hub.Connected()
	}
	var lw *stream.LogWriter
	var logTo io.Writer
	if c.LogPath != "" {
		w, err := stream.OpenLog(c.LogPath, m.clock.Now)
		if err != nil {
			m.log.Warn("opening container log; console output will not be logged", "pod", c.SandboxID, "container", c.ID, "err", err)
		} else {
			lw, logTo = w, w
		}
	}
	name := c.DomainName
	hub := stream.NewConsoleHub(func(ctx context.Context) (io.ReadWriteCloser, error) {
		return m.hv.Console(ctx, name)
	}, logTo, m.log.With("pod", c.SandboxID, "container", c.ID))
	ctx, cancel := context.WithCancel(m.bgctx)
	cons := &console{hub: hub, log: lw, cancel: cancel, done: make(chan struct{})}
	m.consoles[c.ID] = cons
	go func() {
		defer close(cons.done)
		hub.Run(ctx)
	}()
	return hub.Connected()
}

func (c *console) stop() {
	c.cancel()
	<-c.done
	if c.log != nil {
		c.log.Close()
	}
}

func (m *Manager) stopConsole(id string) {
	m.mu.Lock()
	c := m.consoles[id]
	delete(m.consoles, id)
	m.mu.Unlock()
	if c != nil {
		// Stopping waits for the pump, which may be in a hypervisor
		// call; do it without holding the manager lock.
		go c.stop()
	}
}
