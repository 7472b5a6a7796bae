package simhv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/podvisor/podvisor/fakes/clock"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// readUntil reads r until its output contains want.
func readUntil(r io.Reader, want string) error {
	var out bytes.Buffer
	p := make([]byte, 256)
	for !bytes.Contains(out.Bytes(), []byte(want)) {
		n, err := r.Read(p)
		out.Write(p[:n])
		if err != nil {
			return fmt.Errorf("reading console for %q: %w (got %q)", want, err, out.String())
		}
	}
	return nil
}

// waitState polls until the domain is in state; the guest moves on the real
// clock here, within milliseconds.
func waitState(ctx context.Context, hv *Hypervisor, name string, state hypervisor.State) error {
	for {
		st, err := hv.Status(ctx, name)
		if err != nil {
			return err
		}
		if st.State == state {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s stayed %v, want %v: %w", name, st.State, state, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// TestConcurrentUse drives 50 domains from 50 goroutines on the real clock,
// with shared reads, a contended domain and faults injected meanwhile. Run
// with -race.
func TestConcurrentUse(t *testing.T) {
	hv, err := New(Options{
		StateDir:        t.TempDir(),
		Clock:           clock.Real{},
		BootTime:        5 * time.Millisecond,
		DefaultBehavior: GuestBehavior{ShutdownDelay: 2 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer hv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if _, err := hv.Define(ctx, domainXML(t, "shared")); err != nil {
		t.Fatal(err)
	}
	const workers = 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*2)
	for i := range workers {
		name := fmt.Sprintf("vm-%02d", i)
		x := domainXML(t, name, withAgent)
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := lifecycle(ctx, hv, name, x); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
		go func() {
			defer wg.Done()
			// Contend on one domain; only invalid-state refusals and
			// injected faults are acceptable failures.
			for j := range 20 {
				var err error
				switch j % 4 {
				case 0:
					err = hv.Start(ctx, "shared")
				case 1:
					_, err = hv.Status(ctx, "shared")
				case 2:
					err = hv.Destroy(ctx, "shared")
				case 3:
					_, err = hv.List(ctx)
				}
				if err != nil && !errors.Is(err, hypervisor.ErrInvalidState) && !errors.Is(err, errBoom) {
					errs <- fmt.Errorf("shared: %w", err)
					return
				}
				if j == 10 {
					hv.InjectFault(OpList, "", errBoom, 1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := hv.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "shared" {
		t.Errorf("after every lifecycle, List = %v, want only shared", list)
	}
}

func lifecycle(ctx context.Context, hv *Hypervisor, name, x string) error {
	if _, err := hv.Define(ctx, x); err != nil {
		return err
	}
	if err := hv.Start(ctx, name); err != nil {
		return err
	}
	con, err := hv.Console(ctx, name)
	if err != nil {
		return err
	}
	defer con.Close()
	if err := readUntil(con, ReadyMarker(name)); err != nil {
		return err
	}
	if _, err := con.Write([]byte("hostname\r")); err != nil {
		return err
	}
	if err := readUntil(con, name+"\r\n"+Prompt); err != nil {
		return err
	}
	if _, err := hv.AgentCommand(ctx, name, `{"execute":"guest-ping"}`, time.Second); err != nil {
		return err
	}
	if _, err := hv.Stats(ctx, name); err != nil {
		return err
	}
	if err := hv.Shutdown(ctx, name); err != nil {
		return err
	}
	if err := readUntil(con, "Power down"); err != nil {
		return err
	}
	if err := waitState(ctx, hv, name, hypervisor.StateShutoff); err != nil {
		return err
	}
	if err := hv.Start(ctx, name); err != nil {
		return err
	}
	if err := hv.Crash(name); err != nil {
		return err
	}
	return hv.Undefine(ctx, name)
}

// BenchmarkDefineStartStatus defines, starts and queries domains on top of
// 500 running ones.
func BenchmarkDefineStartStatus(b *testing.B) {
	for _, persist := range []bool{false, true} {
		b.Run(fmt.Sprintf("persist=%v", persist), func(b *testing.B) {
			opts := Options{}
			if persist {
				opts.StateDir = b.TempDir()
			}
			f := newFixture(b, opts)
			for i := range 500 {
				f.start(fmt.Sprintf("base-%03d", i))
			}
			f.clock.Advance(testBoot)
			xmls := make([]string, 0, 1024)
			for i := 0; i < cap(xmls); i++ {
				xmls = append(xmls, domainXML(b, fmt.Sprintf("bench-%d", i)))
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				name := fmt.Sprintf("bench-%d", i%len(xmls))
				if i >= len(xmls) {
					// Recycle names so that at most 500 + 1,024 domains
					// exist; the removal is not what is measured.
					b.StopTimer()
					if err := f.hv.Destroy(f.ctx, name); err != nil {
						b.Fatal(err)
					}
					if err := f.hv.Undefine(f.ctx, name); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				if _, err := f.hv.Define(f.ctx, xmls[i%len(xmls)]); err != nil {
					b.Fatal(err)
				}
				if err := f.hv.Start(f.ctx, name); err != nil {
					b.Fatal(err)
				}
				if _, err := f.hv.Status(f.ctx, name); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
