package proxy

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
)

// recorder is a CRI server that knows no method: it records each full
// method name it is asked for and answers with an error.
type recorder struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (r *recorder) handle(_ any, s grpc.ServerStream) error {
	name, _ := grpc.MethodFromServerStream(s)
	r.mu.Lock()
	r.seen[name] = true
	r.mu.Unlock()
	return status.Error(codes.Aborted, "recorded")
}

// TestEveryRPCIsForwarded calls every method of both CRI services on the
// proxy with an empty request (which routes to the primary) and checks
// that the primary received the same method: no RPC falls through to the
// embedded Unimplemented server or is answered by the proxy alone.
func TestEveryRPCIsForwarded(t *testing.T) {
	rec := &recorder{seen: map[string]bool{}}
	sock := filepath.Join(shortTempDir(t), "rec.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(rec.handle))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	p, err := New(Config{Primary: "unix://" + sock}, Options{}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	psock := filepath.Join(shortTempDir(t), "p.sock")
	plis, err := net.Listen("unix", psock)
	if err != nil {
		t.Fatal(err)
	}
	psrv := grpc.NewServer()
	p.Register(psrv)
	go psrv.Serve(plis)
	defer psrv.Stop()
	conn, err := grpc.NewClient("unix://"+psock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	n := 0
	for _, svc := range []string{"runtime.v1.RuntimeService", "runtime.v1.ImageService"} {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
		if err != nil {
			t.Fatal(err)
		}
		methods := d.(protoreflect.ServiceDescriptor).Methods()
		for i := 0; i < methods.Len(); i++ {
			m := methods.Get(i)
			full := "/" + svc + "/" + string(m.Name())
			in := dynamicpb.NewMessage(m.Input())
			out := dynamicpb.NewMessage(m.Output())
			c, cancel := context.WithTimeout(context.Background(), 30e9)
			if m.IsStreamingServer() {
				s, err := conn.NewStream(c, &grpc.StreamDesc{ServerStreams: true}, full)
				if err == nil {
					if err = s.SendMsg(in); err == nil {
						s.CloseSend()
						err = s.RecvMsg(out)
					}
				}
				if status.Code(err) != codes.Aborted {
					t.Errorf("%s: got %v, want the primary's recorded error", full, err)
				}
			} else if err := conn.Invoke(c, full, in, out); status.Code(err) != codes.Aborted {
				t.Errorf("%s: got %v, want the primary's recorded error", full, err)
			}
			cancel()
			rec.mu.Lock()
			if !rec.seen[full] {
				t.Errorf("%s did not reach the primary", full)
			}
			rec.mu.Unlock()
			n++
		}
	}
	if n < 40 {
		t.Errorf("only %d methods found in the CRI descriptors", n)
	}
}
