package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

// TestConcurrentWriteAndRead is meant for -race: a writer and a reader at
// once, and nothing lost.
func TestConcurrentWriteAndRead(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 1000; i++ {
			b.Write([]byte("x"))
		}
	}()
	for i := 0; i < 100; i++ {
		_ = b.String()
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("x", 1000) {
		t.Fatalf("buffer holds %d bytes, want 1000", len(got))
	}
}
