package kubeapi

import (
	"bytes"
	"net"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
)

// Refusing returns the URL of a port nothing listens on: connections are
// refused, as by a node whose API server is down.
func Refusing(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// Silent returns the URL of a server that accepts connections and never
// answers, as one behind a black-holing network path; clients hang until
// they give up. It stops when the test ends.
func Silent(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + l.Addr().String()
}

// WatcherGoroutines counts the goroutines running an apiclient.Watcher
// (runtime/kube/apiclient), for tests that check a client stops its
// watches.
func WatcherGoroutines() int {
	var b bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&b, 2)
	n := 0
	for _, g := range strings.Split(b.String(), "\n\n") {
		if strings.Contains(g, "/runtime/kube/apiclient.(*Watcher)") {
			n++
		}
	}
	return n
}
