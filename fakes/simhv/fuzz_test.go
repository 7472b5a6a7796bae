package simhv

import (
	"errors"
	"testing"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
)

// FuzzDefine checks that any document is either refused with an
// invalid-argument error or defined as a shut off domain.
func FuzzDefine(f *testing.F) {
	f.Add(domainXML(f, "vm"))
	f.Add(domainXML(f, "vm", withAgent, withDisk("sdb", "scsi", "/b")))
	f.Add("<domain type='qemu'><name>x</name><memory unit='GiB'>1</memory></domain>")
	f.Add("<domain/>")
	f.Fuzz(func(t *testing.T, doc string) {
		fx := newFixture(t, Options{})
		st, err := fx.hv.Define(fx.ctx, doc)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("refusal %v is not of kind invalid argument", err)
			}
			return
		}
		if st.State != hypervisor.StateShutoff || st.Name == "" || st.UUID == "" {
			t.Fatalf("defined %+v", st)
		}
		// What XML returns can be defined again.
		x, err := fx.hv.XML(fx.ctx, st.Name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fx.hv.Define(fx.ctx, x); err != nil {
			t.Fatalf("redefining the normalised XML %q: %v", x, err)
		}
	})
}

// FuzzConsoleInput checks that any input to the shell leaves a consistent
// domain and never blocks.
func FuzzConsoleInput(f *testing.F) {
	f.Add([]byte("hostname\r"))
	f.Add([]byte("poweroff\n"))
	f.Add([]byte("crash\r\nhostname\r"))
	f.Add([]byte("\x7f\x7f\x03x\r"))
	f.Fuzz(func(t *testing.T, input []byte) {
		fx := newFixture(t, Options{ConsoleBufferSize: 128})
		fx.start("vm")
		c, err := fx.hv.Console(fx.ctx, "vm")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, werr := c.Write(input)
		st := fx.status("vm")
		if werr != nil {
			t.Fatalf("Write: %v", werr)
		}
		if st.State != hypervisor.StateRunning && st.State != hypervisor.StateShutoff && st.State != hypervisor.StateCrashed {
			t.Fatalf("state %v after console input", st.State)
		}
	})
}
