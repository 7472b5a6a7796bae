package pod_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/pod"
)

// zeros is an endless stdin that allocates nothing: what a client sending
// a large file looks like to the daemon.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	clear(p)
	z.n += int64(len(p))
	return len(p), nil
}

// TestExecStdinIsBounded sends 64 MiB of stdin to `kubectl exec -i` and
// measures the bytes the daemon allocates: beyond the limit the exec
// fails with an error naming it, having allocated about the limit, not a
// multiple of the input (issue 18: 32 MiB of stdin allocated 937 MiB).
func TestExecStdinIsBounded(t *testing.T) {
	const limit = pod.DefaultExecStdinLimit
	e := newEnv(t)
	ctx := context.Background()
	cid := e.create(e.run("exec"), "vm")
	if err := e.m.StartContainer(ctx, cid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the guest agent", func() bool {
		_, _, _, err := e.m.ExecSync(ctx, cid, []string{"true"}, 1)
		return err == nil
	})
	// Up to the limit stdin reaches the command.
	in := bytes.Repeat([]byte("x"), limit)
	var out, errOut bytes.Buffer
	if code, err := e.m.Exec(ctx, cid, []string{"cat"}, bytes.NewReader(in), &out, &errOut); err != nil || code != 0 || !bytes.Equal(out.Bytes(), in) {
		t.Fatalf("exec cat of %d bytes = %d, %v, %d bytes out; want them back", limit, code, err, out.Len())
	}

	src := &zeros{}
	big := io.LimitReader(src, 64<<20)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := e.m.Exec(ctx, cid, []string{"cat"}, big, io.Discard, io.Discard)
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("64 MiB of stdin: %d MiB allocated, %d MiB read", allocated>>20, src.n>>20)
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "--exec-stdin-limit") {
		t.Errorf("exec with 64 MiB of stdin: %v; want InvalidArgument naming --exec-stdin-limit", err)
	}
	// The bytes read, their buffer's growth and (under -race) the
	// detector's own: a few times the limit, a quarter of the input.
	if allocated > 16<<20 {
		t.Errorf("exec with 64 MiB of stdin allocated %d MiB; want at most 16 MiB", allocated>>20)
	}
}

// TestExecSyncTimeoutKillsTheCommand: a command still running at ExecSync's
// timeout is killed in the guest, as containerd does (critest's
// execSync-with-timeout spec then finds no `sleep` with pgrep).
func TestExecSyncTimeoutKillsTheCommand(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cid := e.create(e.run("exec-timeout"), "vm")
	if err := e.m.StartContainer(ctx, cid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the guest agent", func() bool {
		_, _, _, err := e.m.ExecSync(ctx, cid, []string{"true"}, 1)
		return err == nil
	})
	c, err := e.m.ContainerStatus(ctx, cid)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := e.m.ExecSync(ctx, cid, []string{"sleep", "3600"}, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ExecSync of sleep 3600 with a 1 s timeout: %v; want the deadline exceeded", err)
	}
	g, err := e.hv.Guest(c.DomainName)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Running) != 0 {
		t.Errorf("after the timed-out exec the guest still runs %q; want the command killed", g.Running)
	}
}
